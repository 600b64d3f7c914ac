"""CocoDrivingDataset: the COCO driving subset in training and testing."""
import pytest
from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS

import sapool_mmdet  # noqa: F401  (registers the dataset)
from sapool_mmdet.datasets import (COCO2017_CATEGORIES, DRIVING_CLASSES,
                                   CocoDrivingDataset)


def build(ann_file, **kwargs):
    return DATASETS.build(
        dict(
            type='CocoDrivingDataset',
            ann_file=ann_file,
            data_prefix=dict(img='images/'),
            pipeline=[],
            **kwargs))


def instances_by_image(dataset):
    """{img_id: [(class name, bbox, ignore_flag), ...]} as the dataset
    labels them."""
    classes = dataset.metainfo['classes']
    return {
        info['img_id']: [(classes[inst['bbox_label']], inst['bbox'],
                          inst['ignore_flag']) for inst in info['instances']]
        for info in (dataset.get_data_info(i) for i in range(len(dataset)))
    }


def test_driving_classes():
    assert DRIVING_CLASSES == ('person', 'bicycle', 'car', 'motorcycle',
                               'bus', 'train', 'truck', 'traffic light')


def test_coco2017_categories_are_the_real_list():
    assert [c['name'] for c in COCO2017_CATEGORIES] == list(
        CocoDataset.METAINFO['classes'])
    ids = [c['id'] for c in COCO2017_CATEGORIES]
    assert len(set(ids)) == 80 and ids == sorted(ids) and ids[-1] == 90
    assert {c['name']: c['id'] for c in COCO2017_CATEGORIES}['traffic light'] \
        == 10


def test_registered_with_default_classes(driving_coco_file):
    assert DATASETS.get('CocoDrivingDataset') is CocoDrivingDataset
    dataset = build(driving_coco_file)
    assert dataset.metainfo['classes'] == DRIVING_CLASSES


def test_training_keeps_images_with_driving_objects(driving_coco_file):
    # 205: stop sign only, 409: crowd only, 613: nothing.
    dataset = build(driving_coco_file)
    instances = instances_by_image(dataset)
    assert sorted(instances) == [101, 307, 512]
    assert instances[101] == [('person', [2, 4, 12, 34], 0),
                              ('car', [20, 20, 60, 38], 0)]
    # the bench is not a driving class
    assert instances[512] == [('truck', [1, 5, 31, 25], 0),
                              ('bus', [33, 6, 63, 20], 0)]


def test_crowd_boxes_are_ignore_regions(driving_coco_file):
    instances = instances_by_image(build(driving_coco_file))
    assert instances[307] == [('traffic light', [5, 2, 11, 17], 0),
                              ('person', [30, 20, 60, 45], 1)]


def test_test_mode_keeps_every_image(driving_coco_file):
    dataset = build(driving_coco_file, test_mode=True)
    instances = instances_by_image(dataset)
    assert sorted(instances) == [101, 205, 307, 409, 512, 613]
    assert instances[205] == [] and instances[613] == []
    assert instances[409] == [('person', [0, 10, 40, 40], 1)]


def test_filter_cfg_still_applies(driving_coco_file):
    # serialize_data=False: mmengine cannot serialize an empty data list
    dataset = build(
        driving_coco_file, filter_cfg=dict(min_size=100), serialize_data=False)
    assert len(dataset) == 0


def test_reordered_class_list_labels_by_name(driving_coco_file):
    classes = ('traffic light', 'truck', 'person', 'car', 'bus')
    dataset = build(driving_coco_file, metainfo=dict(classes=classes))
    labels = {
        tuple(inst['bbox']): inst['bbox_label']
        for i in range(len(dataset))
        for inst in dataset.get_data_info(i)['instances']
    }
    assert labels == {
        (2, 4, 12, 34): classes.index('person'),
        (20, 20, 60, 38): classes.index('car'),
        (5, 2, 11, 17): classes.index('traffic light'),
        (30, 20, 60, 45): classes.index('person'),
        (1, 5, 31, 25): classes.index('truck'),
        (33, 6, 63, 20): classes.index('bus'),
    }
    # mmdet's own CocoDataset numbers labels in category-id order, which
    # is what this test guards against.
    stock = CocoDataset(
        ann_file=driving_coco_file,
        data_prefix=dict(img='images/'),
        metainfo=dict(classes=classes),
        pipeline=[])
    stock_labels = {
        tuple(inst['bbox']): inst['bbox_label']
        for i in range(len(stock))
        for inst in stock.get_data_info(i)['instances']
    }
    assert stock_labels != labels


def test_unknown_class_names_the_file_classes(driving_coco_file):
    with pytest.raises(ValueError) as error:
        build(driving_coco_file, metainfo=dict(classes=('person', 'tram')))
    message = str(error.value)
    assert "'tram'" in message and driving_coco_file in message
    assert "'traffic light'" in message and "'toothbrush'" in message


def test_repeated_class_name_is_an_error(driving_coco_file):
    with pytest.raises(ValueError, match='unique'):
        build(driving_coco_file, metainfo=dict(classes=('car', 'car')))
