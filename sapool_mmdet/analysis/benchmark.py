"""Cost of every registered pooling method on one input shape and stride
(``tools/benchmark_pooling.py``).

For each method, built by ``build_pooling(dict(type=method, **options), C,
s)`` (default arguments unless options are given):

- params: trainable and frozen parameters;
- FLOPs: one inference forward of the whole batch, with the convention and
  the extra operator handles of :mod:`sapool_mmdet.analysis.flops`
  (attention counted);
- forward: median wall-clock time of an inference forward (eval mode, no
  autograd); forward+backward: of a training step (train mode, backward of
  the output with a fixed gradient, gradients of input and parameters);
  both timed by ``torch.utils.benchmark.Timer`` (see
  :func:`~.latency.measure_latency`), with the interquartile range of the
  timed blocks and the intra-op thread count;
- peak memory, by the live-tensor accounting of
  :mod:`sapool_mmdet.analysis.memory` (device independent): of the inference
  forward (input and output included) and of the training step (input,
  output gradient, saved tensors and all gradients included). On CUDA, also
  ``torch.cuda.max_memory_allocated`` during the training step minus the
  memory allocated before it.
"""
import json
import sys
from dataclasses import asdict, dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from mmengine.utils import ProgressBar
from terminaltables import AsciiTable, GithubFlavoredMarkdownTable

from ..pooling import POOLING, build_pooling
from .config import check_device
from .flops import count_flops
from .latency import check_run_times, check_threads, measure_latency
from .memory import trace_activations
from .report import mib, write_text_file

__all__ = ['DEFAULT_SHAPES', 'PoolingBenchmark', 'benchmark_method',
           'split_pool_options', 'benchmark_pooling', 'benchmark_rows',
           'benchmark_text', 'benchmark_markdown', 'write_benchmark_json']

# The first down-sampling of MobileNetV2 at 320x320 (16 channels at
# 160x160) and of ResNet18 (64 channels at 80x80), batch 8.
DEFAULT_SHAPES: Tuple[Tuple[int, int, int, int], ...] = ((8, 16, 160, 160),
                                                          (8, 64, 80, 80))


@dataclass
class PoolingBenchmark:
    """One method at one shape; ``error`` is set (and the numbers are 0)
    when the method could not be built or run."""
    method: str
    shape: Tuple[int, int, int, int]
    stride: int
    device: str
    options: Dict[str, object] = field(default_factory=dict)
    params: int = 0
    flops: int = 0
    forward_ms: float = 0.0
    forward_iqr_ms: float = 0.0
    forward_backward_ms: float = 0.0
    forward_backward_iqr_ms: float = 0.0
    threads: int = 0
    peak_forward_bytes: int = 0
    peak_forward_backward_bytes: int = 0
    cuda_peak_forward_backward_bytes: Optional[int] = None
    error: str = ''


def _check_shape(shape: Sequence[int]) -> Tuple[int, int, int, int]:
    if (len(shape) != 4 or any(isinstance(v, bool) or not isinstance(v, int)
                               or v < 1 for v in shape)):
        raise ValueError(f'a shape must be four positive integers N C H W, '
                         f'got {list(shape)!r}')
    return tuple(shape)


def _check_methods(methods: Optional[Iterable[str]]) -> List[str]:
    registered = sorted(POOLING.module_dict)
    if methods is None:
        return registered
    methods = list(methods)
    unknown = [m for m in methods if m not in POOLING.module_dict]
    if unknown or not methods:
        problem = (f'unknown pooling method(s) {unknown}' if unknown else
                   'no pooling method given')
        raise ValueError(f'{problem}; registered methods are {registered}')
    return methods


def benchmark_method(method: str, shape: Sequence[int], stride: int = 2,
                     min_run_time: float = 0.5, max_run_time: float = 5.0,
                     device: str = 'cpu',
                     options: Optional[dict] = None,
                     threads: Optional[int] = None) -> PoolingBenchmark:
    """Measure one pooling method, built with ``options`` as its arguments;
    see the module docstring and, for ``min_run_time``, ``max_run_time``
    and ``threads``, :func:`~.latency.measure_latency`."""
    shape = _check_shape(shape)
    dev = torch.device(device)
    options = dict(options or {})
    result = PoolingBenchmark(method, shape, stride, dev.type, options)
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    pool = build_pooling(dict(type=method, **options), shape[1],
                         stride).to(dev)
    x = torch.randn(shape, generator=generator).to(dev)
    result.params = sum(p.numel() for p in pool.parameters())

    pool.eval()
    result.flops = count_flops(pool, (x, )).total
    with torch.no_grad():
        trace = trace_activations(pool, lambda: pool(x), inputs=[x])
        result.peak_forward_bytes = trace.peak_bytes
        forward = measure_latency(lambda: pool(x), min_run_time,
                                  max_run_time, threads)
    result.forward_ms, result.forward_iqr_ms = (forward.median_ms,
                                                forward.iqr_ms)
    result.threads = forward.threads

    pool.train()
    x_train = x.clone().requires_grad_()
    grad_output = torch.randn(trace.module_outputs[''].shapes[0],
                              generator=generator).to(dev)
    params = [p for p in pool.parameters() if p.requires_grad]

    def step() -> torch.Tensor:
        pool.zero_grad(set_to_none=True)
        x_train.grad = None
        output = pool(x_train)
        output.backward(grad_output)
        return output

    result.peak_forward_backward_bytes = trace_activations(
        pool, step, inputs=[x_train, grad_output],
        keep=lambda: [x_train.grad] + [p.grad for p in params
                                       if p.grad is not None]).peak_bytes
    training = measure_latency(step, min_run_time, max_run_time, threads)
    result.forward_backward_ms = training.median_ms
    result.forward_backward_iqr_ms = training.iqr_ms
    if dev.type == 'cuda':
        pool.zero_grad(set_to_none=True)
        x_train.grad = None
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
        before = torch.cuda.memory_allocated(dev)
        step()
        torch.cuda.synchronize(dev)
        result.cuda_peak_forward_backward_bytes = (
            torch.cuda.max_memory_allocated(dev) - before)
    return result


def split_pool_options(options: Optional[dict]) -> Dict[str, dict]:
    """``{'NLPool.patch_size': 4}`` (as parsed from
    ``--pool-options NLPool.patch_size=4``) -> ``{'NLPool': {'patch_size':
    4}}``."""
    per_method: Dict[str, dict] = {}
    for key, value in (options or {}).items():
        method, dot, argument = key.partition('.')
        if not dot or not argument:
            raise ValueError(f'a pooling option is TYPE.ARGUMENT=VALUE, e.g. '
                             f'NLPool.patch_size=4; got {key!r}')
        per_method.setdefault(method, {})[argument] = value
    return per_method


def benchmark_pooling(methods: Optional[Iterable[str]] = None,
                      shapes: Sequence[Sequence[int]] = DEFAULT_SHAPES,
                      stride: int = 2,
                      min_run_time: float = 0.5,
                      max_run_time: float = 5.0,
                      device: str = 'cpu',
                      progress: bool = True,
                      options: Optional[Dict[str, dict]] = None,
                      threads: Optional[int] = None
                      ) -> List[PoolingBenchmark]:
    """:func:`benchmark_method` for every method (default: all registered)
    at every shape, with a progress bar on stderr. A method that fails
    gets a row with its error instead of stopping the others.

    Args:
        options (dict, optional): Method -> its non-default arguments,
            e.g. ``{'NLPool': {'patch_size': 4}}``.
        min_run_time, max_run_time (float), threads (int, optional): How
            to time, see :func:`~.latency.measure_latency`.

    Raises:
        ValueError: unknown methods (also in ``options``), bad shapes,
            stride, run times or threads (checked before anything runs); a
            bad argument value fails that method's row.
    """
    methods = _check_methods(methods)
    options = dict(options or {})
    if options:
        _check_methods(options)
    shapes = [_check_shape(shape) for shape in shapes]
    if isinstance(stride, bool) or not isinstance(stride, int) or stride < 1:
        raise ValueError(f'stride must be an integer >= 1, got {stride!r}')
    check_run_times(min_run_time, max_run_time)
    threads = check_threads(threads)
    check_device(device)
    bar = (ProgressBar(len(methods) * len(shapes), file=sys.stderr)
           if progress else None)
    results = []
    for shape in shapes:
        for method in methods:
            try:
                results.append(benchmark_method(
                    method, shape, stride, min_run_time, max_run_time,
                    device, options.get(method), threads))
            except (ValueError, RuntimeError) as error:
                results.append(PoolingBenchmark(
                    method, shape, stride, torch.device(device).type,
                    dict(options.get(method, {})),
                    error=f'{type(error).__name__}: {error}'))
            if bar is not None:
                bar.update()
    if bar is not None:
        sys.stderr.write('\n')
    return results


def benchmark_rows(results: Sequence[PoolingBenchmark]) -> List[List[str]]:
    """Header and one row per result."""
    cuda = any(r.cuda_peak_forward_backward_bytes is not None
               for r in results)
    header = ['input NxCxHxW', 's', 'method', 'params', 'FLOPs (G)',
              'forward (ms)', 'fwd IQR (ms)', 'fwd+bwd (ms)',
              'fwd+bwd IQR (ms)', 'threads', 'peak fwd (MiB)',
              'peak fwd+bwd (MiB)']
    if cuda:
        header.append('CUDA peak fwd+bwd (MiB)')
    rows = [header]
    for r in results:
        arguments = ', '.join(f'{k}={v!r}' for k, v in r.options.items())
        method = f'{r.method}({arguments})' if arguments else r.method
        row = ['x'.join(map(str, r.shape)), str(r.stride), method]
        if r.error:
            row += [r.error] + [''] * (len(header) - 4)
        else:
            row += [
                str(r.params), f'{r.flops / 1e9:.4g}', f'{r.forward_ms:.2f}',
                f'{r.forward_iqr_ms:.2f}', f'{r.forward_backward_ms:.2f}',
                f'{r.forward_backward_iqr_ms:.2f}', str(r.threads),
                mib(r.peak_forward_bytes),
                mib(r.peak_forward_backward_bytes)
            ]
            if cuda:
                row.append('-' if r.cuda_peak_forward_backward_bytes is None
                           else mib(r.cuda_peak_forward_backward_bytes))
        rows.append(row)
    return rows


def _definitions(results: Sequence[PoolingBenchmark]) -> str:
    devices = ', '.join(sorted({r.device for r in results}))
    return (f'device: {devices}. FLOPs: one inference forward of the batch, '
            f'multiply-add = 1, attention counted. Times: median of '
            f'torch.utils.benchmark.Timer blocks, IQR: their interquartile '
            f'range, threads: intra-op threads. Peak: '
            f'largest total size of tensors live at once (freed after last '
            f'use, parameters excluded), inference forward / training '
            f'forward+backward.')


def benchmark_text(results: Sequence[PoolingBenchmark]) -> str:
    """The table and its definitions as plain text."""
    return (AsciiTable(benchmark_rows(results), 'pooling methods').table +
            '\n' + _definitions(results) + '\n')


def benchmark_markdown(results: Sequence[PoolingBenchmark]) -> str:
    """The table and its definitions as GitHub-flavoured Markdown."""
    return (GithubFlavoredMarkdownTable(benchmark_rows(results)).table +
            '\n\n' + _definitions(results) + '\n')


def write_benchmark_json(results: Sequence[PoolingBenchmark],
                         path: str) -> None:
    """Write a list with one record per method and shape."""
    write_text_file(path, json.dumps([asdict(r) for r in results], indent=2))
