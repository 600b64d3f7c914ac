"""The demo: train and evaluate NLPool SSDlite-MobileNetV2 on the built-in
synthetic driving set and print the Table 4-style metric report.

    python tools/demo.py [--config configs/demo/ssd_mbv2_nlp.py]
                         [--data data/synthetic_driving]
                         [--work-dir work_dirs/demo] [--amp]
"""
import argparse

from sapool_mmdet.engine import run_cli
from sapool_mmdet.engine.demo import run_demo


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--config', default='configs/demo/ssd_mbv2_nlp.py')
    parser.add_argument('--data', default='data/synthetic_driving',
                        help='synthetic set folder, rendered if missing')
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument(
        '--amp', action='store_true',
        help='train in float16 with dynamic loss scaling (as mmdet\'s '
        'train.py --amp; needs CUDA)')
    return parser.parse_args()


if __name__ == '__main__':
    args = parse_args()
    run_cli(lambda: run_demo(args.config, args.data, args.work_dir, args.amp))
