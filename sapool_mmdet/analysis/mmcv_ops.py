"""Timing of the compiled mmcv ops the package's detectors run: NMS,
RoIAlign and the modulated deformable convolution of ``DeformNLPool``.

Used to check that a faster mmcv build (other compiler flags) does not slow
them down: build once per set of flags, run :func:`benchmark_mmcv_ops` in
each environment, compare the medians.
"""
from typing import List

import torch
from torch.utils.benchmark import Timer

__all__ = ['benchmark_mmcv_ops']


def _cases(device: str) -> list:
    from mmcv.ops import ModulatedDeformConv2dPack, nms, roi_align
    generator = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.rand(*shape, generator=generator).to(device)

    xy = rand(2000, 2) * 600
    wh = rand(2000, 2) * 100 + 4
    boxes = torch.cat([xy, xy + wh], dim=1)
    scores = rand(2000)
    feature = rand(1, 256, 50, 76)
    starts = rand(128, 2) * 200
    rois = torch.cat([
        torch.zeros(128, 1, device=device), starts,
        starts + rand(128, 2) * 100 + 8], dim=1)
    dcn = ModulatedDeformConv2dPack(32, 32, 3, padding=1).to(device)
    dcn_input = rand(1, 32, 40, 40)
    return [
        ('nms', '2000 boxes, IoU 0.5',
         lambda: nms(boxes, scores, iou_threshold=0.5)),
        ('roi_align', '128 RoIs, 1x256x50x76, 7x7, ratio 2',
         lambda: roi_align(feature, rois, (7, 7), 0.25, 2, 'avg', True)),
        ('modulated_deform_conv2d fwd', '1x32x40x40, 3x3, 32 out',
         lambda: dcn(dcn_input)),
        ('modulated_deform_conv2d fwd+bwd', '1x32x40x40, 3x3, 32 out',
         lambda: dcn(dcn_input.requires_grad_()).sum().backward()),
    ]


def benchmark_mmcv_ops(device: str = 'cpu',
                       min_run_time: float = 1.0) -> List[dict]:
    """Time each op with ``torch.utils.benchmark.Timer``.

    Args:
        device (str): 'cpu' or a CUDA device. Default: 'cpu'.
        min_run_time (float): Seconds of timed runs per op (blocked
            autorange). Default: 1.0.

    Returns:
        list[dict]: Per op: ``op``, ``input``, ``median_ms``, ``iqr_ms``,
        ``runs`` and ``threads``.
    """
    rows = []
    threads = torch.get_num_threads()
    for op, description, fn in _cases(device):
        fn()  # warm-up: lazy initialisation, allocator
        measurement = Timer(
            stmt='fn()', globals={'fn': fn}, num_threads=threads,
            label=op).blocked_autorange(min_run_time=min_run_time)
        rows.append(dict(op=op, input=description,
                         median_ms=measurement.median * 1e3,
                         iqr_ms=measurement.iqr * 1e3,
                         runs=len(measurement.times), threads=threads))
    return rows
