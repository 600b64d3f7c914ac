"""Every backend of mmcv's ops present here (plain PyTorch always,
torchvision where its ops load) against compiled mmcv, element by element:
outputs and input gradients on random and edge-case inputs, and whole
detectors (Faster R-CNN: NMS + RoIAlign; SSD with DeformNLPool: NMS +
modulated deformable conv) giving the same losses and detections from the
same weights. Runs where mmcv's compiled ops are installed (`.ci/run`
builds them in a second environment); skipped elsewhere."""
import copy
from pathlib import Path

import pytest
import torch

from sapool_mmdet.ops import (compiled_mmcv_ext, mmcv_ops_backend,
                              torchvision_ops_error)

if compiled_mmcv_ext() is None:
    pytest.skip("parity needs mmcv's compiled ops (mmcv-lite here)",
                allow_module_level=True)

from mmcv.ops import batched_nms, modulated_deform_conv2d, nms, roi_align  # noqa: E402,E501
from mmdet.models.layers import multiclass_nms  # noqa: E402
from mmdet.registry import MODELS  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.registry import init_default_scope  # noqa: E402
from tiny_demo import synthetic_batch  # noqa: E402

CONFIG_DIR = Path(__file__).resolve().parents[1] / 'configs'
OURS = ['pytorch'] + (['torchvision'] if torchvision_ops_error() is None
                      else [])


def on_both(backend, fn):
    """fn() under compiled mmcv, then under ``backend``."""
    with mmcv_ops_backend('mmcv'):
        expected = fn()
    with mmcv_ops_backend(backend):
        return expected, fn()


def assert_same(expected, actual, atol=1e-5, rtol=1e-5):
    if isinstance(expected, (tuple, list)):
        assert len(expected) == len(actual)
        for e, a in zip(expected, actual):
            assert_same(e, a, atol, rtol)
        return
    if expected is None:
        assert actual is None
        return
    assert expected.shape == actual.shape and \
        expected.dtype == actual.dtype
    if expected.dtype in (torch.long, torch.int, torch.bool):
        assert torch.equal(expected, actual)
    else:
        torch.testing.assert_close(actual, expected, atol=atol, rtol=rtol)


def random_boxes(generator, count, extent=100.0):
    xy = torch.rand(count, 2, generator=generator) * extent
    wh = torch.rand(count, 2, generator=generator) * extent / 4 + 1
    return torch.cat([xy, xy + wh], dim=1)


@pytest.mark.parametrize('backend', OURS)
def test_nms(backend):
    generator = torch.Generator().manual_seed(0)
    boxes = random_boxes(generator, 500)
    scores = torch.rand(500, generator=generator)
    scores[100:140] = 0.5  # equal scores
    # a row of boxes that touch, and copies of one box
    touching = torch.tensor([[10.0 * i, 0.0, 10.0 * (i + 1), 10.0]
                             for i in range(10)])
    boxes = torch.cat([boxes, touching, boxes[:1].repeat(5, 1)])
    scores = torch.cat([scores, torch.full((10,), 0.7),
                        torch.full((5,), 0.8)])
    labels = torch.randint(0, 4, (len(boxes),), generator=generator)
    for threshold in (0.0, 0.3, 0.7):
        for offset in ((0,) if backend == 'torchvision' else (0, 1)):
            assert_same(*on_both(backend, lambda: nms(
                boxes, scores, threshold, offset)))
        assert_same(*on_both(backend, lambda: nms(
            boxes, scores, threshold, score_threshold=0.3, max_num=50)))
        assert_same(*on_both(backend, lambda: batched_nms(
            boxes, scores, labels, dict(type='nms',
                                        iou_threshold=threshold))))
    # mmdet's multiclass_nms (per-class scores, score threshold, max_num)
    multi_scores = torch.rand(300, 5, generator=generator).softmax(-1)
    assert_same(*on_both(backend, lambda: multiclass_nms(
        boxes[:300], multi_scores, 0.05, dict(type='nms', iou_threshold=0.5),
        max_num=100)))
    assert_same(*on_both(backend, lambda: nms(
        torch.zeros(0, 4), torch.zeros(0), 0.5)))


def roi_align_with_grad(feature, rois, *args):
    feature = feature.clone().requires_grad_()
    output = roi_align(feature, rois, *args)
    weights = torch.linspace(-1, 1, output.numel()).view_as(output)
    (output * weights).sum().backward()
    return output.detach(), feature.grad


@pytest.mark.parametrize('backend', OURS)
@pytest.mark.parametrize('sampling_ratio,mode,aligned', [
    (0, 'avg', True), (2, 'avg', True), (0, 'avg', False), (0, 'max', True),
    (2, 'max', False)])
def test_roi_align(backend, sampling_ratio, mode, aligned):
    if backend == 'torchvision' and mode == 'max':
        pytest.skip('torchvision has no max-mode RoIAlign; refused')
    generator = torch.Generator().manual_seed(1)
    feature = torch.randn(2, 8, 25, 38, generator=generator)
    boxes = random_boxes(generator, 40, extent=160) - 30  # some off the map
    rois = torch.cat([torch.randint(0, 2, (40, 1), generator=generator),
                      boxes], dim=1)
    rois[0, 1:] = torch.tensor([300.0, 300.0, 340.0, 350.0])  # off the map
    rois[1, 1:] = torch.tensor([20.0, 20.0, 20.0, 20.0])  # zero size
    assert_same(*on_both(backend, lambda: roi_align_with_grad(
        feature, rois, (7, 7), 0.25, sampling_ratio, mode, aligned)))
    assert_same(*on_both(backend, lambda: roi_align_with_grad(
        feature, rois[:0], (7, 7), 0.25, sampling_ratio, mode, aligned)))


def deform_conv_with_grads(x, offset, mask, weight, bias, *args):
    leaves = [t.clone().requires_grad_() if t is not None else None
              for t in (x, offset, mask, weight, bias)]
    output = modulated_deform_conv2d(*leaves, *args)
    weights = torch.linspace(-1, 1, output.numel()).view_as(output)
    (output * weights).sum().backward()
    return [output.detach()] + [t.grad if t is not None else None
                                for t in leaves]


@pytest.mark.parametrize('backend', OURS)
@pytest.mark.parametrize('stride,padding,dilation,groups,deform_groups,bias',
                         [(1, 1, 1, 1, 1, True), (2, 1, 1, 2, 2, False),
                          (1, 2, 2, 1, 4, True)])
def test_modulated_deform_conv(backend, stride, padding, dilation, groups,
                               deform_groups, bias):
    generator = torch.Generator().manual_seed(2)
    x = torch.randn(2, 8, 11, 13, generator=generator)
    out_h = (11 + 2 * padding - 2 * dilation - 1) // stride + 1
    out_w = (13 + 2 * padding - 2 * dilation - 1) // stride + 1
    taps = deform_groups * 9
    # offsets of a few pixels: many taps sample outside the map
    offset = torch.randn(2, 2 * taps, out_h, out_w, generator=generator) * 3
    mask = torch.rand(2, taps, out_h, out_w, generator=generator)
    weight = torch.randn(6, 8 // groups, 3, 3, generator=generator) * 0.1
    bias = torch.randn(6, generator=generator) if bias else None
    assert_same(*on_both(backend, lambda: deform_conv_with_grads(
        x, offset, mask, weight, bias, stride, padding, dilation, groups,
        deform_groups)), atol=1e-4, rtol=1e-4)


# --- whole detectors ----------------------------------------------------

def tiny_detector(path: str, **backbone):
    cfg = Config.fromfile(str(CONFIG_DIR / path))
    cfg.model.backbone.update(init_cfg=None, **backbone)

    def cap(node):  # RoI heads cost per RoI: keep a tiny image cheap
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ('num', 'nms_pre', 'max_per_img'):
                    node[key] = min(value, 64)
                else:
                    cap(value)

    cap(cfg.model.train_cfg)
    cap(cfg.model.test_cfg)
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def losses_and_detections(model):
    model.train()
    torch.manual_seed(0)  # the RoI sampler draws at random
    data = model.data_preprocessor(synthetic_batch(), training=True)
    losses = model(**copy.deepcopy(data), mode='loss')
    total, _ = model.parse_losses(losses)
    model.zero_grad()
    total.backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor(synthetic_batch(), training=False)
        results = model(**data, mode='predict')
    detections = [(r.pred_instances.bboxes, r.pred_instances.scores,
                   r.pred_instances.labels) for r in results]
    return ([losses[k] for k in sorted(losses)], grads, detections)


@pytest.mark.parametrize('backend', OURS)
@pytest.mark.parametrize('path,backbone', [
    ('faster-rcnn_r18_conv.py', {}),
    # DeformNLPool: the modulated deformable conv inside a detector
    ('ssd_mbv2-035_nlp.py', dict(pooling=[
        None, dict(type='DeformNLPool', patch_size=8, num_heads=2), None,
        None, None, None, None]))])
def test_detector_gives_the_same_losses_and_detections(backend, path,
                                                       backbone):
    model = tiny_detector(path, **backbone)
    # a copy each: a training step moves the norm layers' statistics
    expected, actual = on_both(
        backend, lambda: losses_and_detections(copy.deepcopy(model)))
    # the losses and gradients of one training step
    assert_same(expected[:2], actual[:2], atol=1e-4, rtol=1e-4)
    assert sum(len(d[0]) for d in expected[2]) > 0
    assert_same(expected[2], actual[2], atol=1e-4, rtol=1e-4)
