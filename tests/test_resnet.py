"""NLPoolResNet against mmdet's ResNet, and the pool_position resolution
schedule of both pooled backbones (NLPoolResNet and NLPoolMobileNetV2)."""
import math

import pytest
import torch
from mmdet.models.backbones import MobileNetV2, ResNet
from mmdet.registry import MODELS

from sapool_mmdet.backbones import NLPoolMobileNetV2, NLPoolResNet
from sapool_mmdet.backbones.pooled_stage import POOL_POSITIONS

NLP = dict(type='NLPool', patch_size=2)


def build(**kwargs):
    return MODELS.build(dict(type='NLPoolResNet', **kwargs))


def pool_keys(model) -> set:
    """State-dict keys of the pooling modules; BN fills in a missing
    num_batches_tracked itself, so loading never reports it missing."""
    return {k for k in model.state_dict()
            if ('.pool.' in k or k.startswith('stem_pool.'))
            and not k.endswith('num_batches_tracked')}


@pytest.mark.parametrize('kwargs', [
    dict(depth=18),
    dict(depth=34, dilations=(1, 1, 1, 2), out_indices=(0, 3)),
    dict(depth=50, style='caffe', out_indices=(1, 3), with_cp=True),
    dict(depth=50, deep_stem=True, avg_down=True, frozen_stages=2,
         dcn=dict(type='DCNv2', deform_groups=1, fallback_on_stride=False),
         stage_with_dcn=(False, True, False, True)),
    dict(depth=101, num_stages=3, strides=(1, 2, 2), dilations=(1, 1, 1),
         out_indices=(2, ), norm_eval=False),
])
def test_pooling_none_is_stock_resnet(kwargs):
    torch.manual_seed(0)
    stock = ResNet(**kwargs)
    ours = build(**kwargs)
    assert [(n, type(m)) for n, m in ours.named_modules()][1:] == [
        (n, type(m)) for n, m in stock.named_modules()][1:]
    assert list(ours.state_dict()) == list(stock.state_dict())
    ours.load_state_dict(stock.state_dict())
    for train in (True, False):
        stock.train(train)
        ours.train(train)
        assert [m.training for m in ours.modules()] == [
            m.training for m in stock.modules()]
    assert [p.requires_grad for p in ours.parameters()] == [
        p.requires_grad for p in stock.parameters()]
    x = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        for a, b in zip(ours(x), stock(x), strict=True):
            assert torch.equal(a, b)


@pytest.mark.parametrize('depth,pooling', [
    (18, dict(type='ConvPool')),
    (18, NLP),
    (50, dict(NLP, embed_ratio=0.25)),
])
@pytest.mark.parametrize('strides', [(1, 2, 2, 2), (2, 2, 2, 2)])
@pytest.mark.parametrize('position', POOL_POSITIONS)
def test_stock_checkpoint_loads_with_only_pooling_missing(
        depth, pooling, strides, position):
    stock = ResNet(depth=depth).state_dict()
    pooled = build(depth=depth, strides=strides, pooling=pooling,
                   pool_position=position,
                   stem_pooling=dict(type='ConvPool'))
    result = pooled.load_state_dict(stock, strict=False)
    assert not result.unexpected_keys
    assert set(result.missing_keys) == pool_keys(pooled)
    pooled_stages = {k.split('.')[0] for k in result.missing_keys}
    expected = {'stem_pool', 'layer2', 'layer3', 'layer4'}
    if strides[0] > 1:
        expected.add('layer1')
    assert pooled_stages == expected
    for key, value in pooled.state_dict().items():
        if key in stock:
            assert torch.equal(value, stock[key])


def stage_trace(model, stage_names, x):
    """Per stage: the (channels, height, width) of the stage's input, of its
    output, and of the input of each child ('0', '1', ..., 'pool')."""
    trace, hooks = {}, []

    def record(key):
        def hook(module, inputs, output):
            trace[key] = (tuple(inputs[0].shape[1:]), tuple(output.shape[1:]))
        return hook

    for stage in stage_names:
        module = getattr(model, stage)
        hooks.append(module.register_forward_hook(record(stage)))
        for child_name, child in module.named_children():
            hooks.append(child.register_forward_hook(
                record(f'{stage}.{child_name}')))
    model.eval()
    with torch.no_grad():
        model(x)
    for hook in hooks:
        hook.remove()
    return trace


BACKBONES = {
    'resnet18': (NLPoolResNet, dict(depth=18), ResNet, (1, 2, 2, 2),
                 [f'layer{i}' for i in range(1, 5)]),
    'resnet50': (NLPoolResNet, dict(depth=50), ResNet, (1, 2, 2, 2),
                 [f'layer{i}' for i in range(1, 5)]),
    'mobilenet_v2': (NLPoolMobileNetV2, dict(widen_factor=0.35), MobileNetV2,
                     (1, 2, 2, 2, 1, 2, 1),
                     [f'layer{i}' for i in range(1, 8)]),
}


@pytest.mark.parametrize('backbone', BACKBONES)
@pytest.mark.parametrize('position', POOL_POSITIONS)
@pytest.mark.parametrize('pooling', [dict(type='AvgPool'), NLP])
def test_pool_position_resolution_schedule(backbone, position, pooling):
    """'pre': pool the stage input, every block on the reduced map;
    'inner': block 0 on the incoming map, pool, the rest reduced;
    'outer': every block on the incoming map, pool the stage output.
    At the stage boundaries every position is the stock backbone."""
    cls, kwargs, stock_cls, strides, stages = BACKBONES[backbone]
    x = torch.randn(2, 3, 50, 66)
    stock = stage_trace(stock_cls(**kwargs), stages, x)
    trace = stage_trace(
        cls(pooling=pooling, pool_position=position, **kwargs), stages, x)
    for stage, stride in zip(stages, strides):
        assert trace[stage] == stock[stage]
        (c_in, *size_in), (c_out, *size_out) = trace[stage]
        blocks = [k for k in trace if k.startswith(f'{stage}.')
                  and not k.endswith('.pool')]
        if stride == 1:
            assert f'{stage}.pool' not in trace
            continue
        assert size_out == [math.ceil(s / stride) for s in size_in]
        if position == 'pre':
            pool_input, reduced = (c_in, *size_in), blocks
        elif position == 'inner':
            pool_input, reduced = (c_out, *size_in), blocks[1:]
        else:
            pool_input, reduced = (c_out, *size_in), []
        assert trace[f'{stage}.pool'][0] == pool_input
        assert trace[f'{stage}.pool'][1] == (pool_input[0], *size_out)
        for block in blocks:
            expected = size_out if block in reduced else size_in
            assert list(trace[block][0][1:]) == expected, block


@pytest.mark.parametrize('position', POOL_POSITIONS)
def test_pooled_stage_layout_keeps_stock_block_names(position):
    model = build(depth=18, pooling=NLP, pool_position=position)
    order = {'pre': ['pool', '0', '1'], 'inner': ['0', 'pool', '1'],
             'outer': ['0', '1', 'pool']}[position]
    assert list(model.layer2._modules) == order
    assert not hasattr(model.layer1, 'pool')
    channels = 64 if position == 'pre' else 128
    assert model.layer2.pool.in_channels == channels
    # the pooled stage's blocks run at stride 1; the first keeps its
    # projection shortcut because the channels change
    first_block = getattr(model.layer2, '0')
    assert first_block.conv1.stride == (1, 1)
    assert first_block.downsample[0].stride == (1, 1)


@pytest.mark.parametrize('s1,stem_stride', [(1, None), (2, 4), (4, 2)])
def test_strides_and_stem_pooling_set_the_feature_strides(s1, stem_stride):
    stem_pooling = (None if stem_stride is None else dict(
        type='AvgPool', stride=stem_stride))
    model = build(depth=18, strides=(s1, 2, 2, 2), pooling=NLP,
                  pool_position='outer', stem_pooling=stem_pooling)
    model.eval()
    stem = 4 if stem_stride is None else stem_stride
    x = torch.randn(1, 3, 128, 96)
    with torch.no_grad():
        outs = model(x)
    for i, out in enumerate(outs):
        stride = stem * s1 * 2**i
        assert out.shape[-2:] == (math.ceil(128 / stride),
                                  math.ceil(96 / stride))
    if stem_pooling is not None:
        assert model.conv1.stride == (1, 1)
        assert not hasattr(model, 'maxpool')
        assert model.stem_pool is not None


def test_stem_pooling_with_deep_stem():
    model = build(depth=18, deep_stem=True,
                  stem_pooling=dict(type='ConvPool'))
    model.eval()
    assert model.stem[0].stride == (1, 1)
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 64, 64))
    assert outs[0].shape[-2:] == (16, 16)


def test_frozen_stages_and_norm_eval_reach_the_pooling_only_on_request():
    """By default the pooling layers always train (see
    tests/test_backbone_recipes.py); freeze_pooling=True freezes them with
    their stage, the stem pooling with the stem."""
    model = build(depth=18, pooling=dict(type='ConvPool'),
                  stem_pooling=dict(type='ConvPool'), frozen_stages=2,
                  norm_eval=True, pool_position='outer', freeze_pooling=True)
    model.train()
    for frozen in (model.stem_pool, model.layer2.pool):
        assert not any(p.requires_grad for p in frozen.parameters())
        assert not frozen.training
    assert all(p.requires_grad for p in model.layer3.pool.parameters())
    assert not model.layer3.pool.conv.bn.training    # norm_eval
    model = build(depth=18, pooling=dict(type='ConvPool'),
                  stem_pooling=dict(type='ConvPool'), frozen_stages=2,
                  norm_eval=True, pool_position='outer')
    model.train()
    for pool in (model.stem_pool, model.layer2.pool, model.layer3.pool):
        assert all(p.requires_grad for p in pool.parameters())
        assert pool.training and pool.conv.bn.training


def test_init_weights_reaches_blocks_of_pooled_stages():
    """ResNet zero-initialises the last norm of each residual block
    (zero_init_residual); pooled stages must keep that."""
    model = build(depth=18, pooling=dict(type='ConvPool'),
                  pool_position='inner')
    model.init_weights()
    for stage in ('layer1', 'layer2', 'layer4'):
        for block in ('0', '1'):
            norm2 = getattr(getattr(model, stage), block).norm2
            assert torch.count_nonzero(norm2.weight) == 0, (stage, block)


def test_trains_with_gradients_into_every_pooling():
    model = build(depth=18, pooling=NLP, pool_position='outer',
                  stem_pooling=dict(NLP, patch_size=4), with_cp=True)
    model.train()
    outs = model(torch.randn(2, 3, 48, 48, requires_grad=True))
    sum(o.mean() for o in outs).backward()
    for name, param in model.named_parameters():
        if '.pool.' in name or name.startswith('stem_pool.'):
            assert param.grad is not None and param.grad.isfinite().all(), \
                name


@pytest.mark.parametrize('kwargs,error,message', [
    (dict(strides=(1, 2, 2)), ValueError, 'sequence of 4'),
    (dict(strides=(1, 2, 0, 2)), ValueError, r'strides\[2\]'),
    (dict(pooling=[NLP] * 4), ValueError, r'pooling\[0\].*strides\[0\] is 1'),
    (dict(pooling=[None, NLP]), ValueError, 'list of 4'),
    (dict(pooling=dict(type='NLPool', stride=2)), ValueError,
     'must not set stride'),
    (dict(pooling=dict(type='NoSuchPool')), ValueError, 'NLPool'),
    (dict(pooling=dict(type='NLPool', patch=2)), ValueError,
     'valid arguments'),
    (dict(pooling=NLP, pool_position='middle'), ValueError,
     "'pre', 'inner', 'outer'"),
    (dict(stem_pooling='NLPool'), ValueError, 'stem_pooling'),
    (dict(stem_pooling=dict(type='AvgPool', stride=0)), ValueError,
     'stem_pooling stride'),
    (dict(depth=19), KeyError, 'invalid depth'),
])
def test_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        build(**{'depth': 18, **kwargs})


def test_registered_in_mmdet():
    assert MODELS.get('NLPoolResNet') is NLPoolResNet
