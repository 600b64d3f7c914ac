"""Time NLPool against a direct transcription of the authors' NLPool module.

NLPool is built with the authors' settings (row/column positional encoding,
nearest upsampling, their embedding width rule, 2 heads); the transcription
(sapool_mmdet.pooling.reference) computes the authors' module step by step.
Checks both give the same outputs and input gradients for the same weights,
then prints forward+backward latency (median and interquartile range of the
blocks torch.utils.benchmark.Timer times), the speed-up, and the peak
activation memory of each (the largest total of tensors live at once, as in
sapool_mmdet.analysis.memory).

    python tools/benchmark_nlpool.py                 # 8x16x160x160, p=2, s=2
    python tools/benchmark_nlpool.py --shape 2 16 64 64 --json out.json
"""
import argparse
import json
import sys

from sapool_mmdet.analysis.latency import add_timing_arguments
from sapool_mmdet.analysis.nlpool_speed import compare_nlpool_with_reference
from sapool_mmdet.engine import run_cli
from sapool_mmdet.fileio import atomic_open


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--shape', type=int, nargs=4,
                        default=[8, 16, 160, 160], metavar=('N', 'C', 'H', 'W'))
    parser.add_argument('--patch-size', type=int, default=2)
    parser.add_argument('--stride', type=int, default=2)
    add_timing_arguments(parser, min_run_time=1.0, max_run_time=10.0)
    parser.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    parser.add_argument('--json', help='also write the result to this file')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        result = compare_nlpool_with_reference(
            args.shape, args.patch_size, args.stride, args.min_run_time,
            args.max_run_time, args.device, threads=args.threads)
    except ValueError as error:
        sys.exit(f'error: {error}')
    mib = 2**20
    print(f'input {tuple(args.shape)}, patch_size {args.patch_size}, '
          f'stride {args.stride}, device {args.device}, '
          f'{result.threads} thread(s)')
    print(f'max |output diff| {result.max_output_diff:.2e}, '
          f'max |input-grad diff| {result.max_grad_diff:.2e}')
    print(f'{"":<26}{"fwd+bwd ms":>12}{"IQR ms":>10}{"peak MiB":>12}')
    print(f'{"NLPool (SDPA)":<26}{result.nlpool_ms:>12.1f}'
          f'{result.nlpool_iqr_ms:>10.1f}'
          f'{result.nlpool_peak_bytes / mib:>12.1f}')
    print(f'{"authors module (transcr.)":<26}{result.reference_ms:>12.1f}'
          f'{result.reference_iqr_ms:>10.1f}'
          f'{result.reference_peak_bytes / mib:>12.1f}')
    print(f'speed-up {result.speedup:.2f}x, peak memory ratio '
          f'{result.reference_peak_bytes / result.nlpool_peak_bytes:.2f}x')
    if args.json:
        with atomic_open(args.json) as f:
            json.dump(result.as_dict(), f, indent=2)


if __name__ == '__main__':
    run_cli(main)
