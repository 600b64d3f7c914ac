"""SSD end to end through the command-line tools: train a couple of
iterations, test the saved checkpoint, resume training from it.

Each step fails on the unfixed stack: predict crashes in mmdet 3.3.0's
SSDHead, and torch's weights_only loading rejects mmengine checkpoints (see
sapool_mmdet.compat).
"""
import json
import os.path as osp
import subprocess
import sys

import pytest
import torch

from tiny_demo import ROOT, tiny_demo_config
from sapool_mmdet.datasets import make_synthetic_coco


def tiny_config(tmp_path, data_root: str) -> str:
    """The demo config shrunk to 4 images of 96x96 in batches of 2."""
    return tiny_demo_config(tmp_path / 'tiny_demo.py', data_root, """
train_cfg = dict(max_epochs=1, val_interval=100)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=3))
""")


def run_tool(tool: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', tool), *args], cwd=ROOT,
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_train_checkpoint_test_and_resume(tmp_path):
    data_root = str(tmp_path / 'data')
    make_synthetic_coco(data_root, num_train=4, num_val=2,
                        image_size=(96, 96), seed=1)
    work_dir = str(tmp_path / 'work')
    config = tiny_config(tmp_path, data_root)

    run_tool('train.py', config, '--work-dir', work_dir)
    ckpt = osp.join(work_dir, 'epoch_1.pth')
    assert osp.isfile(ckpt)
    # The checkpoint loads the safe way: weights_only stays on.
    import sapool_mmdet  # noqa: F401  (allow-lists mmengine's types)
    state = torch.load(ckpt, map_location='cpu', weights_only=True)
    assert state['meta']['iter'] == 2 and state['meta']['epoch'] == 1

    test_dir = str(tmp_path / 'test')
    log = run_tool('test.py', config, ckpt, '--work-dir', test_dir)
    assert 'bbox_mAP' in log
    with open(osp.join(test_dir, 'driving_metrics.json')) as f:
        report = json.load(f)
    assert 0.0 <= report['bbox_mAP_50'] <= 1.0

    log = run_tool('train.py', config, '--work-dir', work_dir, '--resume',
                   '--cfg-options', 'train_cfg.max_epochs=2')
    assert 'resumed epoch: 1, iter: 2' in log
    resumed = torch.load(osp.join(work_dir, 'epoch_2.pth'),
                         map_location='cpu', weights_only=True)
    assert resumed['meta']['iter'] == 4 and resumed['meta']['epoch'] == 2
