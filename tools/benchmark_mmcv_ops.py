"""Time the mmcv ops the detectors use (NMS, RoIAlign, modulated deformable
conv) on each backend present: compiled mmcv, torchvision, plain PyTorch
(sapool_mmdet.ops); e.g. to compare the backends, or mmcv builds made with
other compiler flags.

    python tools/benchmark_mmcv_ops.py [--device cpu] [--backends mmcv pytorch] [--min-run-time S] [--max-run-time S] [--threads N] [--json out.json]
"""
import argparse
import json
import sys

import mmcv
import torch

from sapool_mmdet.analysis.latency import add_timing_arguments
from sapool_mmdet.analysis.mmcv_ops import (available_backends,
                                            benchmark_mmcv_ops)
from sapool_mmdet.engine import run_cli
from sapool_mmdet.fileio import atomic_open
from sapool_mmdet.ops import BACKENDS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu',
                        help='cpu, cuda or cuda:N (default: %(default)s)')
    parser.add_argument(
        '--backends', nargs='+', choices=BACKENDS,
        help=f'backends to time (default: those present here: '
        f'{" ".join(available_backends())})')
    add_timing_arguments(parser)
    parser.add_argument('--json', help='also write the rows to this file')
    args = parser.parse_args()
    try:
        rows = benchmark_mmcv_ops(args.device, args.min_run_time,
                                  args.max_run_time, args.threads,
                                  args.backends)
    except ValueError as error:
        sys.exit(f'error: {error}')
    print(f'mmcv {mmcv.__version__}, torch {torch.__version__}, '
          f'{args.device}, {rows[0]["threads"]} thread(s)')
    print('| backend | op | input | median (ms) | IQR (ms) | runs |')
    print('| --- | --- | --- | ---: | ---: | ---: |')
    for row in rows:
        print(f'| {row["backend"]} | {row["op"]} | {row["input"]} | '
              f'{row["median_ms"]:.3f} | {row["iqr_ms"]:.3f} | '
              f'{row["runs"]} |')
    if args.json:
        with atomic_open(args.json, 'w') as f:
            json.dump(rows, f, indent=2)


if __name__ == '__main__':
    run_cli(main)
