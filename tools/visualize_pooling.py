"""Show where the pooling layers of a trained detector put their weight.

    python tools/visualize_pooling.py CONFIG CHECKPOINT IMAGE [IMAGE ...] \
        --out DIR [--gradcam] [--device cpu|cuda]

For every pooling layer with learned weights (NLPool, LIPPool, SoftPool,
SubspaceAttnPool and the NLPool variants: the WeightedPool methods), the
weight map pi(x) it computes on the image, averaged over channels,
upsampled and overlaid; one PNG per image (DIR/<image>_pooling.png) with one
panel per layer. --gradcam adds a row with Grad-CAM of the top detection's
score at each of those layers' outputs (Fig. 4 of Chen et al., WACV 2023).
Pooling methods without a weight map (MaxPool, AvgPool, ConvPool,
GaussianPool, MixedPool, RNNPool) are named and skipped. The detector is
loaded with mmdet.apis.init_detector (SyncBN reverted to BN, class names from
the checkpoint).
"""
import argparse
import sys

import torch

from sapool_mmdet.analysis.visualize import visualize_pooling
from sapool_mmdet.engine import run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='mmdet config file')
    parser.add_argument('checkpoint',
                        help='mmengine checkpoint of the config\'s detector')
    parser.add_argument('images', nargs='+', metavar='IMAGE',
                        help='image files')
    parser.add_argument('--out', required=True, metavar='DIR',
                        help='directory for the PNG files (created)')
    parser.add_argument('--gradcam', action='store_true',
                        help='add Grad-CAM of the top detection\'s score at '
                        'each pooling layer\'s output')
    parser.add_argument(
        '--device', default='cuda' if torch.cuda.is_available() else 'cpu',
        help='torch device (default: cuda if available, else cpu)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    try:
        written, note = visualize_pooling(args.config, args.checkpoint,
                                          args.images, args.out,
                                          args.gradcam,
                                          device=args.device)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        sys.exit(f'error: {error}')
    if note:
        print(note)
    for path in written:
        print(f'wrote {path}')


if __name__ == '__main__':
    run_cli(main)
