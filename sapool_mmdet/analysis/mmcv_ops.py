"""Timing of the mmcv ops the package's detectors run: NMS, RoIAlign and
the modulated deformable convolution of ``DeformNLPool``, on each backend
present (compiled mmcv, torchvision, plain PyTorch; :mod:`sapool_mmdet.ops`).

Used to compare the backends, and to check that a faster mmcv build (other
compiler flags) does not slow the compiled ops down: build once per set of
flags, run :func:`benchmark_mmcv_ops` in each environment, compare the
medians.
"""
from dataclasses import asdict
from typing import List, Optional, Sequence

import torch

from ..ops import (compiled_mmcv_ext, mmcv_ops_backend,
                   torchvision_ops_error)
from .config import check_device
from .latency import measure_latency

__all__ = ['available_backends', 'benchmark_mmcv_ops']


def available_backends() -> List[str]:
    """The backends of mmcv's ops that run here, compiled mmcv first."""
    backends = ['mmcv'] if compiled_mmcv_ext() is not None else []
    if torchvision_ops_error() is None:
        backends.append('torchvision')
    return backends + ['pytorch']


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
    torch.manual_seed(0)
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
                       min_run_time: float = 0.5,
                       max_run_time: float = 5.0,
                       threads: Optional[int] = None,
                       backends: Optional[Sequence[str]] = None
                       ) -> List[dict]:
    """Time each op on each backend with :func:`~.latency.measure_latency`
    (``torch.utils.benchmark.Timer``, which synchronises CUDA).

    Args:
        device (str): 'cpu' or a CUDA device. Default: 'cpu'.
        min_run_time (float): Seconds to time each op at least.
            Default: 0.5.
        max_run_time (float): Seconds after which an op's timing stops.
            Default: 5.0.
        threads (int, optional): Intra-op threads; None keeps torch's.
            Default: None.
        backends (Sequence[str], optional): Subset of 'mmcv',
            'torchvision', 'pytorch'; None times every one present
            (:func:`available_backends`). Default: None.

    Returns:
        list[dict]: Per backend and op: ``backend``, ``op``, ``input``,
        ``median_ms``, ``iqr_ms``, ``runs`` and ``threads``.

    Raises:
        ValueError, RuntimeError: for a device this torch cannot use
            (:func:`~.config.check_device`), a backend that is unknown or
            not available here (:func:`sapool_mmdet.ops.resolve_backend`).
    """
    check_device(device)
    rows = []
    for backend in backends or available_backends():
        with mmcv_ops_backend(backend):
            for op, description, fn in _cases(device):
                timing = measure_latency(fn, min_run_time, max_run_time,
                                         threads)
                rows.append(dict(backend=backend, op=op, input=description,
                                 **asdict(timing)))
    return rows
