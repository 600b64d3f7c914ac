"""Training step time, images/s and peak memory of one or more detector
configs, as mmengine's runner trains them, in float32 or mixed precision;
and their inference latency (batch 1) and throughput.

    python tools/benchmark_train.py configs/ssd_mbv2_conv.py \
        configs/ssd_mbv2_lip.py configs/ssd_mbv2_nlp.py \
        configs/ssd_mbv2_nlp_s2.py [--device cpu|cuda] [--amp none|fp16|bf16] \
        [--batch-size N] [--input-size H W] [--steps N] [--warmup N] \
        [--throughput-batch N] [--no-inference] [--min-run-time S] \
        [--max-run-time S] [--threads N] [--cfg-options KEY=VALUE ...] \
        [--json FILE] [--markdown FILE] [--plot FILE.png]

Each detector is built from its config (initialised by its init_weights, no
checkpoint loaded) with the config's data preprocessor and optimizer wrapper;
model.train_step runs on a synthetic batch (random images, plausible boxes and
labels) as the runner calls it. --amp fp16 is mmdet's train.py --amp
(AmpOptimWrapper, dynamic loss scale; CUDA only); bf16 autocasts to bfloat16
(AmpOptimWrapper on CUDA, torch.autocast on the CPU); inference runs in float32
as mmengine's test loop does. Peak memory: on CUDA
torch.cuda.max_memory_allocated over the timed steps; on the CPU the
live-tensor trace of one step (sapool_mmdet/analysis/memory.py) plus the
parameters; 'beyond state' subtracts parameters, gradients and optimizer state.
With several configs every value is followed by its ratio to the first.
Details: sapool_mmdet/analysis/train_benchmark.py, docs/gpu.md.
"""
import argparse
import sys

import torch
from mmengine.config import DictAction

from sapool_mmdet.analysis.latency import add_timing_arguments
from sapool_mmdet.analysis.train_benchmark import (AMP_MODES,
                                                   benchmark_train,
                                                   plot_train_benchmark,
                                                   train_text,
                                                   write_train_json,
                                                   write_train_markdown)
from sapool_mmdet.engine import run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('configs', nargs='+', metavar='CONFIG',
                        help='mmdet config files; ratios are against the '
                        'first')
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu',
        help='cpu or cuda[:N] (default: cuda if available, else cpu)')
    parser.add_argument(
        '--amp', choices=AMP_MODES, default='none',
        help='precision: none (float32), fp16 (AmpOptimWrapper with dynamic '
        'loss scale, as train.py --amp; CUDA only) or bf16 (default: '
        '%(default)s)')
    parser.add_argument(
        '--batch-size', type=int, metavar='N',
        help='images per training step (default: the config\'s '
        'train_dataloader.batch_size)')
    parser.add_argument(
        '--input-size', nargs=2, type=int, metavar=('H', 'W'),
        help='image height and width (default: the scale of the config\'s '
        'test-pipeline Resize, padded to the preprocessor\'s divisor)')
    parser.add_argument('--steps', type=int, default=10,
                        help='timed training steps (default: %(default)s)')
    parser.add_argument(
        '--warmup', type=int, default=2,
        help='untimed steps before them, at least 1 (default: %(default)s)')
    parser.add_argument(
        '--throughput-batch', type=int, default=32, metavar='N',
        help='batch size of the inference throughput (default: '
        '%(default)s)')
    parser.add_argument('--no-inference', action='store_true',
                        help='time training only')
    add_timing_arguments(parser)
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries for every config, as mmdet\'s tools')
    parser.add_argument('--json', metavar='FILE',
                        help='write one record per config')
    parser.add_argument('--markdown', metavar='FILE',
                        help='write the table as Markdown')
    parser.add_argument(
        '--plot', metavar='FILE.png',
        help='bar charts of peak memory and training images/s per config')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.plot and not args.plot.lower().endswith('.png'):
        sys.exit(f'error: --plot writes a PNG file; got {args.plot!r}')
    try:
        results = benchmark_train(
            args.configs, args.batch_size, args.input_size, args.steps,
            args.warmup, args.amp, args.device, args.throughput_batch,
            not args.no_inference, args.min_run_time, args.max_run_time,
            args.threads, args.cfg_options)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f'error: {error}')
    print(train_text(results), end='')
    if args.json:
        write_train_json(results, args.json)
        print(f'wrote {args.json}')
    if args.markdown:
        write_train_markdown(results, args.markdown)
        print(f'wrote {args.markdown}')
    if args.plot:
        plot_train_benchmark(results, args.plot)
        print(f'wrote {args.plot}')
    if not all(result.loss_finite for result in results):
        failed = ', '.join(r.config for r in results if not r.loss_finite)
        sys.exit(f'error: the loss was not finite in some step of {failed}')


if __name__ == '__main__':
    run_cli(main)
