"""Wall-clock latency: the median of timed repeats after warm-up runs."""
import statistics
import time
from typing import Callable, Union

import torch

__all__ = ['measure_latency']


def measure_latency(fn: Callable[[], object], repeats: int = 10,
                    warmup: int = 2,
                    device: Union[str, torch.device] = 'cpu') -> float:
    """Return the median wall-clock time of ``fn()`` in milliseconds.

    Args:
        fn (callable): The work to time (one forward, one training step...).
        repeats (int): Timed runs, >= 1. Default: 10.
        warmup (int): Untimed runs before them (allocator, caches, lazy
            initialisation), >= 0. Default: 2.
        device (str | torch.device): On CUDA the device is synchronised
            around every run, so the time covers the kernels, not their
            launch. Default: 'cpu'.

    Returns:
        float: Median of the ``repeats`` timings, in ms.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f'need repeats >= 1 and warmup >= 0, got '
                         f'repeats={repeats}, warmup={warmup}')
    on_cuda = torch.device(device).type == 'cuda'

    def synchronize() -> None:
        if on_cuda:
            torch.cuda.synchronize(device)

    for _ in range(warmup):
        fn()
    synchronize()
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        synchronize()
        timings.append((time.perf_counter() - start) * 1e3)
    return statistics.median(timings)
