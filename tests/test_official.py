"""The authors' settings: the row/column positional encoding, the embedding
width rule, NLPool as their module computes it, SelfAttnPool (their
attn_pool.py), and the configs of configs/official/ and configs/ablation/
against the values the authors' architecture strings set.

Each transcription below is written from the authors' code
(C-Fun/Self-Attentive-Pooling-for-Efficient-Deep-Learning): position by
position, with torch.nn's reference layers, on tiny inputs."""
import functools
import math
from pathlib import Path

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.registry import init_default_scope

from sapool_mmdet.pooling import NLPool, SelfAttnPool, build_pooling
from sapool_mmdet.pooling.positional import (LearnedPositionalEncoding,
                                              RowColPositionalEncoding)
from sapool_mmdet.pooling.reference import NLPoolReference, rowcol_encoding
from sapool_mmdet.pooling.self_attentive import embedding_width

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs'
AUTHORS = dict(pos_embed='rowcol', upsample='nearest',
               embed_width='per_head')


def randomise_norms(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for norm in module.modules():
            if isinstance(norm, nn.BatchNorm2d):
                norm.running_mean.uniform_(-0.5, 0.5)
                norm.running_var.uniform_(0.5, 2.0)
                norm.weight.uniform_(0.5, 1.5)
                norm.bias.uniform_(-0.3, 0.3)
    return module


@pytest.fixture
def float64():
    """Double precision, so that outputs and gradients of the two orders of
    computation agree to tight tolerances."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


def run_both(module, reference, x, train):
    """Outputs and input gradients (of the sum of squares) of both, in train
    or eval mode, from the same norm state."""
    module.train(train)
    reference.train(train)
    state = {k: v.clone() for k, v in module.state_dict().items()}
    results = []
    for net in (module, reference):
        x = x.detach().requires_grad_()
        out = net(x)
        grad, = torch.autograd.grad(out.square().sum(), x)
        results.append((out.detach(), grad))
        module.load_state_dict(state)
    return results


# -- the row/column positional encoding ------------------------------------

def test_rowcol_encoding_is_the_authors_learned_embedding():
    """Token (i, j) gets concat(col_embed[j], row_embed[i]), D/2 each."""
    torch.manual_seed(0)
    enc = RowColPositionalEncoding(6, max_len=256)
    assert enc.row_embed.weight.shape == (256, 3)
    assert enc.col_embed.weight.shape == (256, 3)
    tokens = torch.zeros(2, 6, 3, 5)
    got = enc(tokens)
    assert got.shape == (1, 6, 3, 5)
    for i in range(3):
        for j in range(5):
            torch.testing.assert_close(got[0, :3, i, j],
                                       enc.col_embed.weight[j])
            torch.testing.assert_close(got[0, 3:, i, j],
                                       enc.row_embed.weight[i])
    torch.testing.assert_close(
        got, rowcol_encoding(enc.row_embed.weight, enc.col_embed.weight, 3, 5))


def test_rowcol_encoding_init_gradients_and_limits():
    torch.manual_seed(1)
    enc = RowColPositionalEncoding(8)
    for table in (enc.row_embed.weight, enc.col_embed.weight):
        assert table.min() >= 0 and table.max() < 1  # nn.init.uniform_
    enc(torch.zeros(1, 8, 2, 3)).sum().backward()
    assert enc.col_embed.weight.grad[:3].ne(0).all()
    assert enc.col_embed.weight.grad[3:].eq(0).all()  # indexed, not resized
    assert enc(torch.zeros(1, 8, 256, 1)).shape == (1, 8, 256, 1)
    with pytest.raises(ValueError, match=r'257x4.*256 learned rows'):
        enc(torch.zeros(1, 8, 257, 4))
    with pytest.raises(ValueError, match='must be even'):
        RowColPositionalEncoding(5)
    with pytest.raises(ValueError, match='must be even'):
        build_pooling(dict(type='NLPool', num_heads=1, pos_embed='rowcol'),
                      5, 2)


# -- the embedding width rule ----------------------------------------------

@pytest.mark.parametrize('channels,ratio,heads', [
    (160, 1.0, 64), (24, 1.0, 4), (32, 0.25, 2), (3, 0.25, 2), (96, 1.0, 32),
    (320, 1.0, 128), (16, 0.25, 8), (30, 1.0, 4)])
def test_per_head_width_is_the_authors_rule(channels, ratio, heads):
    per_head = round(ratio * channels / heads)  # nlp.py: NLP_BASE.__init__
    want = (per_head if per_head else 1) * heads
    assert embedding_width(channels, ratio, heads, 'per_head') == want
    pool = build_pooling(dict(type='NLPool', embed_ratio=ratio,
                              num_heads=heads, embed_width='per_head'),
                         channels, 2)
    assert pool.embed_dim == want == pool.embed.conv.out_channels
    assert pool.restore_conv.in_channels == want


def test_total_width_names_the_per_head_rule_when_it_fails():
    assert embedding_width(160, 1.0, 64, 'per_head') == 128
    with pytest.raises(ValueError, match="embed_width='per_head'"):
        build_pooling(dict(type='NLPool', num_heads=64), 160, 2)
    with pytest.raises(ValueError, match='embed_width must be one of'):
        build_pooling(dict(type='NLPool', embed_width='heads'), 16, 2)


# -- NLPool as the authors' module -------------------------------------------

@pytest.mark.parametrize('window_norm', [True, False])
@pytest.mark.parametrize('patch_size,heads', [(2, 2), (1, 4), (4, 2)])
@pytest.mark.parametrize('train', [True, False])
def test_nlpool_with_the_authors_settings_is_their_module(
        window_norm, patch_size, heads, train, float64):
    torch.manual_seed(3)
    pool = randomise_norms(build_pooling(
        dict(type='NLPool', patch_size=patch_size, num_heads=heads,
             window_norm=window_norm, **AUTHORS), 12, 2))
    x = torch.randn(2, 12, 8, 8)
    got, want = run_both(pool, NLPoolReference(pool), x, train)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize('switch', [
    dict(use_embed_norm=False), dict(use_restore_norm=False),
    dict(use_sigmoid=False), dict(use_exp=False), dict(pos_embed=None)])
def test_nlpool_ablation_switches_are_the_authors_variants(switch):
    """nlp_nobn1 / nlp_nobn2 / nlp_nosigmoid / nlp_noexp / nlp_nope."""
    torch.manual_seed(4)
    pool = randomise_norms(build_pooling(
        dict(type='NLPool', patch_size=2, window_norm=False,
             **dict(AUTHORS, **switch)), 8, 2)).eval()
    x = torch.randn(1, 8, 8, 8) * 0.5
    torch.testing.assert_close(pool(x), NLPoolReference(pool)(x),
                               rtol=1e-4, atol=1e-5)


def test_benchmark_compares_with_the_authors_module():
    from sapool_mmdet.analysis.nlpool_speed import (
        AUTHORS_NLPOOL, compare_nlpool_with_reference)
    assert AUTHORS_NLPOOL == dict(type='NLPool', num_heads=2, **AUTHORS)
    result = compare_nlpool_with_reference((1, 8, 16, 16), patch_size=2,
                                           stride=2, min_run_time=0,
                                           max_run_time=1e-3)
    assert result.max_output_diff < 1e-4 and result.max_grad_diff < 1e-4


# -- SelfAttnPool: the authors' attn_pool.py -------------------------------

class AttnPoolTranscription(nn.Module):
    """attn_pool.py's ATTNPOOL_BASE as network.py builds it for 'attnpool'
    (patch_size = stride), weights copied from a SelfAttnPool."""

    def __init__(self, pool: SelfAttnPool) -> None:
        super().__init__()
        self.pool = pool
        dim, c, s = pool.embed_dim, pool.in_channels, pool.stride
        self.embed = nn.Conv2d(c, dim, 1)
        self.embed.weight.data.copy_(pool.embed.conv.weight)
        self.embed.bias.data.zero_()
        self.attn = nn.MultiheadAttention(dim, pool.num_heads,
                                          batch_first=True)
        self.attn.in_proj_weight.data.copy_(pool.attention.in_proj.weight)
        self.attn.in_proj_bias.data.copy_(pool.attention.in_proj.bias)
        self.attn.out_proj.load_state_dict(
            pool.attention.out_proj.state_dict())
        self.map = nn.Conv2d(dim, c, s, stride=s)
        self.map.weight.data.copy_(pool.reduce.conv.weight)
        self.map.bias.data.zero_()

    def forward(self, x):
        n, c, h, w = x.shape
        tokens = F.relu(self.pool.embed.bn(self.embed(x)))
        enc = self.pool.pos_embed
        pos = rowcol_encoding(enc.row_embed.weight, enc.col_embed.weight,
                              h, w)
        seq = (tokens + pos).flatten(2).transpose(1, 2)
        attended, _ = self.attn(seq, seq, seq)
        attended = attended.transpose(1, 2).reshape(n, -1, h, w)
        return F.relu(self.pool.reduce.bn(self.map(attended)))


@pytest.mark.parametrize('stride,heads,ratio', [(2, 2, 1.0), (4, 2, 1.0),
                                                (2, 4, 0.5), (1, 2, 1.0)])
@pytest.mark.parametrize('train', [True, False])
def test_selfattnpool_is_the_authors_attn_pool(stride, heads, ratio, train,
                                              float64):
    torch.manual_seed(5)
    pool = randomise_norms(build_pooling(
        dict(type='SelfAttnPool', num_heads=heads, embed_ratio=ratio), 8,
        stride))
    assert pool.embed_dim == embedding_width(8, ratio, heads, 'per_head')
    assert isinstance(pool.pos_embed, RowColPositionalEncoding)
    x = torch.randn(2, 8, 8, 8)
    got, want = run_both(pool, AttnPoolTranscription(pool), x, train)
    assert got[0].shape == (2, 8, 8 // stride, 8 // stride)
    torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize('h,w', [(1, 1), (5, 7), (9, 4)])
def test_selfattnpool_any_size_and_gradients(h, w):
    torch.manual_seed(6)
    pool = build_pooling(dict(type='SelfAttnPool'), 4, 3)
    x = torch.randn(2, 4, h, w, requires_grad=True)
    y = pool(x)
    assert y.shape == (2, 4, math.ceil(h / 3), math.ceil(w / 3))
    y.square().sum().backward()
    assert x.grad.isfinite().all()
    assert all(p.grad is not None for p in pool.parameters())
    # on a padded map, the last window sees only the pixels that exist
    if h % 3 == 0 and w % 3 == 0:
        return
    pool.eval()
    with torch.no_grad():
        x2 = F.pad(x, (0, 3, 0, 3))  # more pixels change the attention
        assert not torch.allclose(pool(x2)[..., :y.shape[2], :y.shape[3]],
                                  pool(x))


def test_selfattnpool_arguments_are_checked():
    with pytest.raises(ValueError, match='pos_embed must be one of'):
        build_pooling(dict(type='SelfAttnPool', pos_embed='2d'), 8, 2)
    with pytest.raises(ValueError, match='SelfAttnPool got unknown'):
        build_pooling(dict(type='SelfAttnPool', patch_size=2), 8, 2)
    pool = build_pooling(dict(type='SelfAttnPool', pos_embed=None,
                              embed_width='total', num_heads=4), 8, 2)
    assert pool.pos_embed is None and pool.embed_dim == 8


# -- configs/official and configs/ablation ---------------------------------

@functools.lru_cache(maxsize=None)
def backbone_of(name: str):
    init_default_scope('mmdet')
    cfg = Config.fromfile(str(CONFIG_DIR / name))
    return cfg, MODELS.build(cfg.model.backbone)


def pools(backbone):
    """Per stage: its pooling module or None."""
    layers = getattr(backbone, 'layers', None) or backbone.res_layers
    return [getattr(getattr(backbone, name), 'pool', None)
            for name in layers[:len(backbone.strides)]]


# What the authors' strings set (base/models/network.py, name_parse):
# the string, per stage (patch size, heads) or None, window norm, position,
# positional encoding.
OFFICIAL_NLP = {
    'official/ssd_mbv2_nlp.py': (
        'mobilenet_v2-nlp_headfix2_nowin_reduced-1222121',
        [None, (4, 2), (4, 2), (2, 2), None, (1, 2), None], False, 'inner',
        RowColPositionalEncoding),
    'official/ssd_r18_nlp.py': (
        'resnet18-nlp_headfix2_nowin_reduced-1222',
        [None, (2, 2), (1, 2), (1, 2)], False, 'outer',
        RowColPositionalEncoding),
    # the one departure, explained in the file: a grid wider than 256
    'official/faster-rcnn_r18_nlp.py': (
        'resnet18-nlp-1222', [None, (1, 8), (1, 16), (1, 32)], True,
        'outer', LearnedPositionalEncoding),
    'official/faster-rcnn_r18_nlp-reduced.py': (
        'resnet18-nlp_reduced-1222', [None, (2, 8), (1, 16), (1, 32)], True,
        'outer', RowColPositionalEncoding),
}
OFFICIAL_BASELINES = {  # the string, pooling of the pooled stages, position
    'official/ssd_mbv2_conv.py': ('mobilenet-skip-1222121', None, 'pre'),
    'official/ssd_mbv2_lip.py': ('mobilenet_v2-lip-1222121', 'LIPPool',
                                 'inner'),
    'official/ssd_mbv2_gaussian.py': ('mobilenet_v2-gaussian_pool-1222121',
                                      'GaussianPool', 'inner'),
    'official/ssd_r18_conv.py': ('resnet18-skip-1222', None, 'pre'),
    'official/ssd_r18_lip.py': ('resnet18-lip-1222', 'LIPPool', 'outer'),
    'official/ssd_r18_gaussian.py': ('resnet18-gaussian_pool-1222',
                                     'GaussianPool', 'outer'),
    'official/faster-rcnn_r18_conv.py': ('resnet18-skip-1222', None, 'pre'),
    'official/faster-rcnn_r18_lip.py': ('resnet18-lip-1222', 'LIPPool',
                                        'outer'),
    'official/faster-rcnn_r18_gaussian.py': (
        'resnet18_v2-gaussian_pool-1222', 'GaussianPool', 'inner'),
}


def header_names(name: str, string: str) -> bool:
    text = (CONFIG_DIR / name).read_text()
    header = ' '.join(line.lstrip('# ') for line in text.splitlines()
                      if line.startswith('#'))
    return f'`{string}`' in header


def test_every_official_config_is_checked():
    found = {str(p.relative_to(CONFIG_DIR))
             for p in CONFIG_DIR.glob('official/*.py')}
    assert found == set(OFFICIAL_NLP) | set(OFFICIAL_BASELINES)


@pytest.mark.parametrize('name', sorted(OFFICIAL_NLP))
def test_official_nlpool_configs_set_what_the_string_sets(name):
    string, stages, window_norm, position, encoding = OFFICIAL_NLP[name]
    assert header_names(name, string)
    cfg, backbone = backbone_of(name)
    assert backbone.pool_position == position
    assert backbone.strides == (1, 2, 2, 2, 1, 2, 1)[:len(stages)]
    for stage, pool in zip(stages, pools(backbone)):
        if stage is None:
            assert pool is None
            continue
        patch_size, heads = stage
        assert type(pool) is NLPool
        assert (pool.patch_size, pool.num_heads) == (patch_size, heads)
        assert pool.window_norm is window_norm
        assert pool.upsample == 'nearest'
        assert pool.embed_dim == embedding_width(pool.in_channels, 1.0,
                                                 heads, 'per_head')
        assert pool.use_sigmoid and pool.use_exp
        assert type(pool.pos_embed) is encoding


@pytest.mark.parametrize('name', sorted(OFFICIAL_BASELINES))
def test_official_baselines_pool_where_the_authors_do(name):
    string, pool_type, position = OFFICIAL_BASELINES[name]
    assert header_names(name, string)
    cfg, backbone = backbone_of(name)
    stage_pools = pools(backbone)
    if pool_type is None:
        assert not any(stage_pools)
        return
    assert backbone.pool_position == position
    assert {type(p).__name__ for p in stage_pools if p} == {pool_type}
    assert [p is not None for p in stage_pools] == [
        s > 1 for s in backbone.strides]


@pytest.mark.parametrize('detector,epochs,lr,batch,clip', [
    ('ssd_mbv2', 20, 0.015, 16, None), ('ssd_r18', 20, 0.015, 16, None),
    ('faster-rcnn_r18', 12, 0.02, 2, 20)])
def test_official_schedules(detector, epochs, lr, batch, clip):
    cfg = Config.fromfile(str(CONFIG_DIR / f'official/{detector}_conv.py'))
    assert cfg.train_cfg.max_epochs == epochs
    assert cfg.optim_wrapper.optimizer.lr == lr
    assert cfg.optim_wrapper.optimizer.momentum == 0.9
    assert cfg.train_dataloader.batch_size == batch
    assert cfg.optim_wrapper.get('clip_grad', {}).get('max_norm') == clip
    schedulers = [s['type'] for s in cfg.param_scheduler]
    assert schedulers[0] == 'LinearLR'
    assert cfg.param_scheduler[0]['end'] == 500
    if detector.startswith('ssd'):
        assert cfg.train_dataloader.dataset.times == 1
        assert schedulers[1] == 'CosineAnnealingLR'
        assert cfg.param_scheduler[1]['T_max'] == epochs


ABLATION = {  # Table 7 row: the one setting that differs from the official
    'ssd_mbv2_nlp_inner.py': {},
    'ssd_mbv2_nlp_outer.py': {'position': 'outer'},
    'ssd_mbv2_nlp_wo-bn1.py': {'use_embed_norm': False},
    'ssd_mbv2_nlp_wo-bn2.py': {'use_restore_norm': False},
    'ssd_mbv2_nlp_wo-sigmoid.py': {'use_sigmoid': False},
    'ssd_mbv2_nlp_wo-exp.py': {'use_exp': False},
    'ssd_mbv2_nlp_wo-pe.py': {'pos_embed': None},
}


def nlp_settings(pool: NLPool) -> dict:
    return dict(patch_size=pool.patch_size, num_heads=pool.num_heads,
                window_norm=pool.window_norm, upsample=pool.upsample,
                embed_dim=pool.embed_dim,
                use_embed_norm=pool.embed.with_norm,
                use_restore_norm=not isinstance(pool.restore_norm,
                                                nn.Identity),
                use_sigmoid=pool.use_sigmoid, use_exp=pool.use_exp,
                pos_embed=type(pool.pos_embed).__name__
                if pool.pos_embed is not None else None)


def test_every_ablation_config_is_checked():
    found = {p.name for p in CONFIG_DIR.glob('ablation/*.py')}
    assert found == set(ABLATION) | {'ssd_mbv2_selfattn.py',
                                     'ssd_mbv2_selfattn_outer.py'}


@pytest.mark.parametrize('name', sorted(ABLATION))
def test_ablation_rows_change_one_setting(name):
    _, official = backbone_of('official/ssd_mbv2_nlp.py')
    _, backbone = backbone_of(f'ablation/{name}')
    change = dict(ABLATION[name])
    assert backbone.pool_position == change.pop('position', 'inner')
    for base, pool in zip(pools(official), pools(backbone)):
        assert (base is None) == (pool is None)
        if pool is not None:
            want = nlp_settings(base)
            want.update(change)
            assert nlp_settings(pool) == want


@pytest.mark.parametrize('name,position', [
    ('ssd_mbv2_selfattn.py', 'inner'), ('ssd_mbv2_selfattn_outer.py',
                                        'outer')])
def test_selfattn_rows(name, position):
    _, backbone = backbone_of(f'ablation/{name}')
    assert backbone.pool_position == position
    stage_pools = pools(backbone)
    assert [type(p).__name__ if p else None for p in stage_pools] == [
        None, 'SelfAttnPool', 'SelfAttnPool', 'SelfAttnPool', None,
        'SelfAttnPool', None]
    assert all(p.num_heads == 2 and isinstance(p.pos_embed,
                                               RowColPositionalEncoding)
               for p in stage_pools if p)
