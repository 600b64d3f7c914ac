"""Train a detector: mmdet's tools/train.py with sapool_mmdet registered.

Takes the arguments of mmdet 3.3's tools/train.py, e.g.
    python tools/train.py configs/ssd_mbv2_nlp.py [--work-dir DIR] [--resume [CKPT]] [--cfg-options k=v ...]
plus --allow-partial: start from a load_from checkpoint whose weights do
not all fit the model (only the matching tensors are loaded).

--resume without a file continues from the newest checkpoint in the work
dir that loads (see docs/interrupted-runs.md); one run at a time holds a
work dir.
"""
import sys

from sapool_mmdet.engine import run_cli, run_mmdet_tool

if __name__ == '__main__':
    run_cli(lambda: run_mmdet_tool('train', sys.argv[1:]))
