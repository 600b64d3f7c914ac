"""NLPool, the eq. 5 weighted average, and the trivial poolings."""
import itertools
import math

import pytest
import torch
import torch.nn as nn

from sapool_mmdet.pooling import POOLING, NLPool, build_pooling
from sapool_mmdet.pooling import weighted_window_average
from sapool_mmdet.pooling.reference import NLPoolReference


def loop_weighted_average(x, weights, s, window_norm=True):
    """Eq. 5 written as the paper writes it, one window at a time."""
    n, c, h, w = x.shape
    out = torch.empty(n, c, math.ceil(h / s), math.ceil(w / s),
                      dtype=x.dtype)
    for b, ch, i, j in itertools.product(range(n), range(c),
                                         range(out.shape[2]),
                                         range(out.shape[3])):
        rows = slice(i * s, min(i * s + s, h))
        cols = slice(j * s, min(j * s + s, w))
        win_x, win_w = x[b, ch, rows, cols], weights[b, ch, rows, cols]
        if window_norm:
            out[b, ch, i, j] = (win_w * win_x).sum() / win_w.sum()
        else:
            out[b, ch, i, j] = (win_w * win_x).mean()
    return out


@pytest.mark.parametrize('size,s,window_norm', [
    ((4, 6), 2, True), ((5, 7), 2, True), ((5, 7), 3, True),
    ((3, 2), 4, True), ((5, 7), 2, False), ((6, 6), 3, False)])
def test_weighted_average_matches_loop(size, s, window_norm):
    torch.manual_seed(0)
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    weights = torch.rand(2, 3, *size, dtype=torch.float64) + 0.1
    got = weighted_window_average(x, weights, s, window_norm)
    want = loop_weighted_average(x, weights, s, window_norm)
    torch.testing.assert_close(got, want)


def nlpool(channels=8, stride=2, **kwargs):
    return build_pooling(dict(type='NLPool', **kwargs), channels, stride)


@pytest.mark.parametrize('upsample', ['bilinear', 'nearest'])
@pytest.mark.parametrize('train', [True, False])
def test_nlpool_matches_official_transcription(upsample, train):
    torch.manual_seed(0)
    pool = nlpool(8, 2, patch_size=2, upsample=upsample)
    for bn in (pool.embed.bn, pool.restore_norm):
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    reference = NLPoolReference(pool)
    pool.train(train)
    reference.train(train)
    x = torch.randn(2, 8, 12, 16)
    if train:
        # BatchNorm updates its running stats in train mode: give each
        # module its own copy of the starting state.
        state = {k: v.clone() for k, v in pool.state_dict().items()}
        got = pool(x)
        pool.load_state_dict(state)
        want = reference(x)
    else:
        got, want = pool(x), reference(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_nlpool_pipeline_step_by_step():
    """pi(x) = exp(sigmoid(BN(conv1x1(up(MSA(embed(x) + pe)))))) by hand."""
    torch.manual_seed(1)
    pool = nlpool(4, 2, patch_size=2, num_heads=2, upsample='nearest').eval()
    x = torch.randn(1, 4, 4, 4)
    tokens = torch.relu(pool.embed.bn(pool.embed.conv(x)))
    tokens = tokens + pool.pos_embed(tokens)
    seq = tokens.flatten(2).transpose(1, 2)[0]             # (L, D)
    q, k, v = (seq @ pool.attention.in_proj.weight.t()
               + pool.attention.in_proj.bias).chunk(3, dim=-1)
    heads = []
    for hq, hk, hv in zip(q.chunk(2, -1), k.chunk(2, -1), v.chunk(2, -1)):
        scores = hq @ hk.t() / math.sqrt(hq.shape[-1])
        heads.append(torch.softmax(scores, dim=-1) @ hv)
    attended = pool.attention.out_proj(torch.cat(heads, -1))
    grid = attended.t().reshape(1, -1, 2, 2)
    full = grid.repeat_interleave(2, 2).repeat_interleave(2, 3)
    weights = torch.exp(torch.sigmoid(pool.restore_norm(
        pool.restore_conv(full))))
    torch.testing.assert_close(pool.pooling_weights(x), weights,
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(pool(x),
                               loop_weighted_average(x, weights, 2))


@pytest.mark.parametrize('pool_type', ['NLPool', 'MaxPool', 'AvgPool',
                                       'ConvPool'])
@pytest.mark.parametrize('h,w', [(1, 1), (1, 5), (7, 9), (8, 8), (3, 10)])
@pytest.mark.parametrize('s', [1, 2, 3, 4])
def test_shape_contract_any_size(pool_type, h, w, s):
    cfg = dict(type=pool_type)
    if pool_type == 'NLPool':
        cfg.update(patch_size=4)
    pool = build_pooling(cfg, 4, s).eval()
    y = pool(torch.randn(2, 4, h, w))
    assert y.shape == (2, 4, math.ceil(h / s), math.ceil(w / s))
    assert torch.isfinite(y).all()


@pytest.mark.parametrize('patch_size', [1, 2, 3, 4])
@pytest.mark.parametrize('train', [True, False])
def test_nlpool_output_within_window_range(patch_size, train):
    torch.manual_seed(2)
    pool = nlpool(6, 3, patch_size=patch_size).train(train)
    x = torch.randn(3, 6, 10, 11) * 5
    y = pool(x)
    window_max = nn.functional.max_pool2d(x, 3, 3, ceil_mode=True)
    window_min = -nn.functional.max_pool2d(-x, 3, 3, ceil_mode=True)
    assert (y <= window_max + 1e-5).all() and (y >= window_min - 1e-5).all()


def test_maxpool_and_avgpool_values():
    x = torch.randn(1, 2, 5, 7, dtype=torch.float64)
    ones = torch.ones_like(x)
    torch.testing.assert_close(build_pooling(dict(type='AvgPool'), 2, 2)(x),
                               loop_weighted_average(x, ones, 2))
    got = build_pooling(dict(type='MaxPool'), 2, 2)(x)
    assert got[0, 1, 2, 3] == x[0, 1, 4:6, 6:8].max()
    assert got[0, 0, 0, 0] == x[0, 0, 0:2, 0:2].max()


def test_nlpool_is_non_local():
    """One output pixel's gradient reaches input pixels far from its window
    (eval mode, so BatchNorm statistics cannot carry it)."""
    torch.manual_seed(3)
    pool = nlpool(4, 2, patch_size=2).eval()
    x = torch.randn(1, 4, 16, 16, requires_grad=True)
    pool(x)[0, :, 0, 0].sum().backward()
    far = x.grad[0, :, 8:, 8:]
    assert far.abs().sum() > 0
    assert x.grad[0, :, 0:2, 0:2].abs().sum() > 0


@pytest.mark.parametrize('kwargs', [
    dict(), dict(pos_embed='sine'), dict(pos_embed=None),
    dict(use_embed_norm=False), dict(use_restore_norm=False),
    dict(use_exp=False), dict(window_norm=False),
    dict(norm_cfg=dict(type='GN', num_groups=2))])
def test_nlpool_gradients_finite(kwargs):
    torch.manual_seed(4)
    pool = nlpool(8, 2, patch_size=2, **kwargs)
    x = torch.randn(2, 8, 9, 7, requires_grad=True)
    pool(x).square().mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, p in pool.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_ablation_switches_change_what_they_say():
    torch.manual_seed(5)
    x = torch.randn(2, 4, 8, 8)
    full = nlpool(4, 2).eval()
    assert isinstance(full.restore_norm, nn.BatchNorm2d)
    assert full.embed.with_norm
    w = full.pooling_weights(x)
    assert (w >= 1).all() and (w <= math.e).all()

    no_bn1 = nlpool(4, 2, use_embed_norm=False)
    assert not no_bn1.embed.with_norm and no_bn1.embed.conv.bias is not None
    no_bn2 = nlpool(4, 2, use_restore_norm=False)
    assert isinstance(no_bn2.restore_norm, nn.Identity)
    assert no_bn2.restore_conv.bias is not None
    assert no_bn2.pos_embed is not None
    assert nlpool(4, 2, pos_embed=None).pos_embed is None

    no_exp = nlpool(4, 2, use_exp=False).eval()
    no_exp.load_state_dict(full.state_dict())
    torch.testing.assert_close(no_exp.pooling_weights(x), torch.log(w))

    no_sigmoid = nlpool(4, 2, use_sigmoid=False).eval()
    no_sigmoid.load_state_dict(full.state_dict())
    logits = torch.logit(torch.log(w))
    torch.testing.assert_close(no_sigmoid.pooling_weights(x),
                               torch.exp(logits), rtol=1e-4, atol=1e-5)

    nowin = nlpool(4, 2, window_norm=False).eval()
    nowin.load_state_dict(full.state_dict())
    torch.testing.assert_close(
        nowin(x), nn.functional.avg_pool2d(x * w, 2, 2))


def test_norm_cfg_reaches_both_norms():
    pool = nlpool(8, 2, norm_cfg=dict(type='GN', num_groups=4))
    assert isinstance(pool.embed.gn, nn.GroupNorm)
    assert isinstance(pool.restore_norm, nn.GroupNorm)


def test_learned_positional_encoding_any_grid():
    pool = nlpool(4, 2, patch_size=1, pos_grid_size=4)
    for h, w in [(3, 5), (4, 4), (17, 2)]:
        enc = pool.pos_embed(torch.zeros(1, 4, h, w))
        assert enc.shape == (1, 4, h, w)
    table = pool.pos_embed.table
    torch.testing.assert_close(pool.pos_embed(torch.zeros(1, 4, 4, 4)),
                               table)


def test_uses_scaled_dot_product_attention(monkeypatch):
    calls = []
    sdpa = torch.nn.functional.scaled_dot_product_attention

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, 'scaled_dot_product_attention',
                        spy)
    nlpool(8, 2, patch_size=2, num_heads=4)(torch.randn(1, 8, 8, 8))
    assert calls == [(1, 4, 16, 2)]


@pytest.mark.parametrize('cfg,in_channels,stride,message', [
    (dict(type='NoSuchPool'), 4, 2, 'NLPool'),
    (dict(type='NLPool', bogus=1), 4, 2, 'patch_size'),
    (dict(type='NLPool'), 4, 0, 'stride'),
    (dict(type='NLPool', patch_size=0), 4, 2, 'patch_size'),
    (dict(type='NLPool', num_heads=3), 4, 2, 'divisors of 4'),
    (dict(type='NLPool', embed_ratio=0.1), 4, 2, 'embed_ratio'),
    (dict(type='NLPool', pos_embed='rope'), 4, 2, "'learned', 'sine'"),
    (dict(type='NLPool', upsample='cubic'), 4, 2, "'bilinear', 'nearest'"),
    (dict(type='ConvPool', kernel_size=2), 4, 2, 'odd'),
    ('NLPool', 4, 2, 'dict'),
    (dict(type='MaxPool'), 0, 2, 'in_channels'),
])
def test_bad_arguments_name_valid_choices(cfg, in_channels, stride, message):
    with pytest.raises(ValueError, match=message):
        build_pooling(cfg, in_channels, stride)


def test_registry_has_the_core_methods():
    assert {'NLPool', 'MaxPool', 'AvgPool', 'ConvPool'} <= set(
        POOLING.module_dict)
    assert isinstance(nlpool(), NLPool)


def test_state_dict_round_trip():
    torch.manual_seed(6)
    a, b = nlpool(8, 2).eval(), nlpool(8, 2).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(1, 8, 6, 6)
    torch.testing.assert_close(a(x), b(x))


def test_speed_comparison_reports_equal_outputs_and_lower_memory():
    from sapool_mmdet.analysis.nlpool_speed import \
        compare_nlpool_with_reference
    result = compare_nlpool_with_reference((2, 8, 32, 32), patch_size=2,
                                           stride=2, min_run_time=0,
                                           max_run_time=1e-3)
    assert result.max_output_diff < 1e-4 and result.max_grad_diff < 1e-4
    # The transcription stores the (256 x 256) attention weights per head
    # and image; SDPA does not.
    assert result.reference_peak_bytes > result.nlpool_peak_bytes
    assert result.nlpool_ms > 0 and result.speedup > 0
