"""Evaluate a detector's saved detections on the driving classes: COCO bbox
AP in the layout of Table 4 of Chen et al. (WACV 2023) and AP per class,
exactly as DrivingCocoMetric reports them inside a test run.

    python tools/eval_driving.py instances_val2017.json detections.bbox.json
    python tools/eval_driving.py instances_val2017.json results.pkl \\
        --label-classes coco

RESULTS is a COCO results JSON (a list of {image_id, category_id, bbox,
score}) or the pickle of mmdet's tools/test.py --out, whose labels index
the model's classes: name them with --label-classes or --config.
"""
import argparse
import os
import sys
import warnings

from sapool_mmdet.datasets import DRIVING_CLASSES
from sapool_mmdet.engine import run_cli
from sapool_mmdet.evaluation import evaluate_results, resolve_label_classes


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        'gt_json', help='COCO annotation file of the evaluated images')
    parser.add_argument(
        'results', help='COCO results JSON or mmdet results pickle')
    parser.add_argument(
        '--classes',
        nargs='+',
        default=list(DRIVING_CLASSES),
        metavar='NAME',
        help='category names to evaluate, in report order; quote names '
        'with spaces (default: the eight driving classes: %(default)s)')
    labels = parser.add_mutually_exclusive_group()
    labels.add_argument(
        '--label-classes',
        nargs='+',
        metavar='NAME',
        help='pickle only: the class of each label, in label order, or '
        "'coco' (a stock mmdet COCO model: the 80 COCO classes) or "
        "'driving' (this package's CocoDrivingDataset)")
    labels.add_argument(
        '--config',
        help="pickle only: the test config, whose test dataset's classes "
        'the labels index')
    parser.add_argument(
        '--out-dir',
        help='folder of driving_metrics.{json,md} (default: the folder of '
        'RESULTS)')
    parser.add_argument(
        '--name',
        default='driving_metrics',
        help='file name of the report, without suffix (default: '
        '%(default)s)')
    return parser.parse_args()


def _print_warning(message, category, *args, **kwargs) -> None:
    print(f'warning: {message}', file=sys.stderr, flush=True)


def main() -> None:
    args = parse_args()
    # e.g. annotations without iscrowd/area, filled: one line, no source
    warnings.showwarning = _print_warning
    out_dir = args.out_dir if args.out_dir is not None else \
        os.path.dirname(os.path.abspath(args.results))
    print(f'evaluating {args.results} against {args.gt_json}', flush=True)
    try:
        label_classes = resolve_label_classes(args.label_classes,
                                              args.config)
        evaluation = evaluate_results(args.gt_json, args.results,
                                      args.classes, label_classes, out_dir,
                                      args.name)
    except (ValueError, OSError) as error:
        sys.exit(f'error: {error}')
    print(evaluation.text())
    print(f'wrote {" and ".join(evaluation.files)}')


if __name__ == '__main__':
    run_cli(main)
