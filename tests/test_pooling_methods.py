"""Every registered pooling method: the shape contract, gradients, batch
independence, state-dict round trips and argument checks, generically over
the registry; and each method against a direct, slow transcription of its
formula (explicit loops over windows) on tiny inputs."""
import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from sapool_mmdet.pooling import POOLING, WeightedPool, build_pooling
from sapool_mmdet.pooling.nlpool_variants import MixNLPool
from sapool_mmdet.pooling.self_attentive import NLPool

ALL_TYPES = sorted(POOLING.module_dict)
WEIGHTED_TYPES = [name for name in ALL_TYPES
                  if issubclass(POOLING.get(name), WeightedPool)]
CHANNELS = 8

# Non-default settings that change the code path, checked with the defaults.
VARIANT_CONFIGS = [
    dict(type='LIPPool', kernel_size=3),
    dict(type='GaussianPool', noise='channel'),
    dict(type='MixedPool', mode='gated'),
    dict(type='MixedPool', mode='mixed', per_channel=True),
    dict(type='MixedPool', mode='gated', per_channel=True),
    dict(type='RNNPool', hidden_channels=3, summary_channels=5),
    dict(type='SubspaceAttnPool', groups=2, rank=2),
    dict(type='NLPool', patch_size=4, upsample='nearest', window_norm=False),
    dict(type='MixNLPool', patch_size=1, num_heads=4, pos_embed='sine'),
    dict(type='DeformNLPool', patch_size=3, use_embed_norm=False),
    dict(type='DeformMixNLPool', patch_size=1, num_heads=8,
         window_norm=False),
]
CONFIGS = [dict(type=name) for name in ALL_TYPES] + VARIANT_CONFIGS

# Where the output pixel (0, 0) can look, for the receptive-field test.
RECEPTIVE_FIELDS = {
    'AvgPool': 'local', 'MaxPool': 'local', 'ConvPool': 'local',
    'LIPPool': 'local', 'SoftPool': 'local', 'MixedPool': 'local',
    'RNNPool': 'local', 'GaussianPool': 'non-local', 'NLPool': 'non-local',
    'DeformNLPool': 'non-local', 'MixNLPool': 'non-local',
    'DeformMixNLPool': 'non-local', 'SubspaceAttnPool': 'non-local',
    'SelfAttnPool': 'non-local',
}


def cfg_id(cfg: dict) -> str:
    return '-'.join(f'{v}' if k == 'type' else f'{k}={v}'
                    for k, v in cfg.items())


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


def randomise(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Move every parameter and norm statistic away from its initial value,
    so that zero-initialised parts (offsets, gates) and norms in eval mode
    take part in the checks."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in module.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=gen,
                                         dtype=param.dtype))
        for norm in module.modules():
            if isinstance(norm, _BatchNorm):
                norm.running_mean.uniform_(-0.5, 0.5, generator=gen)
                norm.running_var.uniform_(0.5, 2.0, generator=gen)
    return module


def pooled(size: int, stride: int) -> int:
    return math.ceil(size / stride)


def windows(height: int, width: int, stride: int):
    """Yield (i, j, rows, cols) for every output pixel and its window."""
    for i in range(pooled(height, stride)):
        for j in range(pooled(width, stride)):
            yield (i, j, slice(i * stride, min((i + 1) * stride, height)),
                   slice(j * stride, min((j + 1) * stride, width)))


def slow_weighted_average(x, weights, stride, window_norm=True):
    """Eq. 5, window by window (weights per pixel, broadcast to x)."""
    n, c, height, width = x.shape
    weights = weights.expand_as(x)
    out = x.new_zeros(n, c, pooled(height, stride), pooled(width, stride))
    for i, j, rows, cols in windows(height, width, stride):
        xw, ww = x[:, :, rows, cols], weights[:, :, rows, cols]
        numerator = (ww * xw).sum(dim=(2, 3))
        if window_norm:
            out[:, :, i, j] = numerator / ww.sum(dim=(2, 3))
        else:
            out[:, :, i, j] = numerator / xw[0, 0].numel()
    return out


def slow_bn(norm, t, channel_dim=1):
    """Eval-mode batch norm, channel by channel."""
    shape = [1] * t.dim()
    shape[channel_dim] = -1
    mean = norm.running_mean.view(shape)
    std = (norm.running_var + norm.eps).sqrt().view(shape)
    return (t - mean) / std * norm.weight.view(shape) + norm.bias.view(shape)


def slow_patch_conv(x, weight, bias, patch):
    """A conv with kernel = stride = patch, patch by patch: (C, H, W) ->
    (O, H / patch, W / patch); H, W multiples of patch."""
    out_c = weight.shape[0]
    grid_h, grid_w = x.shape[1] // patch, x.shape[2] // patch
    out = x.new_zeros(out_c, grid_h, grid_w)
    for ti in range(grid_h):
        for tj in range(grid_w):
            window = x[:, ti * patch:(ti + 1) * patch,
                       tj * patch:(tj + 1) * patch]
            out[:, ti, tj] = torch.einsum('ocab,cab->o', weight, window)
            if bias is not None:
                out[:, ti, tj] += bias
    return out


# --------------------------------------------------------------------------
# The contract, for every registered method (new ones are covered too)
# --------------------------------------------------------------------------

def test_every_method_of_the_design_is_registered():
    expected = {'NLPool', 'MaxPool', 'AvgPool', 'ConvPool', 'LIPPool',
                'GaussianPool', 'SoftPool', 'MixedPool', 'RNNPool',
                'SubspaceAttnPool', 'DeformNLPool', 'MixNLPool',
                'DeformMixNLPool'}
    assert expected <= set(ALL_TYPES)


@pytest.mark.parametrize('cfg', CONFIGS, ids=cfg_id)
@pytest.mark.parametrize('stride', [1, 2, 3, 4])
def test_output_shape_for_any_input_size(cfg, stride):
    pool = build_pooling(cfg, CHANNELS, stride)
    for mode in (True, False):
        pool.train(mode)
        for height, width in [(7, 9), (1, 1), (3, 2), (2, 5), (8, 8)]:
            out = pool(torch.randn(2, CHANNELS, height, width))
            assert out.shape == (2, CHANNELS, pooled(height, stride),
                                 pooled(width, stride)), (height, width)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize('cfg', CONFIGS, ids=cfg_id)
def test_gradients_are_finite_and_reach_every_parameter(cfg):
    pool = build_pooling(cfg, CHANNELS, 2).train()
    x = torch.randn(2, CHANNELS, 7, 9, requires_grad=True)
    pool(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, param in pool.named_parameters():
        assert param.grad is not None, f'{name} gets no gradient'
        assert torch.isfinite(param.grad).all(), name


@pytest.mark.parametrize('name', ALL_TYPES)
def test_samples_are_pooled_independently_in_eval(name):
    pool = randomise(build_pooling(dict(type=name), CHANNELS, 2)).eval()
    x = torch.randn(3, CHANNELS, 7, 9)
    with torch.no_grad():
        batched = pool(x)
        single = torch.cat([pool(x[k:k + 1]) for k in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', ALL_TYPES)
def test_state_dict_round_trip(name):
    source = build_pooling(dict(type=name), CHANNELS, 2).train()
    x = torch.randn(2, CHANNELS, 7, 9)
    with torch.no_grad():
        source(x)  # moves the norms' running statistics
    randomise(source, seed=1)
    torch.manual_seed(1)
    target = build_pooling(dict(type=name), CHANNELS, 2)
    target.load_state_dict(source.state_dict())
    assert source.state_dict().keys() == target.state_dict().keys()
    source.eval()
    target.eval()
    with torch.no_grad():
        torch.testing.assert_close(target(x), source(x), rtol=0, atol=0)


@pytest.mark.parametrize('name', ALL_TYPES)
def test_init_weights_as_a_detector_calls_it(name):
    pool = build_pooling(dict(type=name), CHANNELS, 2)
    if hasattr(pool, 'init_weights'):  # mmengine BaseModule
        pool.init_weights()
    assert torch.isfinite(pool(torch.randn(2, CHANNELS, 7, 9))).all()


@pytest.mark.parametrize('name', ALL_TYPES)
def test_unknown_argument_names_the_valid_ones(name):
    with pytest.raises(ValueError, match='valid arguments are'):
        build_pooling(dict(type=name, no_such_argument=1), CHANNELS, 2)


@pytest.mark.parametrize('cfg, message', [
    (dict(type='LIPPool', kernel_size=2), 'kernel_size must be odd'),
    (dict(type='GaussianPool', noise='gumbel'), r"noise must be one of"),
    (dict(type='GaussianPool', hidden_channels=0), 'hidden_channels'),
    (dict(type='GaussianPool', eps=0), 'eps must be'),
    (dict(type='MixedPool', mode='median'), r"mode must be one of"),
    (dict(type='RNNPool', summary_channels=0), 'summary_channels'),
    (dict(type='SubspaceAttnPool', groups=3), 'must divide in_channels'),
    (dict(type='SubspaceAttnPool', rank=0), 'rank must be'),
    (dict(type='SubspaceAttnPool', mlp_ratio=-1), 'mlp_ratio'),
    (dict(type='SoftPool', window_norm=False), 'valid arguments are'),
    (dict(type='DeformNLPool', num_heads=3), 'num_heads'),
    (dict(type='MixNLPool', upsample='bicubic'), r"upsample must be one of"),
    (dict(type='DeformMixNLPool', patch_size=0), 'patch_size'),
], ids=lambda v: cfg_id(v) if isinstance(v, dict) else '')
def test_bad_arguments_raise_a_clear_error(cfg, message):
    with pytest.raises(ValueError, match=message):
        build_pooling(cfg, CHANNELS, 2)


@pytest.mark.parametrize('name', ALL_TYPES)
def test_docstring_cites_its_source_and_documents_arguments(name):
    doc = inspect.getdoc(POOLING.get(name))
    assert doc and 'Args:' in doc
    if name not in ('MaxPool', 'AvgPool'):  # textbook layers, no paper
        assert any(str(year) in doc for year in range(2010, 2030)), doc[:80]


@pytest.mark.parametrize('name', ['DeformNLPool', 'MixNLPool',
                                  'DeformMixNLPool'])
def test_nlpool_variants_take_every_nlpool_argument(name):
    args = dict(patch_size=1, embed_ratio=0.5, num_heads=4, pos_embed='sine',
                pos_grid_size=8, upsample='nearest',
                norm_cfg=dict(type='GN', num_groups=2),
                act_cfg=dict(type='ReLU6'), use_embed_norm=True,
                use_restore_norm=False, use_sigmoid=True, use_exp=False,
                window_norm=False, embed_width='per_head', init_cfg=None)
    assert set(args) == set(inspect.signature(NLPool.__init__).parameters) \
        - {'self', 'in_channels', 'stride'}
    pool = build_pooling(dict(type=name, **args), CHANNELS, 2)
    assert (pool.num_heads, pool.upsample, pool.window_norm) == (
        4, 'nearest', False)
    with pytest.raises(ValueError, match='patch_size'):
        build_pooling(dict(type=name, bogus=1), CHANNELS, 2)


@pytest.mark.parametrize('name', WEIGHTED_TYPES)
@pytest.mark.parametrize('stride', [2, 3])
def test_weighted_average_stays_within_each_window(name, stride):
    pool = randomise(build_pooling(dict(type=name), CHANNELS, stride)).eval()
    x = 3 * torch.randn(2, CHANNELS, 7, 9)
    with torch.no_grad():
        out = pool(x)
    upper = F.max_pool2d(x, stride, stride, ceil_mode=True)
    lower = -F.max_pool2d(-x, stride, stride, ceil_mode=True)
    assert (out <= upper + 1e-5).all() and (out >= lower - 1e-5).all()
    # A proper weighted average: neither the max nor the plain mean.
    assert not torch.allclose(out, upper)
    assert not torch.allclose(
        out, F.avg_pool2d(x, stride, stride, ceil_mode=True))


@pytest.mark.parametrize('name', ALL_TYPES)
def test_receptive_field_of_one_output_pixel(name):
    if name not in RECEPTIVE_FIELDS:
        pytest.fail(f'declare whether {name} is local or non-local in '
                    f'RECEPTIVE_FIELDS')
    pool = randomise(build_pooling(dict(type=name), CHANNELS, 2)).eval()
    x = torch.randn(1, CHANNELS, 12, 12, requires_grad=True)
    pool(x)[0, :, 0, 0].sum().backward()
    grad = x.grad.abs().sum(dim=(0, 1))
    assert grad[:2, :2].sum() > 0
    # Output (0, 0) pools the window [0, 2) x [0, 2). Far from it means at
    # least four pixels away; on the window's row and column, where even
    # SubspaceAttnPool's cross-shaped field reaches.
    outside = torch.ones_like(grad, dtype=torch.bool)
    outside[:6, :6] = False
    arms = grad[:2, 6:].sum() + grad[6:, :2].sum()
    if RECEPTIVE_FIELDS[name] == 'local':
        assert grad[outside].sum() == 0
    else:
        assert arms > 0


# --------------------------------------------------------------------------
# Each method against a slow transcription of its formula
# --------------------------------------------------------------------------

def test_lip_matches_its_formula():
    pool = randomise(build_pooling(dict(type='LIPPool'), 4, 2)).double()
    pool.eval()
    x = torch.randn(2, 4, 5, 7, dtype=torch.float64)
    conv = pool.logit.conv
    logit = torch.einsum('ok,nkhw->nohw', conv.weight[:, :, 0, 0], x)
    weights = slow_bn(pool.logit.norm, logit).sigmoid().exp()
    expected = slow_weighted_average(x, weights, 2)
    torch.testing.assert_close(pool(x), expected)
    torch.testing.assert_close(pool.pooling_weights(x), weights)


def test_softpool_matches_its_formula():
    pool = build_pooling(dict(type='SoftPool'), 3, 3)
    x = 4 * torch.randn(2, 3, 7, 8, dtype=torch.float64)
    expected = x.new_zeros(2, 3, 3, 3)
    for i, j, rows, cols in windows(7, 8, 3):
        window = x[:, :, rows, cols].flatten(2)
        softmax = window.exp() / window.exp().sum(dim=2, keepdim=True)
        expected[:, :, i, j] = (softmax * window).sum(dim=2)
    torch.testing.assert_close(pool(x), expected)


@pytest.mark.parametrize('scale', [1e4, -1e4])
def test_softpool_is_finite_on_huge_inputs(scale):
    pool = build_pooling(dict(type='SoftPool'), 3, 2)
    # Distinct values up to |scale|, at least 25 apart.
    count = 2 * 3 * 7 * 9
    x = torch.randperm(count).float().add(1).mul(scale / count)
    x = x.view(2, 3, 7, 9).requires_grad_()
    out = pool(x)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    # The pixels of a window differ by >= 25: the softmax picks the max.
    torch.testing.assert_close(out, F.max_pool2d(x, 2, 2, ceil_mode=True))
    constant = torch.full((1, 3, 5, 5), scale)
    torch.testing.assert_close(pool(constant), torch.full((1, 3, 3, 3),
                                                          scale))


def slow_gaussian(pool, x, noise=None):
    """mu_X + softplus(eta) * sigma_X, eta = mu_0 (+ sigma_0 * noise)."""
    n, c, height, width = x.shape
    s = pool.stride
    gap = x.mean(dim=(2, 3))

    def layer(module, t, act):
        t = t @ module.conv.weight[:, :, 0, 0].T
        if module.conv.bias is not None:
            t = t + module.conv.bias
        if module.with_norm:
            t = slow_bn(module.norm, t)
        return act(t)

    hidden = layer(pool.bottleneck[1], gap, torch.relu)
    eta = layer(pool.to_mean, hidden, lambda t: t)
    out = x.new_zeros(n, c, pooled(height, s), pooled(width, s))
    for i, j, rows, cols in windows(height, width, s):
        window = x[:, :, rows, cols].flatten(2)
        mean = window.mean(dim=2)
        std = window.var(dim=2, unbiased=False).clamp(min=pool.eps).sqrt()
        eta_ij = eta
        if noise is not None:
            sigma = layer(pool.to_std, hidden, torch.sigmoid)
            z = noise[..., i, j] if pool.noise == 'pixel' else noise[..., 0, 0]
            eta_ij = eta + sigma * z
        out[:, :, i, j] = mean + F.softplus(eta_ij) * std
    return out


def test_gaussian_pool_in_eval_matches_its_formula():
    pool = randomise(build_pooling(dict(type='GaussianPool'), 4, 2))
    pool = pool.double().eval()
    x = torch.randn(2, 4, 5, 7, dtype=torch.float64)
    torch.testing.assert_close(pool(x), slow_gaussian(pool, x))


@pytest.mark.parametrize('noise', ['pixel', 'channel'])
def test_gaussian_pool_in_training_samples_eta(noise):
    # Without norms the bottleneck computes the same in train and eval, so
    # the only difference is the drawn noise, which the seed reproduces.
    pool = build_pooling(dict(type='GaussianPool', noise=noise,
                              norm_cfg=None), 4, 2)
    pool = randomise(pool).double().train()
    x = torch.randn(2, 4, 5, 7, dtype=torch.float64)
    torch.manual_seed(7)
    out = pool(x)
    torch.manual_seed(7)
    shape = (2, 4, 3, 4) if noise == 'pixel' else (2, 4, 1, 1)
    drawn = torch.randn(shape, dtype=torch.float64)
    torch.testing.assert_close(out, slow_gaussian(pool, x, noise=drawn))


def test_gaussian_pool_is_random_in_training_and_deterministic_in_eval():
    pool = build_pooling(dict(type='GaussianPool'), CHANNELS, 2)
    x = torch.randn(2, CHANNELS, 7, 9)
    pool.train()
    first, second = pool(x), pool(x)
    assert (first - second).abs().max() > 1e-3
    pool.eval()
    torch.testing.assert_close(pool(x), pool(x), rtol=0, atol=0)
    # Its output is the window mean plus a non-negative multiple of the std.
    assert (pool(x) >= F.avg_pool2d(x, 2, 2, ceil_mode=True) - 1e-6).all()


@pytest.mark.parametrize('mode', ['mixed', 'gated'])
@pytest.mark.parametrize('per_channel', [False, True])
def test_mixed_pool_matches_its_formula(mode, per_channel):
    pool = build_pooling(dict(type='MixedPool', mode=mode,
                              per_channel=per_channel), 3, 3)
    pool = randomise(pool).double()
    x = torch.randn(2, 3, 7, 8, dtype=torch.float64)
    expected = x.new_zeros(2, 3, 3, 3)
    for i, j, rows, cols in windows(7, 8, 3):
        window = x[:, :, rows, cols]
        if mode == 'mixed':
            proportion = pool.mix_logit.view(1, -1).sigmoid()
        else:
            mask = pool.gate_mask[:, 0, :window.shape[2], :window.shape[3]]
            proportion = (mask * window).sum(dim=(2, 3)).sigmoid()
        window = window.flatten(2)
        expected[:, :, i, j] = (proportion * window.max(dim=2).values +
                                (1 - proportion) * window.mean(dim=2))
    torch.testing.assert_close(pool(x), expected)


def slow_gru_last_state(gru, sequence, suffix=''):
    """The GRU equations step by step; the last hidden state."""
    w_ih, w_hh = (getattr(gru, f'weight_ih_l0{suffix}'),
                  getattr(gru, f'weight_hh_l0{suffix}'))
    b_ih, b_hh = (getattr(gru, f'bias_ih_l0{suffix}'),
                  getattr(gru, f'bias_hh_l0{suffix}'))
    h = sequence.new_zeros(gru.hidden_size)
    for step in sequence:
        r_i, z_i, n_i = (w_ih @ step + b_ih).chunk(3)
        r_h, z_h, n_h = (w_hh @ h + b_hh).chunk(3)
        reset, update = torch.sigmoid(r_i + r_h), torch.sigmoid(z_i + z_h)
        candidate = torch.tanh(n_i + reset * n_h)
        h = (1 - update) * candidate + update * h
    return h


def test_rnnpool_matches_its_formula():
    pool = build_pooling(dict(type='RNNPool', hidden_channels=3,
                              summary_channels=2), 4, 2)
    pool = randomise(pool).double().eval()
    x = torch.randn(2, 4, 3, 5, dtype=torch.float64)
    padded = F.pad(x, (0, 1, 0, 1))
    expected = x.new_zeros(2, 4, 2, 3)
    for n in range(2):
        for i, j, _, _ in windows(3, 5, 2):
            patch = padded[n, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
            features = []
            for lines in (patch.permute(1, 2, 0), patch.permute(2, 1, 0)):
                summaries = torch.stack([
                    slow_gru_last_state(pool.line_rnn, line)
                    for line in lines])
                features += [
                    slow_gru_last_state(pool.summary_rnn, summaries),
                    slow_gru_last_state(pool.summary_rnn, summaries.flip(0),
                                        '_reverse')]
            projected = (pool.project.conv.weight[:, :, 0, 0]
                         @ torch.cat(features))
            expected[n, :, i, j] = torch.relu(
                slow_bn(pool.project.norm, projected, channel_dim=0))
    torch.testing.assert_close(pool(x), expected)


def test_subspace_attention_pool_matches_its_formula():
    groups, rank, height, width = 2, 2, 5, 7
    pool = build_pooling(dict(type='SubspaceAttnPool', groups=groups,
                              rank=rank), 4, 2)
    pool = randomise(pool).double().eval()
    x = torch.randn(2, 4, height, width, dtype=torch.float64)
    group_width = 4 // groups
    mlp_in, mlp_out = pool.mlp[0], pool.mlp[1]
    weights = x.new_zeros(2, 4, height, width)
    for n in range(2):
        squeezed = torch.stack([
            torch.einsum('k,khw->hw', pool.squeeze.weight[g, :, 0, 0],
                         x[n, g * group_width:(g + 1) * group_width])
            + pool.squeeze.bias[g] for g in range(groups)])
        profiles = torch.cat([squeezed.mean(dim=2), squeezed.mean(dim=1)],
                             dim=1)  # (g, H + W)
        hidden = torch.relu(slow_bn(
            mlp_in.norm, mlp_in.conv.weight[:, :, 0, 0] @ profiles,
            channel_dim=0))
        factors = (mlp_out.weight[:, :, 0, 0] @ hidden
                   + mlp_out.bias[:, None]).view(groups, rank, -1)
        for g in range(groups):
            attention = sum(torch.outer(factors[g, r, :height],
                                        factors[g, r, height:])
                            for r in range(rank))
            norm = pool.attention_norm
            pi = ((attention - norm.running_mean[g])
                  / (norm.running_var[g] + norm.eps).sqrt()
                  * norm.weight[g] + norm.bias[g]).sigmoid().exp()
            weights[n, g * group_width:(g + 1) * group_width] = pi
    torch.testing.assert_close(pool.pooling_weights(x), weights)
    torch.testing.assert_close(pool(x), slow_weighted_average(x, weights, 2))


def slow_bilinear_sample(image, y, x):
    """Bilinear sample of (C, H, W) at (y, x), zero outside, as DCN does."""
    height, width = image.shape[1:]
    y0, x0 = math.floor(y), math.floor(x)
    value = image.new_zeros(image.shape[0])
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < height and 0 <= xx < width:
                value = value + wy * wx * image[:, yy, xx]
    return value


def slow_deformable_patch_conv(conv, x, patch):
    """DCNv2 with kernel = stride = patch: every tap samples the input at
    its offset position and is scaled by its mask."""
    raw = slow_patch_conv(x, conv.conv_offset.weight, conv.conv_offset.bias,
                          patch)
    taps = patch * patch
    offsets = torch.cat([raw[:taps], raw[taps:2 * taps]])
    masks = raw[2 * taps:].sigmoid()
    out = x.new_zeros(conv.weight.shape[0], *raw.shape[1:])
    for ti in range(raw.shape[1]):
        for tj in range(raw.shape[2]):
            for a in range(patch):
                for b in range(patch):
                    t = a * patch + b
                    sample = slow_bilinear_sample(
                        x, ti * patch + a + offsets[2 * t, ti, tj].item(),
                        tj * patch + b + offsets[2 * t + 1, ti, tj].item())
                    out[:, ti, tj] += (conv.weight[:, :, a, b] @ sample
                                       * masks[t, ti, tj])
    if conv.bias is not None:
        out += conv.bias[:, None, None]
    return out


def slow_upsample(tokens, patch, mode):
    """(D, h, w) -> (D, h * patch, w * patch), pixel by pixel; bilinear with
    half-pixel centres (align_corners=False)."""
    dim, grid_h, grid_w = tokens.shape
    out = tokens.new_zeros(dim, grid_h * patch, grid_w * patch)

    def source(index, size):
        if mode == 'nearest':
            return [(index // patch, 1.0)]
        position = max((index + 0.5) / patch - 0.5, 0.0)
        low = math.floor(position)
        high, frac = min(low + 1, size - 1), position - low
        return [(low, 1 - frac), (high, frac)]

    for i in range(grid_h * patch):
        for j in range(grid_w * patch):
            for si, wi in source(i, grid_h):
                for sj, wj in source(j, grid_w):
                    out[:, i, j] += wi * wj * tokens[:, si, sj]
    return out


def slow_nlpool_weights(pool, image):
    """pi(x) of sec. 4.1 in the paper's order, for one (C, H, W) image:
    patch embedding (eq. 4), learned positions, multi-head self-attention
    (eqs. 2-3), upsampling to (H, W), 1x1 conv, bn2, sigmoid, exp; times
    the local LIP weights for the 'mixp' variants."""
    channels, height, width = image.shape
    p = pool.patch_size
    padded = F.pad(image, (0, -width % p, 0, -height % p))
    embed = pool.embed
    if hasattr(embed.conv, 'conv_offset'):
        tokens = slow_deformable_patch_conv(embed.conv, padded, p)
    else:
        tokens = slow_patch_conv(padded, embed.conv.weight, embed.conv.bias,
                                 p)
    tokens = torch.relu(slow_bn(embed.norm, tokens, channel_dim=0))
    tokens = tokens + pool.pos_embed.table[0]
    dim, grid_h, grid_w = tokens.shape
    sequence = tokens.flatten(1).T  # (L, D)
    attention = pool.attention
    query, key, value = (sequence @ attention.in_proj.weight.T
                         + attention.in_proj.bias).chunk(3, dim=1)
    head_dim = dim // pool.num_heads
    heads = []
    for h in range(pool.num_heads):
        part = slice(h * head_dim, (h + 1) * head_dim)
        scores = query[:, part] @ key[:, part].T / math.sqrt(head_dim)
        heads.append(scores.softmax(dim=1) @ value[:, part])
    attended = (torch.cat(heads, dim=1) @ attention.out_proj.weight.T
                + attention.out_proj.bias)
    token_map = attended.T.reshape(dim, grid_h, grid_w)
    upsampled = slow_upsample(token_map, p, pool.upsample)[:, :height,
                                                           :width]
    restored = torch.einsum('od,dhw->ohw',
                            pool.restore_conv.weight[:, :, 0, 0], upsampled)
    weights = slow_bn(pool.restore_norm, restored, channel_dim=0)
    weights = weights.sigmoid().exp()
    if isinstance(pool, MixNLPool):
        local = torch.einsum('ok,khw->ohw',
                             pool.local_logit.conv.weight[:, :, 0, 0], image)
        weights = weights * slow_bn(pool.local_logit.norm, local,
                                    channel_dim=0).sigmoid().exp()
    return weights


@pytest.mark.parametrize('name, upsample, window_norm', [
    ('NLPool', 'bilinear', True),
    ('NLPool', 'nearest', False),
    ('DeformNLPool', 'nearest', True),
    ('MixNLPool', 'bilinear', True),
    ('DeformMixNLPool', 'bilinear', True),
])
def test_nlpool_family_matches_its_formula(name, upsample, window_norm):
    # A 6 x 5 input pads to 6 x 6: a 3 x 3 token grid, the size of the
    # learned position table, which is then used as it is.
    pool = build_pooling(
        dict(type=name, patch_size=2, num_heads=2, pos_grid_size=3,
             upsample=upsample, window_norm=window_norm), 4, 2)
    pool = randomise(pool).double().eval()
    x = torch.randn(2, 4, 6, 5, dtype=torch.float64)
    weights = torch.stack([slow_nlpool_weights(pool, image) for image in x])
    torch.testing.assert_close(pool.pooling_weights(x), weights)
    torch.testing.assert_close(
        pool(x), slow_weighted_average(x, weights, 2, window_norm))
