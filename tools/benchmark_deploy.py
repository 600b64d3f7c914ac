"""Deployment benchmark: file size, latency and mAP of trained detectors in
PyTorch, onnxruntime float32 and onnxruntime int8, with the int8 peak
activation memory.

    python tools/benchmark_deploy.py \
        --model NLPool configs/demo/ssd_mbv2_nlp.py CKPT \
        --model "strided conv" configs/demo/ssd_mbv2_conv.py CKPT \
        --calib-images data/synthetic_driving/train \
        --out-dir work_dirs/deploy \
        [--calib-count 100] [--min-run-time 0.5] [--max-run-time 5] \
        [--threads 1] [--no-eval] \
        [--json FILE] [--markdown FILE]

Each model is exported (float32, parity-checked, and int8 QDQ calibrated on
the first --calib-count images), timed at batch 1 on the first calibration
image (raw head outputs; box decoding and NMS excluded), evaluated with the
config's test set and evaluator in all three runtimes, and measured with
tools/analyze_model.py's activation accounting (--scope detector) and on
the deployed graphs onnxruntime runs (sapool_mmdet/deploy/memory.py).
"""
import argparse
import os
import sys

from mmengine.config import DictAction

from sapool_mmdet.analysis import add_timing_arguments
from sapool_mmdet.deploy.benchmark import (benchmark_deploy, benchmark_text,
                                           write_benchmark)
from sapool_mmdet.engine import run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', nargs=3, action='append', required=True,
                        metavar=('NAME', 'CONFIG', 'CHECKPOINT'),
                        help='a detector to benchmark (repeat for more)')
    parser.add_argument('--calib-images', required=True, metavar='DIR',
                        help='int8 calibration images (and the timed input)')
    parser.add_argument('--calib-count', type=int, default=100, metavar='N',
                        help='calibration images (default: %(default)s)')
    parser.add_argument('--out-dir', default='work_dirs/deploy',
                        help='ONNX files and metric reports '
                        '(default: %(default)s)')
    # One intra-op thread for PyTorch and onnxruntime alike by default.
    add_timing_arguments(parser, threads=1)
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries for every model')
    parser.add_argument(
        '--no-eval', action='store_true',
        help='skip the test-set evaluations: sizes, latency and memory only')
    parser.add_argument('--json', metavar='FILE', help='write the results')
    parser.add_argument('--markdown', metavar='FILE',
                        help='write the table as Markdown')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    for path in (args.json, args.markdown):
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            sys.exit(f'error: the folder of {path!r} does not exist')
    try:
        results = benchmark_deploy(
            [tuple(model) for model in args.model], args.out_dir,
            args.calib_images, args.calib_count, args.min_run_time,
            args.max_run_time, args.threads, args.cfg_options,
            evaluate=not args.no_eval)
    except (FileNotFoundError, ValueError, ImportError) as error:
        sys.exit(f'error: {error}')
    print(benchmark_text(results), end='')
    write_benchmark(results, args.json, args.markdown)
    for path in (args.json, args.markdown):
        if path:
            print(f'wrote {path}')


if __name__ == '__main__':
    run_cli(main)
