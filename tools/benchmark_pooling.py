"""Parameters, FLOPs, latency and peak memory of every registered pooling
method on the same input.

    python tools/benchmark_pooling.py [--methods NLPool LIPPool ...] \
        [--shape N C H W [--shape ...]] [--stride S] [--min-run-time S] \
        [--max-run-time S] [--threads N] [--device cpu|cuda] \
        [--pool-options TYPE.ARG=VALUE ...] [--json FILE] [--markdown FILE]

Default shapes: 8x16x160x160 (MobileNetV2's first down-sampling at 320x320)
and 8x64x80x80 (ResNet18's), stride 2. Every method has its default
arguments unless --pool-options sets some (NLPool.patch_size=4). FLOPs: one
inference forward, multiply-add = 1, attention counted. Times: median and
interquartile range of the blocks torch.utils.benchmark.Timer times (at least
--min-run-time seconds and four blocks, until the IQR is below a tenth of the
median or --max-run-time seconds have passed), at --threads intra-op
threads. Peak memory: the largest total size of the
tensors live at once (sapool_mmdet/analysis/memory.py) in an inference
forward and in a training forward+backward; on CUDA also
torch.cuda.max_memory_allocated.
"""
import argparse
import sys

import torch
from mmengine.config import DictAction

from sapool_mmdet.analysis.benchmark import (DEFAULT_SHAPES,
                                             benchmark_markdown,
                                             benchmark_pooling,
                                             benchmark_text,
                                             split_pool_options,
                                             write_benchmark_json)
from sapool_mmdet.analysis.latency import add_timing_arguments
from sapool_mmdet.analysis.report import write_text_file
from sapool_mmdet.engine import run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--methods', nargs='+', metavar='TYPE',
                        help='registered pooling types (default: all)')
    parser.add_argument(
        '--shape', nargs=4, type=int, action='append',
        metavar=('N', 'C', 'H', 'W'),
        help='input shape; repeat for several (default: '
        f'{" and ".join("x".join(map(str, s)) for s in DEFAULT_SHAPES)})')
    parser.add_argument('--stride', type=int, default=2,
                        help='pooling stride s (default: %(default)s)')
    add_timing_arguments(parser)
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu',
        help='torch device (default: cuda if available, else cpu)')
    parser.add_argument(
        '--pool-options', nargs='+', action=DictAction,
        metavar='TYPE.ARG=VALUE',
        help='non-default arguments of some methods, e.g. '
        'NLPool.patch_size=4 NLPool.num_heads=4')
    parser.add_argument('--json', metavar='FILE',
                        help='write one record per method and shape')
    parser.add_argument('--markdown', metavar='FILE',
                        help='write the table as Markdown')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        results = benchmark_pooling(args.methods, args.shape or DEFAULT_SHAPES,
                                    args.stride, args.min_run_time,
                                    args.max_run_time, args.device,
                                    options=split_pool_options(
                                        args.pool_options),
                                    threads=args.threads)
    except ValueError as error:
        sys.exit(f'error: {error}')
    print(benchmark_text(results), end='')
    if args.json:
        write_benchmark_json(results, args.json)
        print(f'wrote {args.json}')
    if args.markdown:
        write_text_file(args.markdown, benchmark_markdown(results))
        print(f'wrote {args.markdown}')
    failed = [r for r in results if r.error]
    if failed:
        sys.exit(f'error: {len(failed)} measurement(s) failed; see the '
                 f'table')


if __name__ == '__main__':
    run_cli(main)
