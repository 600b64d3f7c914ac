"""The demo: synthetic driving set -> train -> evaluate -> metric table."""
import json
import os.path as osp
import time

import torch
from mmengine.config import Config
from mmengine.runner import Runner

from ..datasets import make_synthetic_coco

__all__ = ['run_demo']


def run_demo(config: str, data_root: str, work_dir: str,
             amp: bool = False) -> dict:
    """Generate the synthetic set if it is missing, train and evaluate.

    Args:
        config (str): Demo config; its data paths are pointed at
            ``data_root``.
        data_root (str): Folder of the synthetic set (made by
            :func:`make_synthetic_coco` when its annotations are missing).
        work_dir (str): Logs, checkpoint and the metric report go here.
        amp (bool): Train in float16 with dynamic loss scaling, as mmdet's
            ``tools/train.py --amp`` (mmengine's ``AmpOptimWrapper``, which
            needs a CUDA device). Default: False.

    Returns:
        dict: The metric report of the evaluation that ends training
        (``bbox_mAP``, ``bbox_mAP_50``, ... and ``per_class``).

    Raises:
        FileNotFoundError: the config is missing.
        ValueError: ``amp`` without a CUDA device.
    """
    if not osp.isfile(config):
        raise FileNotFoundError(f'demo config {config!r} not found')
    if amp and not torch.cuda.is_available():
        raise ValueError(
            'amp trains in float16 with mmengine\'s AmpOptimWrapper, which '
            'needs a CUDA device; this torch sees none')
    ann_val = osp.join(data_root, 'annotations', 'instances_val.json')
    if not osp.isfile(ann_val):
        print(f'[demo] rendering the synthetic driving set into {data_root}')
        make_synthetic_coco(data_root)
        print()
    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    root = data_root.rstrip('/') + '/'
    cfg.train_dataloader.dataset.data_root = root
    for loader in (cfg.val_dataloader, cfg.test_dataloader):
        loader.dataset.data_root = root
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        evaluator.ann_file = ann_val
    if amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    start = time.perf_counter()
    # The demo config evaluates after the last epoch; the metric writes
    # its report into the work dir.
    Runner.from_cfg(cfg).train()
    minutes = (time.perf_counter() - start) / 60
    report = osp.join(work_dir, 'driving_metrics')
    if not osp.isfile(report + '.json'):
        raise RuntimeError(
            f'training finished but wrote no metric report at {report}.json;'
            f' see the log in {work_dir}')
    print(f'\n[demo] trained and evaluated in {minutes:.1f} min; '
          f'work dir {work_dir}\n')
    with open(report + '.md') as f:
        print(f.read())
    with open(report + '.json') as f:
        return json.load(f)
