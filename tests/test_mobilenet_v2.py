"""NLPoolMobileNetV2 against mmdet's MobileNetV2."""
import pytest
import torch
from mmdet.models.backbones import MobileNetV2
from mmdet.registry import MODELS

from sapool_mmdet.backbones import NLPoolMobileNetV2

NLP = dict(type='NLPool', patch_size=2)
STOCK_STRIDES = (1, 2, 2, 2, 1, 2, 1)


def build(**kwargs):
    return MODELS.build(dict(type='NLPoolMobileNetV2', **kwargs))


def block_input_sizes(model, x):
    """Spatial size of the input of every inverted-residual block."""
    sizes, hooks = {}, []
    for name, module in model.named_modules():
        if type(module).__name__ == 'InvertedResidual':
            hooks.append(module.register_forward_hook(
                lambda m, inp, out, name=name: sizes.__setitem__(
                    name, tuple(inp[0].shape[-2:]))))
    model(x)
    for hook in hooks:
        hook.remove()
    return sizes


@pytest.mark.parametrize('widen_factor', [0.35, 1.0])
def test_pooling_none_is_stock_mobilenet_v2(widen_factor):
    torch.manual_seed(0)
    kwargs = dict(widen_factor=widen_factor, out_indices=(1, 2, 4, 7))
    stock = MobileNetV2(**kwargs)
    stock.eval()  # mmdet's MobileNetV2.train() returns None
    ours = build(**kwargs).eval()
    assert list(ours.state_dict()) == list(stock.state_dict())
    assert sum(p.numel() for p in ours.parameters()) == sum(
        p.numel() for p in stock.parameters())
    ours.load_state_dict(stock.state_dict())
    x = torch.randn(1, 3, 64, 64)
    for a, b in zip(ours(x), stock(x)):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize('position', ['pre', 'inner', 'outer'])
def test_stock_checkpoint_loads_with_only_pooling_missing(position):
    stock = MobileNetV2(widen_factor=0.35)
    pooled = build(widen_factor=0.35, pooling=NLP, pool_position=position,
                   stem_pooling=dict(type='NLPool', patch_size=2))
    result = pooled.load_state_dict(stock.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert result.missing_keys
    assert all('.pool.' in k or k.startswith('stem_pool.')
               for k in result.missing_keys)
    pooled_stages = {k.split('.')[0] for k in result.missing_keys
                     if '.pool.' in k}
    assert pooled_stages == {'layer2', 'layer3', 'layer4', 'layer6'}


def test_pre_pooling_keeps_the_stock_resolution_schedule():
    x = torch.randn(1, 3, 64, 64)
    stock = block_input_sizes(build(widen_factor=0.35).eval(), x)
    pooled = block_input_sizes(
        build(widen_factor=0.35, pooling=NLP).eval(), x)
    assert stock.keys() == pooled.keys()
    for name in stock:
        block = int(name.split('.')[1])
        stage = int(name.split('.')[0][5:])
        if block == 0 and STOCK_STRIDES[stage - 1] == 2:
            # the stock block is the strided one; the pooled stage pools
            # first, so its first block already sees the reduced map
            assert pooled[name] == tuple(s // 2 for s in stock[name])
        else:
            assert pooled[name] == stock[name]


def test_inner_and_outer_positions():
    x = torch.randn(1, 3, 64, 64)
    inner = build(widen_factor=0.35, pooling=NLP, pool_position='inner')
    outer = build(widen_factor=0.35, pooling=NLP, pool_position='outer')
    inner_sizes = block_input_sizes(inner.eval(), x)
    outer_sizes = block_input_sizes(outer.eval(), x)
    # layer2 (stride 2, 2 blocks) receives the 32x32 stem output.
    assert inner_sizes['layer2.0'] == (32, 32)
    assert inner_sizes['layer2.1'] == (16, 16)
    assert outer_sizes['layer2.0'] == (32, 32)
    assert outer_sizes['layer2.1'] == (32, 32)
    assert outer_sizes['layer3.0'] == (16, 16)
    assert list(inner.layer2._modules) == ['0', 'pool', '1']
    assert list(outer.layer2._modules) == ['0', '1', 'pool']
    assert inner.layer2.pool.in_channels == 8      # stage output channels
    pre = build(widen_factor=1.0, pooling=NLP, pool_position='pre')
    assert pre.layer2.pool.in_channels == 16       # stage input channels
    assert outer.layer6.pool.in_channels == 56


@pytest.mark.parametrize('s1,expected', [(1, 8), (2, 4), (4, 2)])
def test_first_stride_scales_every_output(s1, expected):
    strides = (s1, 2, 2, 2, 1, 2, 1)
    model = build(widen_factor=0.35, strides=strides, pooling=NLP,
                  out_indices=(1, 7)).eval()
    outs = model(torch.randn(1, 3, 32, 32))
    assert outs[0].shape[-1] == expected
    assert outs[1].shape[-1] == max(1, expected // 8)
    assert hasattr(model.layer1, 'pool') == (s1 > 1)


def test_list_pooling_mixes_methods_and_stock_convs():
    pooling = [None, dict(type='MaxPool'), None, NLP, None, None, None]
    model = build(widen_factor=0.35, pooling=pooling)
    assert isinstance(model.layer2.pool, torch.nn.Module)
    assert not hasattr(model.layer3, 'pool')
    assert model.layer3[0].depthwise_conv.conv.stride == (2, 2)  # stock strided dw
    assert getattr(model.layer4, '0').depthwise_conv.conv.stride == (1, 1)
    out = model(torch.randn(1, 3, 64, 64))
    assert out[-1].shape[-1] == 2


def test_stem_pooling_takes_over_the_stem_stride():
    model = build(widen_factor=0.35,
                  stem_pooling=dict(type='AvgPool', stride=4)).eval()
    assert model.conv1.conv.stride == (1, 1)
    stock_out = build(widen_factor=0.35)(torch.randn(1, 3, 64, 64))
    out = model(torch.randn(1, 3, 64, 64))
    assert out[0].shape[-1] == stock_out[0].shape[-1] // 2


def test_stock_arguments_still_work():
    model = build(widen_factor=0.35, pooling=NLP, frozen_stages=2,
                  norm_eval=True, with_cp=True, out_indices=(2, 7))
    model.train()
    # the stock blocks follow frozen_stages and norm_eval; the new pooling
    # layers train (tests/test_backbone_recipes.py)
    assert not any(p.requires_grad
                   for p in getattr(model.layer2, '0').parameters())
    assert not any(m.training for m in getattr(model.layer3, '0').modules()
                   if isinstance(m, torch.nn.BatchNorm2d))  # norm_eval
    assert all(p.requires_grad for p in model.layer2.pool.parameters())
    assert model.layer4.pool.restore_norm.training
    x = torch.randn(2, 3, 64, 64, requires_grad=True)
    outs = model(x)
    assert len(outs) == 2
    sum(o.sum() for o in outs).backward()
    assert model.layer3.pool.restore_conv.weight.grad is not None


@pytest.mark.parametrize('kwargs,message', [
    (dict(strides=(1, 2, 2)), 'sequence of 7'),
    (dict(strides=(1, 2, 2, 2, 1, 2, 0)), r'strides\[6\]'),
    (dict(pooling=[NLP] * 7), r'pooling\[0\].*strides\[0\] is 1'),
    (dict(pooling=[None] * 3), 'list of 7'),
    (dict(pooling=dict(type='NLPool', stride=2)), 'must not set stride'),
    (dict(pooling=NLP, pool_position='middle'), "'pre', 'inner', 'outer'"),
    (dict(stem_pooling='NLPool'), 'stem_pooling'),
])
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build(widen_factor=0.35, **kwargs)


def test_registered_in_mmdet():
    assert MODELS.get('NLPoolMobileNetV2') is NLPoolMobileNetV2
