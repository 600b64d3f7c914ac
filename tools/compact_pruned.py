"""Remove the channels a ChannelPruningHook pruned: write a compact config
and checkpoint that mmdet's tools load like any other.

    python tools/compact_pruned.py CONFIG CKPT --out DIR [--atol 1e-4] \
        [--cfg-options KEY=VALUE ...]
    python tools/compact_pruned.py CONFIG --sparsity 0.5 --out DIR

The first form writes DIR/<config>_compact.py and .pth after checking that
the compact detector's raw outputs equal the pruned one's (within --atol).
The second writes only the config, with the widths the hook starts from:
the memory of a pruned network before training it
(tools/analyze_model.py DIR/<config>_compact.py).
"""
import argparse
import sys

from mmengine.config import DictAction

from sapool_mmdet.engine import run_cli
from sapool_mmdet.pruning.compact import compact_pruned, memory_table


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='the config the model was trained '
                        'with (its ChannelPruningHook is dropped)')
    parser.add_argument('checkpoint', nargs='?',
                        help='a checkpoint saved while ChannelPruningHook '
                        'was running (it holds the masks)')
    parser.add_argument('--out', required=True, metavar='DIR',
                        help='output directory (created if missing)')
    parser.add_argument('--atol', type=float, default=1e-4,
                        help='largest accepted difference between pruned '
                        'and compact raw outputs (default: %(default)s)')
    parser.add_argument('--sparsity', type=float,
                        help='without a checkpoint: plan the widths of this '
                        'sparsity and write only the config')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip measuring the activation memory before '
                        'and after')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries, as mmdet\'s tools')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        result = compact_pruned(args.config, args.checkpoint, args.out,
                                args.cfg_options, args.atol, args.sparsity,
                                memory=not args.no_memory)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        sys.exit(f'error: {error}')
    print(result.table(), end='')
    if result.memory:
        print(f'activation memory (batch 1, inference); first stage: from '
              f'the input to the end of {result.memory[0].first_stage}')
        print(memory_table(result.memory), end='')
    if result.checkpoint:
        print(f'max |pruned - compact| on the raw outputs: '
              f'{result.max_abs_diff:.3g}')
        print(f'wrote {result.checkpoint}')
    print(f'wrote {result.config}')


if __name__ == '__main__':
    run_cli(main)
