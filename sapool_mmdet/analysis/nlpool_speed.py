"""NLPool against a transcription of the authors' NLPool module.

NLPool is built with the authors' settings (``pos_embed='rowcol'``,
``upsample='nearest'``, ``embed_width='per_head'``, 2 heads, eq. 5 with its
denominator), and
:class:`~sapool_mmdet.pooling.reference.NLPoolReference` runs the same
weights the way the authors' module does (their row/column positional
encoding written out; ``nn.MultiheadAttention`` with its defaults, which
materialise the (L, L) attention weights; upsampling before the
restoration conv, so conv, norm, sigmoid and exp run at full resolution;
separate average pools for the two sums of eq. 5). This module checks both
give the same outputs and input gradients, then times forward + backward
and traces their peak memory.
"""
from dataclasses import asdict, dataclass
from typing import Optional, Sequence

import torch

from ..pooling import build_pooling
from ..pooling.reference import NLPoolReference
from .config import check_device
from .latency import measure_latency
from .memory import trace_activations

__all__ = ['NLPoolSpeedResult', 'compare_nlpool_with_reference',
           'AUTHORS_NLPOOL']

#: NLPool configured as the authors' module ('nlp' with 2 heads).
AUTHORS_NLPOOL = dict(type='NLPool', num_heads=2, pos_embed='rowcol',
                      upsample='nearest', embed_width='per_head')


@dataclass
class NLPoolSpeedResult:
    """Times in ms (median and interquartile range of the timed blocks, at
    ``threads`` intra-op threads), peaks in bytes (fwd + bwd, see
    memory.py)."""
    shape: tuple
    patch_size: int
    stride: int
    nlpool_ms: float
    reference_ms: float
    speedup: float
    nlpool_iqr_ms: float
    reference_iqr_ms: float
    threads: int
    nlpool_peak_bytes: int
    reference_peak_bytes: int
    max_output_diff: float
    max_grad_diff: float

    def as_dict(self) -> dict:
        return asdict(self)


def _forward_backward(module: torch.nn.Module, x: torch.Tensor):
    x.grad = None
    out = module(x)
    out.sum().backward()
    return out


def compare_nlpool_with_reference(shape: Sequence[int] = (8, 16, 160, 160),
                                  patch_size: int = 2, stride: int = 2,
                                  min_run_time: float = 1.0,
                                  max_run_time: float = 10.0,
                                  device: str = 'cpu',
                                  seed: int = 0,
                                  threads: Optional[int] = None
                                  ) -> NLPoolSpeedResult:
    """Check NLPool (with :data:`AUTHORS_NLPOOL`) equals the transcription
    of the authors' module, then time and trace both.

    Args:
        shape (sequence of int): Input (N, C, H, W). Default: MobileNetV2's
            first down-sampling at a 320x320 input, batch 8.
        patch_size (int): eps_p. Default: 2.
        stride (int): s. Default: 2.
        min_run_time (float): Seconds to time each module at least, see
            :func:`~.latency.measure_latency`. Default: 1.0.
        max_run_time (float): Seconds to time each module at most.
            Default: 10.0.
        device (str): 'cpu' or 'cuda'. Default: 'cpu'.
        seed (int): Weight and input seed. Default: 0.
        threads (int, optional): Intra-op threads; None keeps
            ``torch.get_num_threads()``. Default: None.
    """
    device = check_device(device)
    torch.manual_seed(seed)
    pool = build_pooling(dict(AUTHORS_NLPOOL, patch_size=patch_size),
                         shape[1], stride).to(device).train()
    reference = NLPoolReference(pool).to(device).train()
    x = torch.randn(*shape, device=device, requires_grad=True)

    state = {k: v.clone() for k, v in pool.state_dict().items()}
    out = _forward_backward(pool, x).detach()
    grad = x.grad.clone()
    pool.load_state_dict(state)
    out_ref = _forward_backward(reference, x).detach()
    max_output_diff = (out - out_ref).abs().max().item()
    max_grad_diff = (grad - x.grad).abs().max().item()
    del out, out_ref, grad

    times, peaks = {}, {}
    for name, module in (('nlpool', pool), ('reference', reference)):
        times[name] = measure_latency(lambda: _forward_backward(module, x),
                                      min_run_time, max_run_time, threads)
        x.grad = None
        trace = trace_activations(
            module, lambda: _forward_backward(module, x), inputs=[x],
            keep=lambda: [x.grad])
        peaks[name] = trace.peak_bytes
    ours, theirs = times['nlpool'], times['reference']
    return NLPoolSpeedResult(
        tuple(shape), patch_size, stride, ours.median_ms, theirs.median_ms,
        theirs.median_ms / ours.median_ms, ours.iqr_ms, theirs.iqr_ms,
        ours.threads, peaks['nlpool'], peaks['reference'], max_output_diff,
        max_grad_diff)
