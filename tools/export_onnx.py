"""Export a config's detector (or backbone) with trained weights to ONNX.

    python tools/export_onnx.py CONFIG CHECKPOINT --out FILE.onnx \
        [--input-size H W] [--scope detector|backbone] [--dynamic] \
        [--opset N] [--verify] \
        [--int8 --calib-images DIR --calib-count N] \
        [--cfg-options KEY=VALUE ...]

--scope detector (the default) exports backbone, neck and head in mmdet's
tensor mode: the head's raw outputs, box decoding and NMS left out
(tools/test_onnx.py runs those with the config's head). --verify compares
the float32 outputs with PyTorch's (max abs difference <= 1e-4) before
writing. --int8 writes a statically quantised model (onnxruntime, QDQ,
per-channel int8 weights) calibrated on the first N images of DIR. The file
is written atomically and checked with onnx.checker; on any error nothing is
written.
"""
import argparse
import json
import sys

from mmengine.config import DictAction

from sapool_mmdet.analysis import SCOPES
from sapool_mmdet.deploy import DEFAULT_OPSET, OPSET_RANGE, export_onnx
from sapool_mmdet.engine import run_cli


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('config', help='mmdet config file')
    parser.add_argument('checkpoint', help='checkpoint of its detector')
    parser.add_argument('--out', required=True, metavar='FILE.onnx',
                        help='ONNX file to write (missing folders are made)')
    parser.add_argument(
        '--input-size', nargs=2, type=int, metavar=('H', 'W'),
        help='input height and width (default: the config\'s test size)')
    parser.add_argument(
        '--scope', choices=SCOPES, default='detector',
        help='the detector in tensor mode (backbone, neck, head; no box '
        'decoding or NMS) or its backbone alone (default: %(default)s)')
    parser.add_argument(
        '--dynamic', action='store_true',
        help='dynamic batch, and dynamic height and width where the traced '
        'graph reproduces PyTorch at another size (checked)')
    parser.add_argument(
        '--opset', type=int, default=DEFAULT_OPSET,
        help=f'ONNX opset, {OPSET_RANGE[0]} to {OPSET_RANGE[1]} '
        f'(default: %(default)s)')
    parser.add_argument(
        '--verify', action='store_true',
        help='refuse to write unless the float32 onnxruntime outputs match '
        'PyTorch\'s to 1e-4 (max abs difference)')
    parser.add_argument('--int8', action='store_true',
                        help='write the statically quantised int8 model')
    parser.add_argument('--calib-images', metavar='DIR',
                        help='calibration images for --int8')
    parser.add_argument('--calib-count', type=int, default=100, metavar='N',
                        help='calibration images used, the first N in name '
                        'order (default: %(default)s)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
        help='override config entries, as mmdet\'s tools')
    parser.add_argument('--json', metavar='FILE',
                        help='also write the export summary as JSON')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.int8 and not args.calib_images:
        sys.exit('error: --int8 needs --calib-images DIR')
    try:
        result = export_onnx(
            args.config, args.checkpoint, args.out,
            input_size=args.input_size, scope=args.scope,
            dynamic=args.dynamic, opset=args.opset, verify=args.verify,
            int8=args.int8, calib_images=args.calib_images,
            calib_count=args.calib_count, cfg_options=args.cfg_options)
    except (FileNotFoundError, IsADirectoryError, ValueError, ImportError,
            RuntimeError) as error:
        sys.exit(f'error: {error}')
    height, width = result.input_size
    kind = 'int8 (QDQ)' if result.int8 else 'float32'
    print(f'wrote {result.path}: {kind} {result.scope}, input '
          f'{"N" if result.dynamic_batch else "1"}x3x'
          f'{"H" if result.dynamic_spatial else height}x'
          f'{"W" if result.dynamic_spatial else width}, opset '
          f'{result.opset}, {result.num_bytes / 2**20:.2f} MiB, '
          f'{len(result.output_names)} outputs')
    for note in result.notes:
        print(f'note: {note}')
    if result.max_abs_diff is not None:
        print(f'verified: max abs difference to PyTorch '
              f'{result.max_abs_diff:.3g} (tolerance 1e-4)')
    if result.int8_correlation:
        worst = min(result.int8_correlation, key=result.int8_correlation.get)
        print(f'int8 against float32 on the first calibration image: '
              f'lowest output correlation {result.int8_correlation[worst]:.4f}'
              f' ({worst})')
    if args.json:
        from sapool_mmdet.fileio import atomic_open
        with atomic_open(args.json, 'w', encoding='utf-8') as f:
            json.dump(result.as_dict(), f, indent=2)
            f.write('\n')
        print(f'wrote {args.json}')


if __name__ == '__main__':
    run_cli(main)
