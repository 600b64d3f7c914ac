"""Restrict a COCO annotation file, or a COCO results file, to some
categories (default: the eight driving classes), keeping category, image and
annotation ids.

    python tools/coco_subset.py instances_val2017.json driving_val2017.json
    python tools/coco_subset.py detections.bbox.json driving.bbox.json \\
        --gt instances_val2017.json
"""
import argparse
import sys
import warnings

from sapool_mmdet.datasets import (DRIVING_CLASSES, subset_coco_file,
                                   subset_results_file)
from sapool_mmdet.engine import run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument(
        'in_json',
        help='COCO annotation file to read, or with --gt a COCO results '
        'file')
    parser.add_argument(
        'out_json', help='where to write the subset (not the input file)')
    parser.add_argument(
        '--classes',
        nargs='+',
        default=list(DRIVING_CLASSES),
        metavar='NAME',
        help='category names to keep; quote names with spaces '
        "(default: the eight driving classes: %(default)s)")
    parser.add_argument(
        '--keep-empty',
        action='store_true',
        help='keep the images without an annotation of the kept classes')
    parser.add_argument(
        '--gt',
        metavar='GT_JSON',
        help='IN_JSON is a COCO results file (a list of detections); '
        'GT_JSON is the annotation file whose categories name its ids')
    return parser.parse_args()


def _print_warning(message, category, *args, **kwargs) -> None:
    print(f'warning: {message}', file=sys.stderr, flush=True)


def main() -> None:
    args = parse_args()
    # e.g. annotations without iscrowd/area, filled: one line, no source
    warnings.showwarning = _print_warning
    print(f'reading {args.in_json}', flush=True)
    if args.gt is not None and args.keep_empty:
        sys.exit('error: --keep-empty applies to annotation files; a '
                 'results file (--gt) has no images to keep')
    try:
        if args.gt is not None:
            summary = subset_results_file(args.in_json, args.out_json,
                                          args.gt, args.classes)
        else:
            summary = subset_coco_file(args.in_json, args.out_json,
                                       args.classes, args.keep_empty)
    except ValueError as error:
        sys.exit(f'error: {error}')
    print(summary.table())
    print(f'wrote {args.out_json}')


if __name__ == '__main__':
    run_cli(main)
