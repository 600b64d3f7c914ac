"""Shared fixtures: one intra-op thread, and small hand-made COCO files
with the real COCO 2017 category list (non-contiguous ids), crowd
annotations and images without driving objects."""
import json

import numpy as np
import pytest
import torch

from sapool_mmdet.datasets import COCO2017_CATEGORIES

CATEGORY_IDS = {c['name']: c['id'] for c in COCO2017_CATEGORIES}


@pytest.fixture(autouse=True, scope='session')
def single_thread():
    """Tiny tensors gain nothing from intra-op threads, and on a busy
    machine the threads' spin-waiting costs far more than the work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def coco_image(image_id: int, width: int = 64, height: int = 48) -> dict:
    return dict(
        id=image_id,
        file_name=f'{image_id:012d}.jpg',
        width=width,
        height=height)


def coco_annotation(ann_id: int,
                    image_id: int,
                    name: str,
                    bbox: list,
                    iscrowd: int = 0) -> dict:
    x, y, w, h = bbox
    return dict(
        id=ann_id,
        image_id=image_id,
        category_id=CATEGORY_IDS[name],
        bbox=[float(v) for v in bbox],
        area=float(w * h),
        iscrowd=iscrowd,
        segmentation=[[x, y, x + w, y, x + w, y + h, x, y + h]])


def write_json(path, data) -> str:
    with open(path, 'w', encoding='utf-8') as f:
        json.dump(data, f)
    return str(path)


@pytest.fixture
def driving_coco() -> dict:
    """Six 64x48 images with non-contiguous ids:

    ====  =============================================================
    101   person, car
    205   stop sign only (no driving object)
    307   traffic light, a crowd of people (iscrowd=1)
    409   a crowd of people only (no non-crowd driving object)
    512   truck, bus, bench
    613   no annotation
    ====  =============================================================
    """
    annotations = [
        coco_annotation(1001, 101, 'person', [2, 4, 10, 30]),
        coco_annotation(1002, 101, 'car', [20, 20, 40, 18]),
        coco_annotation(1003, 205, 'stop sign', [10, 10, 12, 12]),
        coco_annotation(1004, 307, 'traffic light', [5, 2, 6, 15]),
        coco_annotation(1005, 307, 'person', [30, 20, 30, 25], iscrowd=1),
        coco_annotation(1006, 409, 'person', [0, 10, 40, 30], iscrowd=1),
        coco_annotation(1007, 512, 'truck', [1, 5, 30, 20]),
        coco_annotation(1008, 512, 'bus', [33, 6, 30, 14]),
        coco_annotation(1009, 512, 'bench', [10, 30, 20, 8]),
    ]
    return dict(
        info=dict(description='hand-made test file'),
        licenses=[dict(id=1, name='test licence')],
        images=[coco_image(i) for i in (101, 205, 307, 409, 512, 613)],
        annotations=annotations,
        categories=COCO2017_CATEGORIES)


@pytest.fixture
def driving_coco_file(tmp_path, driving_coco) -> str:
    return write_json(tmp_path / 'instances.json', driving_coco)


@pytest.fixture
def eval_coco() -> dict:
    """Ten 320x240 images, each with three driving objects of different
    sizes (small, medium and large in turn) and one non-driving object;
    every third image also has a crowd of people, image 10 has nothing."""
    rng = np.random.default_rng(0)
    driving = ['person', 'bicycle', 'car', 'motorcycle', 'bus', 'train',
               'truck', 'traffic light']
    sides = (20, 60, 110)  # areas 400 (small), 3600 (medium), 12100 (large)
    images, annotations = [], []
    for image_id in range(1, 11):
        images.append(coco_image(image_id, 320, 240))
        if image_id == 10:
            continue
        objects = [(driving[(3 * image_id + k) % 8], sides[(image_id + k) % 3])
                   for k in range(3)] + [('stop sign', 30)]
        for k, (name, side) in enumerate(objects):
            # one object per quadrant: no overlaps
            x = 160 * (k % 2) + rng.integers(0, 160 - side)
            y = 120 * (k // 2) + rng.integers(0, 120 - side)
            annotations.append(
                coco_annotation(
                    len(annotations) + 1, image_id, name,
                    [int(x), int(y), side, side]))
        if image_id % 3 == 0:
            annotations.append(
                coco_annotation(
                    len(annotations) + 1, image_id, 'person',
                    [140, 100, 40, 40], iscrowd=1))
    return dict(
        images=images, annotations=annotations,
        categories=COCO2017_CATEGORIES)


@pytest.fixture
def eval_coco_file(tmp_path, eval_coco) -> str:
    return write_json(tmp_path / 'instances_eval.json', eval_coco)


@pytest.fixture(scope='session')
def tiny_detector(tmp_path_factory) -> dict:
    """The tiny demo SSD (``tiny_demo.tiny_demo_config``) with freshly
    initialised weights and its norms' statistics taken from its validation
    images (see :func:`calibrate_norms`), on 2 training and 3 validation
    synthetic images of 96x96, shared by every test of the session that
    needs a config and a checkpoint: ``root``, ``data_root``, ``config``,
    ``checkpoint``."""
    from mmdet.registry import MODELS

    from tiny_demo import tiny_demo_config
    from sapool_mmdet.analysis import load_config
    from sapool_mmdet.datasets import make_synthetic_coco

    root = tmp_path_factory.mktemp('tiny_detector')
    data_root = str(root / 'data')
    make_synthetic_coco(data_root, num_train=2, num_val=3,
                        image_size=(96, 96), seed=3)
    config = tiny_demo_config(root / 'tiny_ssd.py', data_root)
    torch.manual_seed(0)
    detector = MODELS.build(load_config(config).model)
    detector.init_weights()
    calibrate_norms(detector, data_root)
    checkpoint = str(root / 'fresh.pth')
    torch.save(dict(state_dict=detector.state_dict()), checkpoint)
    return dict(root=root, data_root=data_root, config=config,
                checkpoint=checkpoint)


def calibrate_norms(detector, data_root: str) -> None:
    """Set every batch norm's running statistics to those of the images in
    ``data_root/val`` (one forward in training mode, cumulative average).

    Freshly initialised, the running statistics (mean 0, variance 1) do not
    match the activations, which shrink about tenfold per block: in
    evaluation the features vanish (1e-8 after the backbone) and every
    image gets the same scores, all near 1/9, so two predictions could be
    mixed up without a test seeing it. Calibrated, the scores differ from
    image to image and from anchor to anchor."""
    import glob

    import mmcv

    from torch.nn.modules.batchnorm import _BatchNorm

    images = [mmcv.imread(path)  # BGR, as LoadImageFromFile gives
              for path in sorted(glob.glob(f'{data_root}/val/*.jpg'))]
    assert images, f'no validation image under {data_root}'
    batch = detector.data_preprocessor(dict(inputs=[
        torch.from_numpy(image).permute(2, 0, 1).contiguous()
        for image in images]), training=False)['inputs']
    norms = [m for m in detector.modules() if isinstance(m, _BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative: one batch gives its statistics
    detector.train()
    with torch.no_grad():
        detector.bbox_head(detector.extract_feat(batch))
    detector.eval()
