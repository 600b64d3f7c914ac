"""The synthetic street-scene generator and tools/make_synthetic_coco.py."""
import json
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from mmdet.registry import DATASETS
from mmengine.registry import init_default_scope
from PIL import Image
from pycocotools import mask as mask_utils

import sapool_mmdet  # noqa: F401  (registers the dataset)
from sapool_mmdet.datasets import (COCO2017_CATEGORIES, DRIVING_CLASSES,
                                   NON_DRIVING_CLASSES, make_synthetic_coco,
                                   subset_coco)

TOOL = str(
    Path(__file__).resolve().parents[1] / 'tools' / 'make_synthetic_coco.py')
NAMES = {c['id']: c['name'] for c in COCO2017_CATEGORIES}
SIZE = (200, 150)


def load(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def tree_bytes(root: Path) -> dict:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob('*')) if p.is_file()
    }


@pytest.fixture(scope='module')
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic')
    paths = make_synthetic_coco(
        str(root), num_train=10, num_val=4, image_size=SIZE, seed=3)
    return root, paths


def annotations(synthetic):
    _, paths = synthetic
    return [ann for path in paths.values()
            for ann in load(path)['annotations']]


def test_layout(synthetic):
    root, paths = synthetic
    assert paths == {
        'train': str(root / 'annotations' / 'instances_train.json'),
        'val': str(root / 'annotations' / 'instances_val.json')
    }
    for split, count in (('train', 10), ('val', 4)):
        coco = load(paths[split])
        assert coco['categories'] == COCO2017_CATEGORIES
        assert [img['id'] for img in coco['images']] == list(
            range(1, count + 1))
        for img in coco['images']:
            with Image.open(root / split / img['file_name']) as image:
                assert image.format == 'JPEG' and image.mode == 'RGB'
                assert image.size == SIZE == (img['width'], img['height'])
        ann_ids = [ann['id'] for ann in coco['annotations']]
        assert len(set(ann_ids)) == len(ann_ids)
    assert not [p for p in root.rglob('*.tmp')]


def test_deterministic_for_a_seed(synthetic, tmp_path):
    root, _ = synthetic
    again = tmp_path / 'again'
    make_synthetic_coco(
        str(again), num_train=10, num_val=4, image_size=SIZE, seed=3)
    assert tree_bytes(again) == tree_bytes(root)
    other = tmp_path / 'other'
    make_synthetic_coco(
        str(other), num_train=10, num_val=4, image_size=SIZE, seed=4)
    other_files = tree_bytes(other)
    assert other_files.keys() == tree_bytes(root).keys()
    assert other_files != tree_bytes(root)


def test_every_size_bucket_has_ground_truth(synthetic):
    areas = [ann['area'] for ann in annotations(synthetic)
             if not ann['iscrowd']]
    assert any(a < 32**2 for a in areas)
    assert any(32**2 <= a <= 96**2 for a in areas)
    assert any(a > 96**2 for a in areas)


def test_boxes_inside_the_image(synthetic):
    width, height = SIZE
    for ann in annotations(synthetic):
        x, y, w, h = ann['bbox']
        assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
        assert w >= 2 and h >= 2
        if not ann['iscrowd']:
            assert ann['area'] == w * h
            assert ann['segmentation'] == [[x, y, x + w, y, x + w, y + h, x,
                                            y + h]]


def test_driving_and_other_classes(synthetic):
    names = {NAMES[ann['category_id']] for ann in annotations(synthetic)}
    assert set(DRIVING_CLASSES) <= names
    assert names & set(NON_DRIVING_CLASSES)
    _, paths = synthetic
    coco = load(paths['train'])
    subset, summary = subset_coco(coco)
    assert summary.after.annotations < summary.before.annotations


def test_crowd_regions(synthetic):
    _, paths = synthetic
    for path in paths.values():
        crowds = [ann for ann in load(path)['annotations'] if ann['iscrowd']]
        assert crowds, path
        for ann in crowds:
            assert NAMES[ann['category_id']] == 'person'
            rle = dict(ann['segmentation'])
            assert rle['size'] == [SIZE[1], SIZE[0]]
            rle['counts'] = rle['counts'].encode('ascii')
            mask = mask_utils.decode(rle)
            assert ann['area'] == mask.sum() > 0
            assert ann['bbox'] == mask_utils.toBbox(rle).tolist()


def test_objects_of_a_class_look_alike(synthetic):
    """The mean colour inside a box tells driving classes apart: nearest
    class mean colour is right for most objects."""
    root, paths = synthetic
    colours = {}
    coco = load(paths['train'])
    files = {img['id']: img['file_name'] for img in coco['images']}
    for ann in coco['annotations']:
        if ann['iscrowd']:
            continue
        x, y, w, h = map(int, ann['bbox'])
        with Image.open(root / 'train' / files[ann['image_id']]) as image:
            crop = np.asarray(image)[y:y + h, x:x + w].reshape(-1, 3)
        colours.setdefault(NAMES[ann['category_id']],
                           []).append(crop.mean(axis=0))
    means = {name: np.mean(c, axis=0) for name, c in colours.items()}
    right = total = 0
    for name, samples in colours.items():
        for colour in samples:
            nearest = min(means, key=lambda n: np.linalg.norm(means[n] -
                                                             colour))
            right += nearest == name
            total += 1
    assert right / total > 0.8


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='at least 32x32'):
        make_synthetic_coco(str(tmp_path), image_size=(16, 16))
    with pytest.raises(ValueError, match='>= 1'):
        make_synthetic_coco(str(tmp_path), num_val=0)


def test_command_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / 'data'
    monkeypatch.setattr(sys, 'argv', [
        TOOL,
        str(out), '--train', '3', '--val', '2', '--size', '64', '48',
        '--seed', '1'
    ])
    runpy.run_path(TOOL, run_name='__main__')
    assert str(out / 'annotations' / 'instances_val.json') in \
        capsys.readouterr().out
    assert len(load(out / 'annotations' / 'instances_train.json')['images']) \
        == 3
    assert sorted(p.name for p in (out / 'val').iterdir()) == [
        '000000000001.jpg', '000000000002.jpg'
    ]


def test_loads_through_a_detection_pipeline(synthetic):
    init_default_scope('mmdet')
    root, _ = synthetic
    dataset = DATASETS.build(
        dict(
            type='CocoDrivingDataset',
            data_root=str(root),
            ann_file='annotations/instances_train.json',
            data_prefix=dict(img='train/'),
            pipeline=[
                dict(type='LoadImageFromFile'),
                dict(type='LoadAnnotations', with_bbox=True),
                dict(type='PackDetInputs')
            ]))
    # image 1 holds the crowd, an ignored instance
    sample = dataset[0]['data_samples']
    assert sample.img_id == 1 and sample.ori_shape == (SIZE[1], SIZE[0])
    assert len(sample.ignored_instances) == 1
    assert len(sample.gt_instances) >= 1
    assert sample.gt_instances.labels.max() < len(DRIVING_CLASSES)
