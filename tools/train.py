"""Train a detector: mmdet's tools/train.py with sapool_mmdet registered.

Takes exactly the arguments of mmdet 3.3's tools/train.py, e.g.
    python tools/train.py configs/ssd_mbv2_nlp.py [--work-dir DIR] [--resume [CKPT]] [--cfg-options k=v ...]
"""
import sys

from sapool_mmdet.engine import run_mmdet_tool

if __name__ == '__main__':
    run_mmdet_tool('train', sys.argv[1:])
