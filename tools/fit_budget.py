"""Find the SSDlite-MobileNetV2 driving detectors whose deployed int8 peak
activation memory fits a budget, and write the configs to train them.

    python tools/fit_budget.py --budget-kib 512 --input-size 320 320 \
        [--out DIR] [--pooling NLPool conv ...] [--recipe paper|demo] \
        [--widths 1.0 0.5 0.35] [--s1 1 2 4] [--s2 2 4] \
        [--no-stem-pooling] [--no-pruning] [--keep-size] [--min-size 64] \
        [--confirm 4] [--level extended] [--threads 1]

Levers searched: the strides s1 and s2 of the first two stages, the
MobileNetV2 width, stem pooling (pooling methods only), 2x channel pruning
of the stem and first stage, the method ('conv' = the stock strided
convolutions, or a pooling type in every down-sampling stage), and the
input size (from H W down in steps of 32 px, aspect kept; --keep-size
searches H W only). Every architecture is estimated from one PyTorch trace
(norms and activations folded, one byte per element); the estimates with
the most FLOPs per method are exported, quantised to int8 and measured on
the graph onnxruntime optimises (every activation int8, see
sapool_mmdet/deploy/memory.py). The frontier (peak against FLOPs) is
printed; --out gets one config per measured candidate that fits, inheriting
the shipped config of its method and recipe, and fit_budget.{json,md}.
When nothing fits, the floor and its cause are printed.
"""
import argparse
import sys

import torch

from sapool_mmdet.deploy.budget import (FIRST_STRIDES, RECIPES,
                                        SECOND_STRIDES, STRIDED_CONV, WIDTHS,
                                        budget_text, fit_budget)
from sapool_mmdet.deploy.memory import DEFAULT_LEVEL, OPTIMIZATION_LEVELS
from sapool_mmdet.engine import run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--budget-kib', type=float, required=True,
                        metavar='N', help='activation memory budget in KiB')
    parser.add_argument('--input-size', type=int, nargs=2, required=True,
                        metavar=('H', 'W'),
                        help='the largest input size to search')
    parser.add_argument('--out', metavar='DIR',
                        help='write the configs and fit_budget.{json,md} '
                        'here (created)')
    parser.add_argument('--pooling', nargs='+',
                        default=['NLPool', STRIDED_CONV], metavar='METHOD',
                        help=f'methods: {STRIDED_CONV!r} (stock strided '
                        f'convs) and/or pooling types (default: '
                        f'%(default)s)')
    parser.add_argument('--recipe', choices=sorted(RECIPES),
                        default='paper',
                        help='inherit the paper\'s configs or the demo\'s '
                        '(synthetic set, light schedule) '
                        '(default: %(default)s)')
    parser.add_argument('--widths', type=float, nargs='+',
                        default=list(WIDTHS),
                        help='MobileNetV2 widths (default: %(default)s)')
    parser.add_argument('--s1', type=int, nargs='+',
                        default=list(FIRST_STRIDES),
                        help='first-stage strides (default: %(default)s)')
    parser.add_argument('--s2', type=int, nargs='+',
                        default=list(SECOND_STRIDES),
                        help='second-stage strides (default: %(default)s)')
    parser.add_argument('--no-stem-pooling', action='store_true',
                        help='do not try stem pooling')
    parser.add_argument('--no-pruning', action='store_true',
                        help='do not try channel pruning')
    parser.add_argument('--keep-size', action='store_true',
                        help='search only H W, no smaller input')
    parser.add_argument('--min-size', type=int, default=64,
                        help='smallest input height searched '
                        '(default: %(default)s)')
    parser.add_argument('--confirm', type=int, default=4,
                        help='candidates measured per method '
                        '(default: %(default)s)')
    parser.add_argument('--level', choices=OPTIMIZATION_LEVELS,
                        default=DEFAULT_LEVEL,
                        help='onnxruntime optimisation level of the '
                        'measured graph (default: %(default)s)')
    parser.add_argument('--threads', type=int, default=1,
                        help='intra-op threads (default: %(default)s)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads < 1:
        sys.exit('error: --threads must be >= 1')
    torch.set_num_threads(args.threads)
    try:
        report = fit_budget(
            args.budget_kib, args.input_size, args.out, args.pooling,
            args.recipe, args.widths, args.s1, args.s2,
            (False, ) if args.no_stem_pooling else (False, True),
            (False, ) if args.no_pruning else (False, True),
            args.keep_size, args.min_size, args.confirm, args.level)
    except (FileNotFoundError, ValueError, ImportError) as error:
        sys.exit(f'error: {error}')
    print(budget_text(report), end='')
    if args.out:
        print(f'wrote {args.out}/fit_budget.json and fit_budget.md')


if __name__ == '__main__':
    run_cli(main)
