"""mmdet's training recipes on the pooled backbones: ``norm_eval``,
``frozen_stages``, SyncBN and ImageNet initialisation through ``init_cfg``.

The pooling layers are new (no ImageNet weights, no norm statistics), so
they must train: never frozen by ``frozen_stages`` unless the backbone's
``freeze_pooling`` says so, their norms in training mode under
``norm_eval``, and built with the backbone's ``norm_cfg``."""
import logging

import pytest
import torch
import torch.nn as nn
from mmdet.models.backbones import MobileNetV2, ResNet
from mmdet.registry import MODELS
from mmengine.logging import MMLogger
from torch.nn.modules.batchnorm import _BatchNorm

NLP = dict(type='NLPool', patch_size=2)

# (backbone arguments, a frozen stage that gained a pooling layer, an
# unfrozen one). MobileNetV2's stage 1 has stride 1, so no pooling.
BACKBONES = {
    'resnet18': (dict(type='NLPoolResNet', depth=18, strides=(2, 2, 2, 2),
                      pooling=NLP, pool_position='outer',
                      stem_pooling=dict(type='LIPPool', stride=4),
                      frozen_stages=1), 'layer1', 'layer3'),
    'mobilenet_v2': (dict(type='NLPoolMobileNetV2', widen_factor=0.35,
                          pooling=NLP, pool_position='inner',
                          stem_pooling=dict(type='LIPPool'),
                          frozen_stages=2), 'layer2', 'layer3'),
}


def build(name, **kwargs):
    cfg, frozen, unfrozen = BACKBONES[name]
    model = MODELS.build({**cfg, **kwargs})
    return model, getattr(model, frozen), getattr(model, unfrozen)


def norms(module):
    return [m for m in module.modules() if isinstance(m, _BatchNorm)]


def stock_part(stage):
    """The stage's stock blocks, without its pooling layer."""
    return [m for name, m in stage.named_children() if name != 'pool']


@pytest.mark.parametrize('name', BACKBONES)
def test_pooling_trains_under_norm_eval_and_frozen_stages(name):
    model, frozen, unfrozen = build(name, norm_eval=True)
    model.train()
    pools = [pool for _, pool in model.pooling_layers()]
    assert model.stem_pool in pools and frozen.pool in pools
    for pool in pools:
        assert all(m.training for m in pool.modules())
        assert norms(pool) and all(n.training for n in norms(pool))
        assert all(p.requires_grad for p in pool.parameters())
    # the stock layers follow mmdet's recipe
    for block in stock_part(frozen):
        assert not block.training
        assert not any(p.requires_grad for p in block.parameters())
    unfrozen_norms = [n for b in stock_part(unfrozen) for n in norms(b)]
    assert unfrozen_norms and not any(n.training for n in unfrozen_norms)
    assert all(p.requires_grad for b in stock_part(unfrozen)
               for p in b.parameters())
    model.train(False)
    assert not any(m.training for m in model.modules())


@pytest.mark.parametrize('name', BACKBONES)
def test_a_training_step_updates_pooling_statistics_and_weights(name):
    torch.manual_seed(0)
    model, frozen, _ = build(name, norm_eval=True)
    stock_norm = norms(stock_part(frozen)[0])[0]
    stock_mean = stock_norm.running_mean.clone()
    model.train()
    outs = model(torch.randn(2, 3, 64, 64))
    sum(o.mean() for o in outs).backward()
    for pool in (model.stem_pool, frozen.pool):
        for norm in norms(pool):
            assert not torch.equal(norm.running_mean,
                                   torch.zeros_like(norm.running_mean))
        grads = [p.grad for p in pool.parameters()]
        assert grads and all(g is not None for g in grads)
    assert torch.equal(stock_norm.running_mean, stock_mean)


@pytest.mark.parametrize('name', BACKBONES)
def test_freeze_pooling_treats_pooling_like_its_stage(name):
    model, frozen, unfrozen = build(name, norm_eval=True, freeze_pooling=True)
    model.train()
    for pool in (model.stem_pool, frozen.pool):
        assert not any(m.training for m in pool.modules())
        assert not any(p.requires_grad for p in pool.parameters())
    assert all(p.requires_grad for p in unfrozen.pool.parameters())
    assert not any(n.training for n in norms(unfrozen.pool))  # norm_eval


@pytest.mark.parametrize('name', BACKBONES)
def test_pooling_norms_follow_the_backbone_norm_cfg(name):
    model, frozen, unfrozen = build(name, norm_cfg=dict(type='SyncBN'))
    for pool in (model.stem_pool, frozen.pool, unfrozen.pool):
        assert norms(pool)
        assert all(isinstance(n, nn.SyncBatchNorm) for n in norms(pool))
    # a norm_cfg in the pooling dict wins; methods without norms build
    model, frozen, _ = build(
        name, norm_cfg=dict(type='SyncBN'),
        pooling=dict(NLP, norm_cfg=dict(type='BN')),
        stem_pooling=dict(type='MaxPool'))
    assert all(type(n) is nn.BatchNorm2d for n in norms(frozen.pool))
    assert not norms(model.stem_pool)


def stock_backbone(name):
    if name == 'resnet18':
        return ResNet(depth=18)
    return MobileNetV2(widen_factor=0.35, out_indices=(7, ))


@pytest.mark.parametrize('name', BACKBONES)
def test_imagenet_init_cfg_loads_every_stock_key(name, tmp_path):
    """A locally written stock checkpoint (as torchvision's, with the
    classifier keys a backbone does not have) through the same ``init_cfg``
    the configs use."""
    torch.manual_seed(0)
    stock = stock_backbone(name).state_dict()
    checkpoint = dict(stock, **{'fc.weight': torch.randn(10, 4),
                                'fc.bias': torch.randn(10)})
    path = tmp_path / 'imagenet.pth'
    torch.save(checkpoint, path)

    torch.manual_seed(1)
    model, _, _ = build(
        name, init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    messages = []
    handler = logging.Handler()
    handler.emit = lambda record: messages.append(record.getMessage())
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    try:
        model.init_weights()
    finally:
        logger.removeHandler(handler)

    state = model.state_dict()
    for key, value in stock.items():
        assert torch.equal(state[key], value), key
    pool_keys = {k for k in state if k not in stock
                 and not k.endswith('num_batches_tracked')}
    assert pool_keys and all(
        k.startswith('stem_pool.') or '.pool.' in k for k in pool_keys)
    report, = [m for m in messages if 'missing keys' in m]
    missing = report.split('missing keys in source state_dict:')[1]
    missing = {k.strip() for k in missing.split(',') if k.strip()}
    assert missing == pool_keys
    assert 'unexpected key in source state_dict: fc.weight, fc.bias' in report


@pytest.mark.parametrize('config', ['ssd_mbv2_nlp.py', 'faster-rcnn_r18_nlp.py'])
def test_a_syncbn_config_gets_syncbn_pooling(config):
    """What a multi-GPU user does: set the backbone's norm_cfg to SyncBN
    in the config (here with --cfg-options' mechanism)."""
    from pathlib import Path

    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(
        str(Path(__file__).resolve().parents[1] / 'configs' / config))
    cfg.merge_from_dict({'model.backbone.norm_cfg.type': 'SyncBN'})
    init_default_scope('mmdet')
    backbone = MODELS.build(cfg.model.backbone)
    pools = [pool for _, pool in backbone.pooling_layers()]
    assert pools
    for pool in pools:
        assert norms(pool)
        assert all(isinstance(n, nn.SyncBatchNorm) for n in norms(pool))
