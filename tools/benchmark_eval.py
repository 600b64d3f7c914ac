"""Time tools/eval_driving.py against pycocotools run directly on the same
COCO val-sized files (5,000 images, 37,000 boxes, 400,000 detections over
the 80 COCO classes), each in its own process: wall time, CPU time and
peak memory.

    python tools/benchmark_eval.py --work-dir work_dirs/benchmark_eval

The files are made once in --work-dir and reused by later runs of the
same sizes (other sizes rewrite them).
"""
import argparse
import os.path as osp
import sys

from sapool_mmdet.engine import run_cli
from sapool_mmdet.evaluation.benchmark import (benchmark_eval,
                                               coco_scale_files_match,
                                               cost_table,
                                               make_coco_scale_files)

TOOL = osp.join(osp.dirname(osp.abspath(__file__)), 'eval_driving.py')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog=__doc__.split('\n\n', 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        '--work-dir', default='work_dirs/benchmark_eval',
        help='folder of gt.json and results.json (default: %(default)s)')
    parser.add_argument('--images', type=int, default=5000,
                        help='images (default: %(default)s)')
    parser.add_argument('--boxes', type=int, default=37000,
                        help='ground-truth boxes (default: %(default)s)')
    parser.add_argument('--detections', type=int, default=400000,
                        help='detections (default: %(default)s)')
    parser.add_argument('--repeats', type=int, default=1,
                        help='runs of each, the one with the least CPU time counts '
                        '(default: '
                        '%(default)s)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.repeats < 1:
        sys.exit(f'error: --repeats must be >= 1, got {args.repeats}')
    gt_json = osp.join(args.work_dir, 'gt.json')
    results_json = osp.join(args.work_dir, 'results.json')
    sizes = (args.images, args.boxes, args.detections)
    described = (f'{args.images} images, {args.boxes} boxes, '
                 f'{args.detections} detections')
    try:
        if coco_scale_files_match(args.work_dir, *sizes):
            print(f'reusing {gt_json} and {results_json} ({described})')
        else:
            print(f'writing {gt_json} and {results_json} ({described})',
                  flush=True)
            make_coco_scale_files(args.work_dir, *sizes)
        costs = benchmark_eval(gt_json, results_json, TOOL, args.repeats)
    except (ValueError, RuntimeError, OSError) as error:
        sys.exit(f'error: {error}')
    print(cost_table(costs))


if __name__ == '__main__':
    run_cli(main)
