"""mmcv's NMS, RoIAlign and modulated deformable convolution as mmdet calls
them (``mmcv.ops``), on every backend present here: plain PyTorch always,
torchvision where its ops load, compiled mmcv where installed. Each is
compared with a direct, slow transcription of the kernel's formula on tiny
inputs, and its backward with finite differences (``gradcheck``).
tests/test_mmcv_ops_parity.py compares the backends with compiled mmcv."""
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmcv.ops import (RoIAlign, batched_nms, modulated_deform_conv2d, nms,
                      roi_align)

from sapool_mmdet.ops import (BACKENDS, OpsExtension, compiled_mmcv_ext,
                              get_mmcv_ops_backend, mmcv_ops_backend,
                              resolve_backend, torchvision_ops_error)
from sapool_mmdet.ops import modulated_deform_conv2d as plain_deform_conv2d
from sapool_mmdet.ops import roi_align as plain_roi_align

ROOT = Path(__file__).resolve().parents[1]
PRESENT = ['pytorch']
if torchvision_ops_error() is None:
    PRESENT.append('torchvision')
if compiled_mmcv_ext() is not None:
    PRESENT.append('mmcv')


@pytest.fixture(params=PRESENT)
def backend(request):
    with mmcv_ops_backend(request.param):
        yield request.param


# --- NMS ----------------------------------------------------------------

def nms_reference(boxes, scores, iou_threshold, offset=0):
    """Greedy NMS written out with Python floats (distinct scores)."""
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))
    kept = []
    for i in order:
        x1, y1, x2, y2 = boxes[i].tolist()
        for j in kept:
            a1, b1, a2, b2 = boxes[j].tolist()
            w = max(0.0, min(x2, a2) - max(x1, a1) + offset)
            h = max(0.0, min(y2, b2) - max(y1, b1) + offset)
            union = ((x2 - x1 + offset) * (y2 - y1 + offset) +
                     (a2 - a1 + offset) * (b2 - b1 + offset) - w * h)
            if w * h / union > iou_threshold:
                break
        else:
            kept.append(i)
    return kept


def test_nms_is_greedy_nms(backend):
    generator = torch.Generator().manual_seed(0)
    xy = torch.rand(60, 2, generator=generator, dtype=torch.float64) * 40
    wh = torch.rand(60, 2, generator=generator, dtype=torch.float64) * 20 + 1
    boxes = torch.cat([xy, xy + wh], dim=1).float()
    scores = torch.randperm(60, generator=generator).float() / 60
    for threshold in (0.1, 0.3, 0.7):
        dets, keep = nms(boxes, scores, threshold)
        assert keep.tolist() == nms_reference(boxes, scores, threshold)
        assert torch.equal(dets[:, :4], boxes[keep])
        assert torch.equal(dets[:, 4], scores[keep])


def test_nms_edge_cases(backend):
    # a and b touch along x = 10: IoU 0, unless offset=1 counts the shared
    # pixel column; c equals a with an equal score.
    boxes = torch.tensor([[0., 0., 10., 10.], [10., 0., 20., 10.],
                          [0., 0., 10., 10.], [30., 30., 31., 35.]])
    scores = torch.tensor([0.9, 0.8, 0.9, 0.4])
    keep = nms(boxes, scores, 0.0)[1].tolist()
    assert len(keep) == 3 and keep[0] in (0, 2) and keep[1:] == [1, 3]
    if backend == 'torchvision':
        with pytest.raises(NotImplementedError, match='offset=1'):
            nms(boxes, scores, 0.0, offset=1)
    else:  # with offset 1, a and b share a column of 11 pixels: 11 / 231
        assert nms(boxes, scores, 11 / 231 - 1e-4, offset=1)[1].tolist() \
            == [keep[0], 3]
        assert nms(boxes, scores, 11 / 231 + 1e-4, offset=1)[1].tolist() \
            == keep
    # mmcv's NMSop arguments: score threshold and max_num
    assert nms(boxes, scores, 0.5, score_threshold=0.85)[1].tolist() in \
        ([0], [2])
    assert nms(boxes, scores, 0.5, max_num=2)[1].tolist() == keep[:2]
    dets, keep = nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    assert dets.shape == (0, 5) and keep.dtype == torch.long and \
        len(keep) == 0


def test_batched_nms_keeps_classes_apart(backend):
    # 0 and 1 overlap (IoU 0.81) in class 0; 2 is the same box as 1 in
    # class 1; 3 overlaps 0 with IoU 25 / 175 and 1 with 25 / 156.
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.],
                          [1., 1., 10., 10.], [5., 5., 15., 15.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.6])
    labels = torch.tensor([0, 0, 1, 0])
    dets, keep = batched_nms(boxes, scores, labels,
                             dict(type='nms', iou_threshold=0.5))
    assert keep.tolist() == [0, 2, 3]
    assert torch.allclose(dets[:, 4], scores[[0, 2, 3]])
    _, keep = batched_nms(boxes, scores, labels,
                          dict(type='nms', iou_threshold=0.1))
    assert keep.tolist() == [0, 2]
    _, keep = batched_nms(boxes, scores, labels,
                          dict(type='nms', iou_threshold=0.5,
                               class_agnostic=True))
    assert keep.tolist() == [0, 3]


# --- RoIAlign -----------------------------------------------------------

def bilinear_reference(plane, y, x):
    """Caffe2/mmcv's bilinear_interpolate, one point."""
    height, width = plane.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return 0.0
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_high = y_low = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_high = x_low = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    return (hy * hx * plane[y_low, x_low] + hy * lx * plane[y_low, x_high] +
            ly * hx * plane[y_high, x_low] + ly * lx * plane[y_high, x_high])


def roi_align_reference(feature, rois, size, scale, sampling_ratio, mode,
                        aligned):
    """RoIAlign as the kernel's loops read, bin by bin, sample by sample."""
    feature = feature.double().numpy()
    out = torch.zeros(len(rois), feature.shape[1], *size, dtype=torch.float64)
    shift = 0.5 if aligned else 0.0
    for r, (b, x1, y1, x2, y2) in enumerate(rois.double().tolist()):
        x1, y1 = x1 * scale - shift, y1 * scale - shift
        width, height = x2 * scale - shift - x1, y2 * scale - shift - y1
        if not aligned:
            width, height = max(width, 1.0), max(height, 1.0)
        bin_h, bin_w = height / size[0], width / size[1]
        grid_h = sampling_ratio or math.ceil(height / size[0])
        grid_w = sampling_ratio or math.ceil(width / size[1])
        for c in range(feature.shape[1]):
            for ph in range(size[0]):
                for pw in range(size[1]):
                    values = [
                        bilinear_reference(
                            feature[int(b), c],
                            y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h,
                            x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w)
                        for iy in range(grid_h) for ix in range(grid_w)]
                    if mode == 'avg':
                        out[r, c, ph, pw] = sum(values) / max(len(values), 1)
                    else:
                        out[r, c, ph, pw] = max(values, default=-10000.0)
    return out


def rois_on_and_off_the_map(generator, count, batch, extent):
    """RoIs of every size, some partly or wholly off an extent-pixel map,
    one of zero size."""
    start = torch.rand(count, 2, generator=generator,
                       dtype=torch.float64) * (extent + 8) - 6
    size = torch.rand(count, 2, generator=generator,
                      dtype=torch.float64) * extent
    rois = torch.cat([
        torch.randint(0, batch, (count, 1), generator=generator).double(),
        start, start + size], dim=1)
    rois[0, 1:] = torch.tensor([3.0, 4.0, 3.0, 4.0])  # zero size
    rois[1, 1:] = torch.tensor([-30.0, -30.0, -20.0, -22.0])  # off the map
    return rois


ROI_CASES = [  # (sampling_ratio, pool_mode, aligned)
    (0, 'avg', True), (2, 'avg', True), (0, 'avg', False),
    (0, 'max', True), (3, 'max', False)]


@pytest.mark.parametrize('sampling_ratio,mode,aligned', ROI_CASES)
def test_roi_align_is_the_kernels_formula(backend, sampling_ratio, mode,
                                          aligned):
    generator = torch.Generator().manual_seed(1)
    feature = torch.randn(2, 3, 7, 9, generator=generator,
                          dtype=torch.float64)
    rois = rois_on_and_off_the_map(generator, 12, 2, 18)
    expected = roi_align_reference(feature, rois, (3, 2), 0.5,
                                   sampling_ratio, mode, aligned)
    if backend == 'torchvision' and mode == 'max':
        with pytest.raises(NotImplementedError, match="pool_mode='max'"):
            roi_align(feature, rois, (3, 2), 0.5, sampling_ratio, mode,
                      aligned)
        return
    layer = RoIAlign((3, 2), 0.5, sampling_ratio, mode, aligned)
    assert torch.allclose(layer(feature, rois), expected, atol=1e-12)


@pytest.mark.parametrize('sampling_ratio,mode,aligned', ROI_CASES)
def test_roi_align_backward(backend, sampling_ratio, mode, aligned):
    if backend == 'torchvision' and mode == 'max':
        pytest.skip("torchvision has no max-mode RoIAlign (refused above)")
    generator = torch.Generator().manual_seed(2)
    feature = torch.randn(2, 2, 4, 5, generator=generator,
                          dtype=torch.float64, requires_grad=True)
    rois = rois_on_and_off_the_map(generator, 5, 2, 10)
    assert torch.autograd.gradcheck(
        lambda x: roi_align(x, rois, (2, 2), 0.5, sampling_ratio, mode,
                            aligned), (feature,))


def test_roi_align_without_rois(backend):
    feature = torch.randn(1, 4, 6, 6, requires_grad=True)
    output = roi_align(feature, torch.zeros(0, 5), (7, 7), 1.0, 0, 'avg',
                       True)
    assert output.shape == (0, 4, 7, 7)
    output.sum().backward()
    assert torch.equal(feature.grad, torch.zeros_like(feature))


# --- modulated deformable convolution -----------------------------------

def deform_conv_reference(x, offset, mask, weight, bias, stride, padding,
                          dilation, groups, deform_groups):
    """DCNv2 (Zhu et al. 2019, eq. 3) pixel by pixel, tap by tap, with
    DCN's bilinear sampling (zeros outside the map)."""
    x, offset, mask, weight = (t.double() for t in (x, offset, mask, weight))
    batch, channels, height, width = x.shape
    out_channels, _, kernel_h, kernel_w = weight.shape
    out_h, out_w = offset.shape[2:]
    per_group = channels // deform_groups
    in_per_conv_group = channels // groups
    out_per_conv_group = out_channels // groups

    def sample(plane, y, x_):
        if not (-1 < y < height and -1 < x_ < width):
            return 0.0
        y0, x0 = math.floor(y), math.floor(x_)
        value = 0.0
        for yy, xx in ((y0, x0), (y0, x0 + 1), (y0 + 1, x0),
                       (y0 + 1, x0 + 1)):
            if 0 <= yy < height and 0 <= xx < width:
                value += ((1 - abs(y - yy)) * (1 - abs(x_ - xx)) *
                          float(plane[yy, xx]))
        return value

    out = torch.zeros(batch, out_channels, out_h, out_w, dtype=torch.float64)
    for n in range(batch):
        for oy in range(out_h):
            for ox in range(out_w):
                for c in range(channels):
                    g = c // per_group
                    for i in range(kernel_h):
                        for j in range(kernel_w):
                            k = g * kernel_h * kernel_w + i * kernel_w + j
                            y = (oy * stride - padding + i * dilation +
                                 float(offset[n, 2 * k, oy, ox]))
                            x_ = (ox * stride - padding + j * dilation +
                                  float(offset[n, 2 * k + 1, oy, ox]))
                            value = sample(x[n, c], y, x_) * \
                                float(mask[n, k, oy, ox])
                            conv_group = c // in_per_conv_group
                            for o in range(
                                    conv_group * out_per_conv_group,
                                    (conv_group + 1) * out_per_conv_group):
                                out[n, o, oy, ox] += value * float(
                                    weight[o, c % in_per_conv_group, i, j])
    if bias is not None:
        out += bias.double().view(1, -1, 1, 1)
    return out


def deform_inputs(generator, batch=2, channels=4, size=(5, 6),
                  out_channels=4, groups=2, deform_groups=2, kernel=3,
                  stride=1, padding=1, dilation=1, spread=2.5):
    """Inputs whose offsets send many taps off the map."""
    height, width = size
    out_h = (height + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    out_w = (width + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1
    taps = deform_groups * kernel * kernel

    def rand(*shape, scale=1.0):
        return torch.randn(*shape, generator=generator,
                           dtype=torch.float64) * scale

    return dict(
        x=rand(batch, channels, height, width),
        offset=rand(batch, 2 * taps, out_h, out_w, scale=spread),
        mask=torch.rand(batch, taps, out_h, out_w, generator=generator,
                        dtype=torch.float64),
        weight=rand(out_channels, channels // groups, kernel, kernel),
        bias=rand(out_channels))


DEFORM_CASES = [  # stride, padding, dilation, groups, deform_groups, bias
    (1, 1, 1, 2, 2, True), (2, 0, 1, 1, 1, False), (1, 2, 2, 1, 4, True)]


@pytest.mark.parametrize('stride,padding,dilation,groups,deform_groups,bias',
                         DEFORM_CASES)
def test_modulated_deform_conv_is_dcnv2(backend, stride, padding, dilation,
                                        groups, deform_groups, bias):
    generator = torch.Generator().manual_seed(3)
    inputs = deform_inputs(generator, groups=groups,
                           deform_groups=deform_groups, stride=stride,
                           padding=padding, dilation=dilation)
    if not bias:
        inputs['bias'] = None
    expected = deform_conv_reference(**inputs, stride=stride,
                                     padding=padding, dilation=dilation,
                                     groups=groups,
                                     deform_groups=deform_groups)
    output = modulated_deform_conv2d(
        inputs['x'], inputs['offset'], inputs['mask'], inputs['weight'],
        inputs['bias'], stride, padding, dilation, groups, deform_groups)
    assert torch.allclose(output, expected, atol=1e-10)


def test_modulated_deform_conv_backward(backend):
    generator = torch.Generator().manual_seed(4)
    inputs = deform_inputs(generator, batch=1, size=(3, 3), kernel=2,
                           padding=0, spread=1.5)
    leaves = [inputs[k].requires_grad_()
              for k in ('x', 'offset', 'mask', 'weight', 'bias')]
    assert torch.autograd.gradcheck(
        lambda *t: modulated_deform_conv2d(*t, 1, 0, 1, 2, 2), leaves)


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_half_precision_inputs(dtype):
    """Plain PyTorch computes in float32 and answers in the input dtype."""
    generator = torch.Generator().manual_seed(5)
    inputs = deform_inputs(generator)
    expected = plain_deform_conv2d(
        *(inputs[k].float() for k in ('x', 'offset', 'mask', 'weight',
                                      'bias')),
        (1, 1), (1, 1), (1, 1), 2, 2)
    output = plain_deform_conv2d(
        *(inputs[k].to(dtype) for k in ('x', 'offset', 'mask', 'weight',
                                        'bias')),
        (1, 1), (1, 1), (1, 1), 2, 2)
    assert output.dtype == dtype
    assert torch.allclose(output.float(), expected, atol=0.2, rtol=0.05)
    feature = torch.randn(2, 3, 7, 9, generator=generator)
    rois = rois_on_and_off_the_map(generator, 8, 2, 18).float()
    expected = plain_roi_align(feature, rois, (3, 3), 0.5)[0]
    output = plain_roi_align(feature.to(dtype), rois.to(dtype), (3, 3),
                             0.5)[0]
    assert output.dtype == dtype
    assert torch.allclose(output.float(), expected, atol=0.1)
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.],
                          [20., 20., 30., 30.]], dtype=dtype)
    scores = torch.tensor([0.5, 0.9, 0.7], dtype=dtype)
    with mmcv_ops_backend('pytorch'):
        assert nms(boxes, scores, 0.5)[1].tolist() == [1, 2]


# --- choosing the backend -----------------------------------------------

def test_unknown_backend_names_the_valid_ones(monkeypatch):
    monkeypatch.setenv('SAPOOL_MMCV_OPS', 'cuda')
    with pytest.raises(ValueError, match='mmcv, torchvision, pytorch'):
        resolve_backend()


@pytest.mark.skipif(compiled_mmcv_ext() is not None,
                    reason="mmcv's compiled ops are installed here")
def test_compiled_backend_is_refused_without_compiled_ops():
    with pytest.raises(RuntimeError, match='make install MMCV=full'):
        resolve_backend('mmcv')


@pytest.mark.skipif(torchvision_ops_error() is None,
                    reason="torchvision's ops load here")
def test_torchvision_backend_is_refused_where_it_does_not_load():
    with pytest.raises(RuntimeError, match='does not load'):
        resolve_backend('torchvision')


def test_automatic_choice():
    expected = 'mmcv' if compiled_mmcv_ext() is not None else \
        'torchvision' if torchvision_ops_error() is None else 'pytorch'
    assert resolve_backend('auto') == expected
    if 'SAPOOL_MMCV_OPS' not in os.environ:
        assert get_mmcv_ops_backend() == expected


def test_other_ops_say_how_to_get_compiled_mmcv():
    extension = OpsExtension('pytorch')
    with pytest.raises(NotImplementedError,
                       match="'sigmoid_focal_loss_forward' needs mmcv's "
                             'compiled ops.*make install MMCV=full'):
        extension.sigmoid_focal_loss_forward(torch.zeros(1))
    if compiled_mmcv_ext() is None:  # what a user of mmcv-lite sees
        from mmcv.ops import sigmoid_focal_loss
        with pytest.raises(NotImplementedError, match='sigmoid_focal_loss'):
            sigmoid_focal_loss(torch.zeros(2, 3), torch.tensor([0, 1]))


def test_environment_variable_picks_the_backend_at_import():
    code = ('import sys, sapool_mmdet; m = sys.modules["mmcv.ops.nms"]; '
            'from sapool_mmdet.ops import get_mmcv_ops_backend; '
            'print(get_mmcv_ops_backend(), type(m.ext_module).__name__, '
            'm.ext_module.backend)')
    result = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True,
        cwd=ROOT, timeout=300,
        env=dict(os.environ, SAPOOL_MMCV_OPS='pytorch',
                 PYTHONPATH=str(ROOT)))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ['pytorch', 'OpsExtension', 'pytorch']


def test_no_mmcv_at_all_says_how_to_get_one(monkeypatch):
    import importlib.util

    from sapool_mmdet.ops import backend as backend_module
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        backend_module.importlib.util, 'find_spec',
        lambda name, *args: None if name == 'mmcv' else find_spec(name,
                                                                  *args))
    with pytest.raises(ImportError, match=r'mmcv-lite==2\.1\.0.*\[lite\]'):
        backend_module.require_mmcv()


def test_backends_are_listed():
    assert BACKENDS == ('mmcv', 'torchvision', 'pytorch')
