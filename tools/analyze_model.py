"""Activation memory, parameters, FLOPs and CPU latency of one or more
configs, per backbone stage and in total.

    python tools/analyze_model.py configs/ssd_mbv2_nlp.py \
        configs/ssd_mbv2_nlp_s2.py configs/ssd_mbv2_nlp_s4.py \
        [--scope backbone|detector] [--input-size H W] \
        [--min-run-time S] [--max-run-time S] [--threads N] \
        [--cfg-options KEY=VALUE ...] [--json FILE] [--markdown FILE] \
        [--plot FILE.png] [--deployed [--fit-kib N ...]]

Peak activation memory: the largest total size of the tensors live at once
along the forward pass, every tensor freed after its last use, parameters
excluded (see sapool_mmdet/analysis/memory.py). FLOPs: mmengine.analysis,
multiply-add = 1, with attention, RNN and window-pooling operators counted.
Latency: median time of one batch-1 forward, timed by
torch.utils.benchmark.Timer, with the interquartile range of the timed blocks
and the intra-op thread count.
With several configs every value is followed by its ratio to the first.
--deployed measures the exported float32 and int8 graphs onnxruntime runs
instead (norms folded, int8 tensors, input included; random weights).
"""
import argparse
import sys

from mmengine.config import DictAction

from sapool_mmdet.analysis import (SCOPES, add_timing_arguments,
                                   analyze_configs, plot_memory_vs_flops,
                                   reports_text, write_json, write_markdown)
from sapool_mmdet.engine import run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('configs', nargs='+', metavar='CONFIG',
                        help='mmdet config files; ratios are against the '
                        'first')
    parser.add_argument(
        '--scope', choices=SCOPES, default='backbone',
        help='measure the backbone alone, or the detector in its tensor '
        'mode (backbone, neck and head, without box decoding and NMS) '
        '(default: %(default)s)')
    parser.add_argument(
        '--input-size', nargs=2, type=int, metavar=('H', 'W'),
        help='input height and width (default: the scale of the config\'s '
        'test-pipeline Resize, padded to the preprocessor\'s divisor)')
    add_timing_arguments(parser)
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries for every config, as mmdet\'s tools '
        '(e.g. model.backbone.pool_position=pre)')
    parser.add_argument('--json', metavar='FILE',
                        help='write one record per config')
    parser.add_argument('--markdown', metavar='FILE',
                        help='write the tables as Markdown')
    parser.add_argument('--plot', metavar='FILE.png',
                        help='plot peak activation memory against FLOPs')
    parser.add_argument(
        '--deployed', action='store_true',
        help='instead: peak activation memory of the deployed graphs '
        '(exported float32 and int8 ONNX after onnxruntime\'s '
        'optimisations, input included) against the PyTorch trace; see '
        'sapool_mmdet/deploy/memory.py')
    parser.add_argument(
        '--fit-kib', type=float, nargs='+', default=[], metavar='N',
        help='with --deployed: also the largest input (steps of 32 px) '
        'whose deployed int8 peak fits each budget in KiB')
    return parser.parse_args()


def deployed(args: argparse.Namespace) -> None:
    """--deployed: one row per config, written as JSON/Markdown too."""
    import json

    from sapool_mmdet.deploy.config_memory import (deployed_config_memory,
                                                   deployed_reports_table)
    from sapool_mmdet.fileio import atomic_open
    try:
        reports = [deployed_config_memory(config, args.scope,
                                          args.input_size, args.cfg_options,
                                          fit_kib=args.fit_kib)
                   for config in args.configs]
    except (FileNotFoundError, ValueError, ImportError) as error:
        sys.exit(f'error: {error}')
    print(deployed_reports_table(reports), end='')
    if args.json:
        with atomic_open(args.json, 'w', encoding='utf-8') as f:
            json.dump([r.as_dict() for r in reports], f, indent=2)
            f.write('\n')
        print(f'wrote {args.json}')
    if args.markdown:
        with atomic_open(args.markdown, 'w', encoding='utf-8') as f:
            f.write(deployed_reports_table(reports, markdown=True))
        print(f'wrote {args.markdown}')


def main() -> None:
    args = parse_args()
    if args.fit_kib and not args.deployed:
        sys.exit('error: --fit-kib measures deployed graphs; add --deployed')
    if args.deployed:
        deployed(args)
        return
    if args.plot and not args.plot.lower().endswith('.png'):
        sys.exit(f'error: --plot writes a PNG file; got {args.plot!r}')
    try:
        reports = analyze_configs(args.configs, args.scope, args.input_size,
                                  args.min_run_time, args.max_run_time,
                                  args.threads, args.cfg_options)
    except (FileNotFoundError, ValueError) as error:
        sys.exit(f'error: {error}')
    print(reports_text(reports), end='')
    if args.json:
        write_json(reports, args.json)
        print(f'wrote {args.json}')
    if args.markdown:
        write_markdown(reports, args.markdown)
        print(f'wrote {args.markdown}')
    if args.plot:
        plot_memory_vs_flops(reports, args.plot)
        print(f'wrote {args.plot}')


if __name__ == '__main__':
    run_cli(main)
