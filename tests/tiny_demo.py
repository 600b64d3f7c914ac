"""The tiny demo detector that the end-to-end tests train, test, export
and evaluate.

``tiny_demo_config`` writes ``configs/demo/ssd_mbv2_nlp.py`` shrunk to
96x96 synthetic images in batches of 2 (data loading in the main process),
with the SSD anchors scaled to that size; each test adds what it needs
(schedule, hooks, evaluators) as Python lines after it.
"""
import contextlib
import io
import os.path as osp
import runpy
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'ssd_mbv2_nlp.py')
TINY_SIZE = 96

__all__ = ['ROOT', 'DEMO_CONFIG', 'TINY_SIZE', 'tiny_demo_config',
           'run_tool_in_process', 'synthetic_batch']


def tiny_demo_config(path, data_root: str, extra: str = '') -> str:
    """Write the demo config at 96x96 on ``data_root`` (a folder that
    ``make_synthetic_coco`` wrote) to ``path``; return the path.

    Args:
        path (str | Path): The config file to write.
        data_root (str): Folder with ``annotations/instances_{train,val}
            .json`` and the ``train/``, ``val/`` images.
        extra (str): Config lines appended after the shared ones; they may
            rebind any name (``train_cfg = ...``) or edit one in place
            (``model.update(test_cfg=...)``).
    """
    data_root = osp.join(str(data_root), '')
    text = f"""
_base_ = {DEMO_CONFIG!r}
data_root = {data_root!r}
resize = dict(type='Resize', scale=({TINY_SIZE}, {TINY_SIZE}),
              keep_ratio=False)
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
model = dict(bbox_head=dict(anchor_generator=dict(
    strides=[16, 32, 48, 96, 96, 96],
    min_sizes=[14, 30, 45, 61, 76, 91],
    max_sizes=[30, 45, 61, 76, 91, 96])))
"""
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text + extra)
    return str(path)


def run_tool_in_process(tool: str, *args: str) -> str:
    """Run ``tools/<tool>`` in this process, as its command line would;
    return what it printed."""
    saved = sys.argv
    sys.argv = [tool, *args]
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            runpy.run_path(osp.join(ROOT, 'tools', tool), run_name='__main__')
    finally:
        sys.argv = saved
    return printed.getvalue()


def synthetic_batch(num_images: int = 2, size: int = TINY_SIZE) -> dict:
    """Random images with a few boxes of different driving classes, packed
    as PackDetInputs packs them (a batch for ``data_preprocessor``)."""
    import torch
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    from sapool_mmdet.datasets import DRIVING_CLASSES

    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    for i in range(num_images):
        inputs.append(torch.randint(0, 256, (3, size, size),
                                    dtype=torch.uint8, generator=generator))
        sample = DetDataSample(metainfo=dict(
            img_id=i, img_shape=(size, size), ori_shape=(size, size),
            scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[0.05, 0.06, 0.42, 0.52],
                                 [0.31, 0.21, 0.94, 0.83],
                                 [0.62, 0.08, 0.79, 0.31]]) * size,
            labels=torch.tensor([0, 2, len(DRIVING_CLASSES) - 1]))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)
