"""Channel pruning of the first stage (Chen et al., WACV 2023, Sec. 4.2):
importance, masks, prune-and-regrow, resume, compaction."""
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.runner import CheckpointLoader, Runner

from sapool_mmdet.datasets import make_synthetic_coco
from sapool_mmdet.engine import ChannelPruningHook
from sapool_mmdet.engine.pruning import (ChannelPruner, allocate,
                                         cosine_prune_rate)
from sapool_mmdet.pruning import (channel_importance, group_importance,
                                  narrow_groups_)
from sapool_mmdet.pruning.compact import compact_pruned

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
NLP = dict(type='NLPool', patch_size=2, embed_ratio=1.0, num_heads=2)


def mobilenet_v2(s1: int = 1, position: str = 'inner', **kwargs) -> dict:
    pooling = [None, NLP, NLP, None, None, None, None]
    if s1 > 1:
        pooling[0] = NLP
    return dict(type='NLPoolMobileNetV2', widen_factor=1.0,
                out_indices=(2, ), strides=(s1, 2, 2, 2, 1, 2, 1),
                pooling=pooling, pool_position=position, **kwargs)


def resnet18(s1: int = 1, **kwargs) -> dict:
    return dict(type='NLPoolResNet', depth=18, base_channels=16,
                num_stages=3, out_indices=(2, ), strides=(s1, 2, 2),
                dilations=(1, 1, 1),
                pooling=[NLP if s1 > 1 else None, NLP, NLP],
                pool_position='outer', **kwargs)


def randomise_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and norm statistics, so that no channel is special."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(
                module.num_features, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(
                module.num_features, generator=generator) + 0.5)
            module.weight.data.copy_(torch.randn(
                module.num_features, generator=generator))
            module.bias.data.copy_(torch.randn(
                module.num_features, generator=generator))
    # Not ``return model.eval()``: mmdet's ResNet.train returns None.
    model.eval()
    return model


def test_importance_is_the_squared_frobenius_norm_of_the_input_slice():
    weight = torch.randn(3, 4, 2, 5)
    expected = torch.zeros(4)
    for c in range(4):
        for m in range(3):
            for i in range(2):
                for j in range(5):
                    expected[c] += weight[m, c, i, j] ** 2
    torch.testing.assert_close(channel_importance(weight), expected)

    backbone = MODELS.build(mobilenet_v2())
    modules = dict(backbone.named_modules())
    groups = {g.name: g for g in backbone.channel_groups()}
    # The stem's map is read by stage 1's projection only.
    stem = groups['conv1']
    assert stem.consumers == ['layer1.0.linear_conv.conv']
    reader = modules['layer1.0.linear_conv.conv'].weight
    expected = torch.stack([reader[:, c].norm() ** 2
                            for c in range(reader.shape[1])])
    torch.testing.assert_close(group_importance(stem, modules), expected)
    # A residual stream is read by several convs: their slices stacked.
    stream = groups['layer2.0.linear_conv']
    assert stream.consumers == ['layer2.1.expand_conv.conv',
                                'layer3.0.expand_conv.conv']
    expected = sum(modules[n].weight.pow(2).sum((0, 2, 3))
                   for n in stream.consumers)
    torch.testing.assert_close(group_importance(stream, modules), expected)


@pytest.mark.parametrize('cfg, expected', [
    # s1 = 1, inner: the first pooling follows stage 2's first block.
    (mobilenet_v2(1), ['conv1', 'layer1.0.linear_conv',
                       'layer2.0.expand_conv', 'layer2.0.linear_conv']),
    # s1 = 2: the first pooling follows stage 1's block.
    (mobilenet_v2(2), ['conv1', 'layer1.0.linear_conv']),
    # the demo's 'pre': stage 2 pools its input.
    (mobilenet_v2(1, 'pre'), ['conv1', 'layer1.0.linear_conv']),
    # ResNet: the stem's max-pool is the first pooling; the stem's map runs
    # on through stage 1's residual stream.
    (resnet18(1), ['conv1']),
])
def test_default_maps_are_those_before_the_first_pooling(cfg, expected):
    backbone = MODELS.build(cfg)
    pruner = ChannelPruner(backbone, 0.5)
    assert pruner.names == expected


def test_resnet_stem_group_spans_the_residual_stream():
    backbone = MODELS.build(resnet18(1))
    stem = backbone.channel_groups()[0]
    assert [u.conv for u in stem.producers] == [
        'conv1', 'layer1.0.conv2', 'layer1.1.conv2']
    assert stem.consumers == ['layer1.0.conv1', 'layer1.1.conv1',
                              'layer2.0.conv1', 'layer2.0.downsample.0']
    assert stem.poolings == ['maxpool']


def test_allocate_conserves_the_total_and_respects_caps():
    assert allocate(10, [1, 1, 2], [10, 10, 10]) == [3, 2, 5]
    assert allocate(10, [1, 0, 100], [5, 5, 3]) == [5, 2, 3]
    assert allocate(4, [0, 0], [3, 3]) == [2, 2]
    for total in range(0, 12):
        parts = allocate(total, [0.3, 2.0, 0.01, 1.0], [4, 1, 4, 3])
        assert sum(parts) == total
        assert all(p <= c for p, c in zip(parts, [4, 1, 4, 3]))
    with pytest.raises(ValueError, match='cannot place'):
        allocate(5, [1, 1], [2, 2])
    assert cosine_prune_rate(0.3, 0.0) == pytest.approx(0.3)
    assert cosine_prune_rate(0.3, 0.5) == pytest.approx(0.15)
    assert cosine_prune_rate(0.3, 1.0) == pytest.approx(0.0)


def _train_steps(backbone, pruner, optimizer, steps, rate=None):
    generator = torch.Generator().manual_seed(1)
    counts = []
    for _ in range(steps):
        optimizer.zero_grad()
        x = torch.randn(2, 3, 32, 32, generator=generator)
        loss = sum(out.pow(2).mean() for out in backbone(x))
        loss.backward()
        optimizer.step()
        if rate is None:
            pruner.apply(optimizer)
        else:
            pruned, regrown = pruner.update(rate, optimizer)
            assert pruned == regrown
            counts.append(sum(pruner.pruned_counts().values()))
    return counts


def _assert_pruned_zero(pruner, optimizer):
    for group in pruner.groups:
        index = pruner.masks[group.name].nonzero().flatten()
        if not len(index):
            continue
        for module, name, dim in pruner._tensors(group):
            param = getattr(module, name)
            assert param.index_select(dim, index).abs().max() == 0
            state = optimizer.state[param]
            assert state['momentum_buffer'].index_select(
                dim, index).abs().max() == 0


def test_masks_hold_after_optimizer_steps():
    backbone = MODELS.build(mobilenet_v2(1))
    backbone.train()
    pruner = ChannelPruner(backbone, 0.5)
    pruner.prune_initial()
    optimizer = torch.optim.SGD(backbone.parameters(), lr=0.1, momentum=0.9,
                                weight_decay=1e-3)
    pruner.apply(optimizer)
    _train_steps(backbone, pruner, optimizer, 3)
    _assert_pruned_zero(pruner, optimizer)
    # The pruned channels of every map are exactly zero activations, in
    # training (batch statistics) and in eval mode.
    modules = dict(backbone.named_modules())
    for mode in (True, False):
        backbone.train(mode)
        seen = {}
        handles = [modules[unit.norm].register_forward_hook(
            lambda m, i, o, key=(group.name, unit.norm): seen.__setitem__(
                key, o.detach()))
            for group in pruner.groups for unit in group.producers]
        backbone(torch.randn(2, 3, 32, 32))
        for handle in handles:
            handle.remove()
        for (name, _), out in seen.items():
            index = pruner.masks[name].nonzero().flatten()
            assert out.index_select(1, index).abs().max() == 0


def test_pruned_count_is_the_target_after_every_update():
    backbone = MODELS.build(mobilenet_v2(1))
    backbone.train()
    pruner = ChannelPruner(backbone, 0.5, seed=3)
    total = sum(g.channels for g in pruner.groups)
    assert pruner.target == round(0.5 * total)
    pruner.prune_initial()
    assert sum(pruner.pruned_counts().values()) == pruner.target
    optimizer = torch.optim.SGD(backbone.parameters(), lr=0.05, momentum=0.9)
    before = {k: v.clone() for k, v in pruner.masks.items()}
    counts = _train_steps(backbone, pruner, optimizer, 4, rate=0.4)
    assert counts == [pruner.target] * 4
    assert any(not torch.equal(before[k], pruner.masks[k]) for k in before)
    for group in pruner.groups:
        assert (~pruner.masks[group.name]).sum() >= 1
    _assert_pruned_zero(pruner, optimizer)


def test_regrowth_conserves_the_count_and_follows_momentum():
    backbone = MODELS.build(mobilenet_v2(1))
    pruner = ChannelPruner(backbone, 0.5)
    pruner.prune_initial()
    optimizer = torch.optim.SGD(backbone.parameters(), lr=0.1, momentum=0.9)
    modules = pruner.modules
    # All the momentum in one map's readers: all regrowth goes there.
    favoured = pruner.groups[2]
    for group in pruner.groups:
        for conv in group.consumers:
            weight = modules[conv].weight
            optimizer.state[weight]['momentum_buffer'] = (
                torch.ones_like(weight) if group is favoured
                else torch.zeros_like(weight))
    before = pruner.pruned_counts()
    pruned, regrown = pruner.update(0.25, optimizer)
    after = pruner.pruned_counts()
    assert pruned == regrown > 0
    assert sum(after.values()) == sum(before.values()) == pruner.target
    assert after[favoured.name] < before[favoured.name]
    # Regrown channels: a fresh producer, a zero reader slice, so the
    # step does not change what the network computes through them.
    index = (~pruner.masks[favoured.name]).nonzero().flatten()
    reader = modules[favoured.consumers[0]].weight
    producer = modules[favoured.producers[0].conv].weight
    fresh = [c for c in index.tolist() if reader[:, c].abs().max() == 0]
    assert fresh and all(producer[c].abs().max() > 0 for c in fresh)


def test_bad_arguments_are_rejected_before_training():
    for sparsity in (0, 1, 1.5, -0.1, True, '0.5'):
        with pytest.raises(ValueError, match='sparsity must be'):
            ChannelPruningHook(sparsity=sparsity)
    for interval in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match='interval must be'):
            ChannelPruningHook(interval=interval)
    with pytest.raises(ValueError, match='prune_rate'):
        ChannelPruningHook(prune_rate=1.0)
    with pytest.raises(ValueError, match='layers must be'):
        ChannelPruningHook(layers='conv1')
    backbone = MODELS.build(mobilenet_v2(1))
    with pytest.raises(ValueError, match=r"'conv9' is not .*valid names: "
                       r"\['conv1', 'layer1.0.linear_conv'"):
        ChannelPruner(backbone, 0.5, layers=['conv9'])
    # A map that is a backbone output: the neck reads all its channels.
    with pytest.raises(ValueError, match='backbone output'):
        ChannelPruner(backbone, 0.5, layers=['layer3.0.linear_conv'])
    with pytest.raises(ValueError, match='pruned_channels'):
        MODELS.build(mobilenet_v2(1, pruned_channels={'conv1': 0}))


@pytest.mark.parametrize('cfg', [
    mobilenet_v2(1), mobilenet_v2(2), resnet18(1), resnet18(2)],
    ids=['mbv2-s1', 'mbv2-s2', 'r18-s1', 'r18-s2'])
def test_compaction_equals_the_pruned_backbone(cfg):
    backbone = randomise_(MODELS.build(cfg))
    pruner = ChannelPruner(backbone, 0.5)
    pruner.prune_initial()
    pruner.apply()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        reference = backbone(x)
    state = backbone.state_dict()
    kept = {name: (~mask).nonzero().flatten()
            for name, mask in pruner.masks.items()}
    narrow_groups_(backbone, backbone.channel_groups(), kept)
    widths = {name: len(index) for name, index in kept.items()}
    # The narrowed module and one built from the config agree.
    compact = MODELS.build(dict(cfg, pruned_channels=widths))
    compact.eval()
    compact.load_state_dict(backbone.state_dict(), strict=True)
    with torch.no_grad():
        for out in (backbone(x), compact(x)):
            for a, b in zip(out, reference):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    assert sum(p.numel() for p in compact.parameters()) < sum(
        t.numel() for k, t in state.items() if 'running' not in k
        and 'num_batches' not in k)
    narrower = [n for n, g in zip(widths, pruner.groups)
                if widths[n] < g.channels]
    assert narrower == pruner.names


def tiny_cp_config(tmp_path, data_root: str, layers=None) -> Config:
    """The demo CP config on 4 images of 96x96 in batches of 2."""
    cfg = Config.fromfile(osp.join(ROOT, 'configs', 'demo',
                                   'ssd_mbv2_nlp_cp.py'))
    resize = dict(type='Resize', scale=(96, 96), keep_ratio=False)
    train = cfg.train_dataloader
    train.update(batch_size=2, num_workers=0, persistent_workers=False)
    train.dataset.update(data_root=data_root, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True), resize,
        dict(type='PackDetInputs')])
    cfg.val_dataloader = None
    cfg.val_cfg = None
    cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    cfg.train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1,
                         val_interval=100)
    cfg.default_hooks.checkpoint.update(interval=1)
    cfg.default_hooks.logger.update(interval=1)
    cfg.custom_hooks[-1].update(interval=1, prune_rate=0.5, layers=layers)
    cfg.model.bbox_head.anchor_generator.update(
        strides=[16, 32, 48, 96, 96, 96], min_sizes=[14, 30, 45, 61, 76, 91],
        max_sizes=[30, 45, 61, 76, 91, 96])
    cfg.work_dir = str(tmp_path / 'work')
    cfg.param_scheduler = []
    return cfg


def _hook(runner) -> ChannelPruningHook:
    return next(h for h in runner.hooks
                if isinstance(h, ChannelPruningHook))


@pytest.mark.slow
def test_hook_trains_resumes_and_compacts(tmp_path):
    data_root = str(tmp_path / 'data') + '/'
    make_synthetic_coco(data_root, num_train=4, num_val=2,
                        image_size=(96, 96), seed=1)

    cfg = tiny_cp_config(tmp_path, data_root)
    cfg.experiment_name = 'train'
    runner = Runner.from_cfg(cfg)
    runner.train()
    masks = {k: v.clone() for k, v in _hook(runner).pruner.masks.items()}
    # An unknown layer fails in before_run, before any checkpoint is loaded
    # and before the first iteration.
    with pytest.raises(ValueError, match=r"'nope' is not .* valid names: "
                       r"\['conv1', 'layer1.0.linear_conv', "):
        ChannelPruningHook(layers=['conv1', 'nope']).before_run(runner)
    ckpt_path = osp.join(cfg.work_dir, 'epoch_1.pth')
    ckpt = CheckpointLoader.load_checkpoint(ckpt_path, map_location='cpu')
    saved = ckpt['channel_pruning']
    assert saved['pruned'] == {k: v.nonzero().flatten().tolist()
                               for k, v in masks.items()}
    assert sum(len(v) for v in saved['pruned'].values()) == round(
        0.5 * sum(saved['channels'].values()))

    # --resume restores the masks (the regrown channels' zero reader slices
    # would make a fresh lowest-importance choice differ).
    cfg = tiny_cp_config(tmp_path, data_root)
    cfg.experiment_name = 'resume'
    cfg.resume = True
    cfg.load_from = ckpt_path
    resumed = Runner.from_cfg(cfg)
    resumed.train()
    assert resumed.iter == 2
    assert all(torch.equal(masks[k], v)
               for k, v in _hook(resumed).pruner.masks.items())

    # Compaction: the written config and checkpoint load through mmengine
    # and give the pruned detector's raw outputs.
    # The config as the runner dumped it into its work dir.
    config_path = osp.join(cfg.work_dir, 'ssd_mbv2_nlp_cp.py')
    result = compact_pruned(config_path, ckpt_path, str(tmp_path / 'out'),
                            input_size=(96, 96))
    assert result.max_abs_diff <= 1e-4
    full, compact_memory = result.memory
    assert full.first_stage == 'layer2.pool'  # the demo pools stage 2's input
    assert compact_memory.first_peak < full.first_peak
    assert compact_memory.first_total < full.first_total
    compact_cfg = Config.fromfile(result.config)
    assert 'ChannelPruningHook' not in str(compact_cfg.custom_hooks)
    widths = compact_cfg.model.backbone.pruned_channels
    assert widths == {k: int((~v).sum()) for k, v in masks.items()}
    compact = MODELS.build(compact_cfg.model)
    state = CheckpointLoader.load_checkpoint(result.checkpoint)
    compact.load_state_dict(state['state_dict'], strict=True)
    with pytest.raises(ValueError, match='no channel-pruning masks'):
        compact_pruned(config_path, result.checkpoint,
                       str(tmp_path / 'again'))


@pytest.mark.parametrize('use', ['sparsity', 'checkpoint'])
def test_refused_compaction_leaves_no_output_folder(tmp_path, use):
    config = osp.join(ROOT, 'configs', 'ssd_mbv2_nlp_cp.py')
    out = tmp_path / 'out'
    if use == 'sparsity':
        with pytest.raises(ValueError, match='sparsity=1.5 prunes'):
            compact_pruned(config, None, str(out), sparsity=1.5,
                           memory=False)
    else:
        unpruned = tmp_path / 'unpruned.pth'
        torch.save({'state_dict': {}, 'meta': {}}, str(unpruned))
        with pytest.raises(ValueError, match='holds no channel-pruning'):
            compact_pruned(config, str(unpruned), str(out), memory=False)
    assert not out.exists()
