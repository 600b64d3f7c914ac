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

from sapool_mmdet.datasets import make_synthetic_coco

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'demo', 'ssd_mbv2_nlp.py')


def tiny_config(tmp_path, data_root: str) -> str:
    """The demo config shrunk to 4 images of 96x96 in batches of 2."""
    path = tmp_path / 'tiny_demo.py'
    path.write_text(f"""
_base_ = {CONFIG!r}
data_root = {data_root + '/'!r}
resize = dict(type='Resize', scale=(96, 96), keep_ratio=False)
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True), resize,
        dict(type='PackDetInputs')]))
test_pipeline = [
    dict(type='LoadImageFromFile'), resize,
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='PackDetInputs', meta_keys=(
        'img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))]
val_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator
train_cfg = dict(max_epochs=1, val_interval=100)
default_hooks = dict(logger=dict(interval=1),
                     checkpoint=dict(interval=1, max_keep_ckpts=3))
model = dict(bbox_head=dict(anchor_generator=dict(
    strides=[16, 32, 48, 96, 96, 96],
    min_sizes=[14, 30, 45, 61, 76, 91],
    max_sizes=[30, 45, 61, 76, 91, 96])))
""")
    return str(path)


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
