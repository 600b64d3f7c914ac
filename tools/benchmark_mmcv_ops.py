"""Time the compiled mmcv ops the detectors use (NMS, RoIAlign, modulated
deformable conv), e.g. to compare mmcv builds made with other compiler flags.

    python tools/benchmark_mmcv_ops.py [--device cpu] [--min-run-time S] [--max-run-time S] [--threads N] [--json out.json]
"""
import argparse
import json

import mmcv
import torch

from sapool_mmdet.analysis.latency import add_timing_arguments
from sapool_mmdet.analysis.mmcv_ops import benchmark_mmcv_ops
from sapool_mmdet.engine import run_cli
from sapool_mmdet.fileio import atomic_open


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu')
    add_timing_arguments(parser)
    parser.add_argument('--json', help='also write the rows to this file')
    args = parser.parse_args()
    rows = benchmark_mmcv_ops(args.device, args.min_run_time,
                              args.max_run_time, args.threads)
    print(f'mmcv {mmcv.__version__}, torch {torch.__version__}, '
          f'{args.device}, {rows[0]["threads"]} thread(s)')
    print('| op | input | median (ms) | IQR (ms) | runs |')
    print('| --- | --- | ---: | ---: | ---: |')
    for row in rows:
        print(f'| {row["op"]} | {row["input"]} | {row["median_ms"]:.3f} | '
              f'{row["iqr_ms"]:.3f} | {row["runs"]} |')
    if args.json:
        with atomic_open(args.json, 'w') as f:
            json.dump(rows, f, indent=2)


if __name__ == '__main__':
    run_cli(main)
