"""Render the synthetic street-scene dataset in COCO format.

Writes OUT_DIR/{train,val}/*.jpg and
OUT_DIR/annotations/instances_{train,val}.json; the same arguments give the
same files.
"""
import argparse
from typing import Callable

from sapool_mmdet.datasets import make_synthetic_coco
from sapool_mmdet.engine import run_cli


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``."""

    def integer(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f'must be >= {minimum}, got {value}')
        return value

    return integer


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument(
        '--train', type=int_at_least(1), default=400, help='training images')
    parser.add_argument(
        '--val', type=int_at_least(1), default=100, help='validation images')
    parser.add_argument(
        '--size',
        type=int_at_least(32),
        nargs=2,
        default=[320, 240],
        metavar=('W', 'H'),
        help='image width and height in px')
    parser.add_argument('--seed', type=int, default=0, help='random seed')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    paths = make_synthetic_coco(
        args.out_dir,
        num_train=args.train,
        num_val=args.val,
        image_size=tuple(args.size),
        seed=args.seed)
    print()
    for split, path in paths.items():
        print(f'{split}: {path}')


if __name__ == '__main__':
    run_cli(main)
