"""Test (and evaluate) a detector: mmdet's tools/test.py with sapool_mmdet registered.

Takes the arguments of mmdet 3.3's tools/test.py, e.g.
    python tools/test.py configs/ssd_mbv2_nlp.py CHECKPOINT [--work-dir DIR] [--out FILE.pkl] [--cfg-options k=v ...]
plus --allow-partial: evaluate a checkpoint whose weights do not all fit
the model (refused without it). The --out pickle is written atomically.
"""
import sys

from sapool_mmdet.engine import run_cli, run_mmdet_tool

if __name__ == '__main__':
    run_cli(lambda: run_mmdet_tool('test', sys.argv[1:]))
