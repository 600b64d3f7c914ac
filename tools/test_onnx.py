"""Evaluate an exported detector with onnxruntime on the config's test set.

    python tools/test_onnx.py CONFIG FILE.onnx [--work-dir DIR] \
        [--cfg-options KEY=VALUE ...] [--threads N]

Runs the config's test dataloader and data preprocessor, the ONNX model in
onnxruntime, the config's head (predict_by_feat: box decoding and NMS) and
the config's evaluator, as tools/test.py does for the PyTorch model; the
driving metric writes <work_dir>/driving_metrics.{json,md}. FILE.onnx is a
tools/export_onnx.py --scope detector export, float32 or int8.
"""
import argparse
import sys

from mmengine.config import DictAction

from sapool_mmdet.deploy import evaluate_onnx
from sapool_mmdet.engine import run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='the config the model was exported '
                        'from')
    parser.add_argument('onnx_file', metavar='FILE.onnx',
                        help='detector exported by tools/export_onnx.py')
    parser.add_argument(
        '--work-dir', help='logs and the metric report (default: the '
        'config\'s work_dir, else ./work_dirs/<config name>)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries, as mmdet\'s tools')
    parser.add_argument('--threads', type=int, metavar='N',
                        help='onnxruntime intra-op threads (default: one '
                        'per core)')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads is not None and args.threads < 1:
        sys.exit(f'error: --threads must be >= 1, got {args.threads}')
    try:
        evaluate_onnx(args.config, args.onnx_file, args.work_dir,
                      args.cfg_options, args.threads)
    except (FileNotFoundError, ValueError, ImportError) as error:
        sys.exit(f'error: {error}')


if __name__ == '__main__':
    run_cli(main)
