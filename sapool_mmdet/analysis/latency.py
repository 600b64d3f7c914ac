"""Wall-clock latency with ``torch.utils.benchmark.Timer``: median and
interquartile range of timed blocks, and the thread count they ran with."""
import argparse
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch.utils.benchmark import Timer

__all__ = ['Latency', 'measure_latency', 'check_run_times', 'check_threads',
           'add_timing_arguments']


@dataclass
class Latency:
    """One latency measurement.

    Attributes:
        median_ms (float): Median time of one call, in ms.
        iqr_ms (float): Interquartile range of the per-call times of the
            timed blocks, in ms (0 with a single block).
        runs (int): Timed calls (blocks x calls per block).
        threads (int): Intra-op threads (``torch.set_num_threads``) the
            calls ran with.
    """
    median_ms: float
    iqr_ms: float
    runs: int
    threads: int


def check_run_times(min_run_time: float, max_run_time: float) -> None:
    """Raise ValueError unless 0 <= min_run_time <= max_run_time and
    max_run_time > 0."""
    if (isinstance(min_run_time, bool) or isinstance(max_run_time, bool)
            or not isinstance(min_run_time, (int, float))
            or not isinstance(max_run_time, (int, float))
            or min_run_time < 0 or max_run_time <= 0
            or min_run_time > max_run_time):
        raise ValueError(
            f'need 0 <= min_run_time <= max_run_time and max_run_time > 0 '
            f'(seconds), got min_run_time={min_run_time!r}, '
            f'max_run_time={max_run_time!r}')


def check_threads(threads: Optional[int]) -> int:
    """``threads``, or ``torch.get_num_threads()`` for None; ValueError
    unless it is an integer >= 1."""
    if threads is None:
        return torch.get_num_threads()
    if isinstance(threads, bool) or not isinstance(threads, int) or (
            threads < 1):
        raise ValueError(f'threads must be an integer >= 1, got {threads!r}')
    return threads


def measure_latency(fn: Callable[[], object],
                    min_run_time: float = 0.5,
                    max_run_time: float = 5.0,
                    threads: Optional[int] = None,
                    threshold: float = 0.1) -> Latency:
    """Time ``fn()`` with ``Timer.adaptive_autorange``.

    The timer first runs ``fn`` untimed to choose how many calls make a
    block (this is also the warm-up), then times blocks until at least four
    have run for ``min_run_time`` seconds in total and their interquartile
    range is below ``threshold`` times the median, or until
    ``max_run_time`` seconds have been timed. An accelerator, if present,
    is synchronised around every block, so the time covers its kernels.

    Args:
        fn (callable): The work to time (one forward, one training step...).
        min_run_time (float): Seconds to time at least. Default: 0.5.
        max_run_time (float): Seconds after which timing stops however
            large the spread. Default: 5.0.
        threads (int, optional): Intra-op threads to run with; None keeps
            ``torch.get_num_threads()``. Default: None.
        threshold (float): IQR / median to reach. Default: 0.1.

    Returns:
        Latency
    """
    check_run_times(min_run_time, max_run_time)
    threads = check_threads(threads)
    timer = Timer(stmt='fn()', globals={'fn': fn}, num_threads=threads)
    measurement = timer.adaptive_autorange(threshold,
                                           min_run_time=min_run_time,
                                           max_run_time=max_run_time)
    return Latency(median_ms=measurement.median * 1e3,
                   iqr_ms=measurement.iqr * 1e3,
                   runs=len(measurement.raw_times) *
                   measurement.number_per_run,
                   threads=threads)


def add_timing_arguments(parser: argparse.ArgumentParser,
                         min_run_time: float = 0.5,
                         max_run_time: float = 5.0,
                         threads: Optional[int] = None) -> None:
    """Add the tools' ``--min-run-time``, ``--max-run-time`` and
    ``--threads`` options (the arguments of :func:`measure_latency`);
    ``threads`` None defaults to ``torch.get_num_threads()``."""
    parser.add_argument(
        '--min-run-time', type=float, default=min_run_time, metavar='S',
        help='seconds to time each measurement at least, in four blocks or '
        'more (default: %(default)s)')
    parser.add_argument(
        '--max-run-time', type=float, default=max_run_time, metavar='S',
        help='seconds after which a measurement stops even if the spread '
        'of its blocks is still above a tenth of the median '
        '(default: %(default)s)')
    if threads is None:
        parser.add_argument(
            '--threads', type=int, metavar='N',
            help='intra-op threads to time with (default: '
            'torch.get_num_threads(), here '
            f'{torch.get_num_threads()})')
    else:
        parser.add_argument(
            '--threads', type=int, default=threads, metavar='N',
            help='intra-op threads to time with (default: %(default)s)')
