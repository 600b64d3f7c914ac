"""DrivingCocoMetric against pycocotools' COCOeval, and its report."""
import json
import math

import numpy as np
import pytest
import torch
from mmdet.evaluation import CocoMetric
from mmdet.registry import METRICS
from mmdet.structures import DetDataSample
from mmengine.dataset import pseudo_collate
from mmengine.logging import MMLogger
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.structures import InstanceData
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch.utils.data import DataLoader, Dataset

import sapool_mmdet  # noqa: F401  (registers the metric)
from sapool_mmdet.datasets import COCO2017_CATEGORIES, DRIVING_CLASSES
from sapool_mmdet.engine import MetricWorkDirHook
from sapool_mmdet.evaluation import (TABLE4_COLUMNS, ClassAP,
                                     DetectionReport, DrivingCocoMetric)

CATEGORY_IDS = {c['name']: c['id'] for c in COCO2017_CATEGORIES}
NAMES = {c['id']: c['name'] for c in COCO2017_CATEGORIES}
TABLE_KEYS = [key for key, _ in TABLE4_COLUMNS]


def xyxy(bbox):
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def perfect_predictions(coco, classes):
    """One correct box per non-crowd ground truth of ``classes``, labelled
    by position in ``classes``."""
    per_image = {img['id']: [] for img in coco['images']}
    for ann in coco['annotations']:
        name = NAMES[ann['category_id']]
        if name in classes and not ann['iscrowd']:
            per_image[ann['image_id']].append(
                (xyxy(ann['bbox']), 0.9, classes.index(name)))
    return per_image


def noisy_predictions(coco, classes):
    """Shifted boxes, misses, wrong labels and false positives, with
    random scores."""
    rng = np.random.default_rng(1)
    per_image = {img['id']: [] for img in coco['images']}
    for ann in coco['annotations']:
        if ann['iscrowd'] or rng.random() < 0.15:
            continue
        x0, y0, x1, y1 = xyxy(ann['bbox'])
        side = x1 - x0
        box = [v + rng.normal(0, 0.12 * side) for v in (x0, y0, x1, y1)]
        name = NAMES[ann['category_id']]
        label = classes.index(name) if name in classes and \
            rng.random() > 0.1 else int(rng.integers(len(classes)))
        per_image[ann['image_id']].append((box, float(rng.random()), label))
    for image_id in per_image:
        for _ in range(2):
            x, y = rng.uniform(0, 250), rng.uniform(0, 180)
            per_image[image_id].append(([x, y, x + 40, y + 40],
                                        float(rng.random() * 0.5),
                                        int(rng.integers(len(classes)))))
    return per_image


def pred_instances(predictions):
    boxes, scores, labels = zip(*predictions) if predictions else \
        ([], [], [])
    return dict(
        bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        scores=torch.tensor(scores, dtype=torch.float32),
        labels=torch.tensor(labels, dtype=torch.int64))


def data_samples(per_image, coco=None, classes=None):
    samples = []
    for image_id, predictions in per_image.items():
        sample = dict(
            img_id=image_id,
            ori_shape=(240, 320),
            pred_instances=pred_instances(predictions))
        if coco is not None:
            sample['instances'] = [
                dict(
                    bbox=xyxy(ann['bbox']),
                    bbox_label=classes.index(NAMES[ann['category_id']]),
                    ignore_flag=ann['iscrowd'])
                for ann in coco['annotations'] if ann['image_id'] == image_id
                and NAMES[ann['category_id']] in classes
            ]
        samples.append(sample)
    return samples


def evaluate(metric, classes, samples):
    metric.dataset_meta = dict(classes=tuple(classes))
    metric.process({}, samples)
    results = metric.evaluate(len(samples))
    return {key.split('/', 1)[1]: value for key, value in results.items()}


def cocoeval_directly(ann_file, classes, per_image):
    """The numbers straight from pycocotools, with its default parameters."""
    gt = COCO(ann_file)
    detections = [
        dict(
            image_id=image_id,
            category_id=CATEGORY_IDS[classes[label]],
            bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]],
            score=score) for image_id, predictions in per_image.items()
        for box, score, label in predictions
    ]
    coco_eval = COCOeval(gt, gt.loadRes(detections), 'bbox')
    coco_eval.params.catIds = [CATEGORY_IDS[name] for name in classes]
    coco_eval.evaluate()
    coco_eval.accumulate()
    coco_eval.summarize()
    precision = coco_eval.eval['precision']
    per_class = {}
    for k, cat_id in enumerate(coco_eval.params.catIds):
        values = precision[:, :, k, 0, -1]
        per_class[NAMES[cat_id]] = float(np.mean(values[values > -1]))
    stats = dict(zip(['bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s',
                      'bbox_mAP_m', 'bbox_mAP_l'], coco_eval.stats[:6]))
    return stats, per_class


def test_registered():
    assert METRICS.get('DrivingCocoMetric') is DrivingCocoMetric


def test_values_equal_cocoeval(tmp_path, eval_coco, eval_coco_file):
    classes = list(DRIVING_CLASSES)
    per_image = noisy_predictions(eval_coco, classes)
    metric = DrivingCocoMetric(ann_file=eval_coco_file, report_dir=tmp_path)
    results = evaluate(metric, classes, data_samples(per_image))
    stats, per_class = cocoeval_directly(eval_coco_file, classes, per_image)
    assert 0.2 < stats['bbox_mAP_50'] < 0.95
    for key, value in stats.items():
        assert results[key] == round(value, 3), key
    for name, value in per_class.items():
        assert results[f'{name}_precision'] == round(value, 3), name


@pytest.mark.parametrize('classes', [
    DRIVING_CLASSES, DRIVING_CLASSES[::-1],
    ('traffic light', 'car', 'person')
])
def test_perfect_predictions_score_one(tmp_path, eval_coco, eval_coco_file,
                                       classes):
    classes = list(classes)
    metric = DrivingCocoMetric(ann_file=eval_coco_file, report_dir=tmp_path)
    results = evaluate(metric, classes,
                       data_samples(perfect_predictions(eval_coco, classes)))
    for key in TABLE_KEYS:
        assert results[key] == 1.0, key
    for name in classes:
        assert results[f'{name}_precision'] == 1.0


def test_stock_coco_metric_misreads_a_reordered_list(tmp_path, eval_coco,
                                                     eval_coco_file):
    """Guards the test above: mmdet's CocoMetric maps labels to category
    ids in file order, so the same perfect predictions score below 1."""
    classes = list(DRIVING_CLASSES[::-1])
    metric = CocoMetric(ann_file=eval_coco_file)
    results = evaluate(metric, classes,
                       data_samples(perfect_predictions(eval_coco, classes)))
    assert results['bbox_mAP'] < 0.5


def test_ground_truth_from_data_samples(tmp_path, eval_coco):
    classes = list(DRIVING_CLASSES[::-1])
    metric = DrivingCocoMetric(report_dir=tmp_path)
    results = evaluate(
        metric, classes,
        data_samples(
            perfect_predictions(eval_coco, classes), eval_coco, classes))
    assert results['bbox_mAP'] == 1.0


def test_report_files(tmp_path, eval_coco, eval_coco_file):
    classes = ['traffic light', 'car', 'person']
    per_image = noisy_predictions(eval_coco, classes)
    metric = DrivingCocoMetric(
        ann_file=eval_coco_file,
        report_dir=str(tmp_path / 'reports'),
        report_name='val')
    results = evaluate(metric, classes, data_samples(per_image))

    with open(tmp_path / 'reports' / 'val.json', encoding='utf-8') as f:
        report = json.load(f)
    for key in TABLE_KEYS:
        assert report[key] == results[key]
    assert report['num_images'] == 10
    assert [c['name'] for c in report['per_class']] == classes
    gt_counts = {
        name: sum(1 for ann in eval_coco['annotations']
                  if ann['category_id'] == CATEGORY_IDS[name]
                  and not ann['iscrowd'])
        for name in classes
    }
    for entry in report['per_class']:
        assert entry['category_id'] == CATEGORY_IDS[entry['name']]
        assert entry['bbox_mAP'] == results[f'{entry["name"]}_precision']
        assert entry['gt_instances'] == gt_counts[entry['name']]

    markdown = (tmp_path / 'reports' / 'val.md').read_text()
    assert '|  | @0.5 | @0.75 | @[0.5,0.95] | @large | @medium | @small |' \
        in markdown
    assert f'| mAP (%) | {100 * results["bbox_mAP_50"]:.1f} |' in markdown
    assert '| traffic light |' in markdown
    assert sorted(p.name for p in (tmp_path / 'reports').iterdir()) == [
        'val.json', 'val.md'
    ]


class LookupDetector(BaseModel):
    """Predicts fixed boxes per image id: the metric, not a model, is under
    test here."""

    def __init__(self, per_image):
        super().__init__()
        self.per_image = per_image

    def forward(self, inputs, data_samples=None, mode='tensor'):
        predicted = []
        for sample in data_samples:
            sample = sample.clone()
            sample.pred_instances = InstanceData(
                **pred_instances(self.per_image[sample.img_id]))
            predicted.append(sample)
        return predicted


class ImageIds(Dataset):
    metainfo = dict(classes=DRIVING_CLASSES)

    def __init__(self, image_ids):
        self.image_ids = image_ids

    def __len__(self):
        return len(self.image_ids)

    def __getitem__(self, index):
        return dict(inputs=torch.zeros(1), data_samples=DetDataSample(
            metainfo=dict(img_id=self.image_ids[index],
                          ori_shape=(240, 320))))


def run_test_loop(work_dir, metric, per_image):
    runner = Runner(
        model=LookupDetector(per_image),
        work_dir=str(work_dir),
        test_dataloader=DataLoader(
            ImageIds(sorted(per_image)), batch_size=3,
            collate_fn=pseudo_collate),
        test_evaluator=[metric],
        test_cfg=dict(),
        default_scope='mmdet')
    assert any(isinstance(hook, MetricWorkDirHook) for hook in runner.hooks)
    return runner.test()


@pytest.mark.parametrize('explicit_dir', [False, True])
def test_report_goes_to_the_runner_work_dir(tmp_path, eval_coco,
                                            eval_coco_file, explicit_dir):
    classes = list(DRIVING_CLASSES)
    report_dir = str(tmp_path / 'reports') if explicit_dir else None
    metrics = run_test_loop(
        tmp_path / 'work',
        DrivingCocoMetric(ann_file=eval_coco_file, report_dir=report_dir),
        perfect_predictions(eval_coco, classes))
    assert metrics['coco/bbox_mAP'] == 1.0
    written = tmp_path / ('reports' if explicit_dir else 'work')
    with open(written / 'driving_metrics.json') as f:
        assert json.load(f)['num_images'] == 10
    assert (written / 'driving_metrics.md').is_file()
    assert (tmp_path / 'work' / 'driving_metrics.json').exists() \
        != explicit_dir


def test_outside_a_runner_the_report_is_only_logged(tmp_path, monkeypatch,
                                                    eval_coco,
                                                    eval_coco_file):
    monkeypatch.chdir(tmp_path)
    classes = list(DRIVING_CLASSES)
    evaluate(
        DrivingCocoMetric(ann_file=eval_coco_file), classes,
        data_samples(perfect_predictions(eval_coco, classes)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'instances_eval.json']


def test_an_image_predicted_twice(tmp_path, eval_coco, eval_coco_file):
    classes = list(DRIVING_CLASSES)
    samples = data_samples(perfect_predictions(eval_coco, classes))
    metric = DrivingCocoMetric(ann_file=eval_coco_file, report_dir=tmp_path)
    with pytest.raises(ValueError, match=r'predicted more than once \(ids '
                       r'\[3\]\)'):
        evaluate(metric, classes, samples + samples[2:3])


def test_images_without_prediction_are_warned_about(tmp_path, eval_coco,
                                                     eval_coco_file):
    classes = list(DRIVING_CLASSES)
    samples = data_samples(perfect_predictions(eval_coco, classes))
    metric = DrivingCocoMetric(ann_file=eval_coco_file, report_dir=tmp_path)
    log_file = tmp_path / 'metric.log'
    logger = MMLogger.get_instance('missing_images', log_file=str(log_file))
    results = evaluate(metric, classes, samples[:8])
    for handler in logger.handlers:
        handler.flush()
    log = log_file.read_text()
    assert 'WARNING - 2 of the 10 images' in log
    assert 'ids [9, 10]' in log
    assert results['bbox_mAP'] < 1.0


def test_no_detection_at_all_reports_zeros(tmp_path, eval_coco,
                                           eval_coco_file):
    # an earlier run's report must not survive a run that found nothing
    report_dir = tmp_path / 'reports'
    report_dir.mkdir()
    for suffix in ('json', 'md'):
        (report_dir / f'driving_metrics.{suffix}').write_text('earlier run')
    metric = DrivingCocoMetric(ann_file=eval_coco_file, report_dir=report_dir)
    samples = data_samples({img['id']: [] for img in eval_coco['images']})
    results = evaluate(metric, DRIVING_CLASSES, samples)
    # eval_coco has small, medium and large objects of every class
    assert {key: results[key] for key in TABLE_KEYS} == dict.fromkeys(
        TABLE_KEYS, 0.0)
    with open(report_dir / 'driving_metrics.json') as f:
        report = json.load(f)
    assert [c['bbox_mAP'] for c in report['per_class']] == [0.0] * 8
    assert '| person | 0.0 |' in (report_dir / 'driving_metrics.md'
                                  ).read_text()


def test_class_missing_from_the_file(tmp_path, eval_coco_file):
    metric = DrivingCocoMetric(ann_file=eval_coco_file, report_dir=tmp_path)
    with pytest.raises(ValueError, match="no category named 'tram'"):
        evaluate(metric, ['car', 'tram'], data_samples({1: []}))


def test_bad_arguments(eval_coco_file):
    with pytest.raises(ValueError, match="must include 'bbox'"):
        DrivingCocoMetric(ann_file=eval_coco_file, metric='proposal')
    with pytest.raises(ValueError, match='metric_items must include'):
        DrivingCocoMetric(ann_file=eval_coco_file, metric_items=['mAP'])


def test_report_text_layout():
    report = DetectionReport(
        summary=dict(
            bbox_mAP=0.219,
            bbox_mAP_50=0.363,
            bbox_mAP_75=0.23,
            bbox_mAP_s=-1.0,
            bbox_mAP_m=0.144,
            bbox_mAP_l=0.446),
        per_class=[
            ClassAP('person', 1, 0.5, 10),
            ClassAP('train', 7, math.nan, 0)
        ],
        num_images=4)
    text = report.text()
    header = next(line for line in text.splitlines() if '@0.5' in line)
    assert [cell.strip() for cell in header.split('|')[2:-1]] == [
        '@0.5', '@0.75', '@[0.5,0.95]', '@large', '@medium', '@small'
    ]
    row = next(line for line in text.splitlines() if 'mAP (%)' in line)
    assert [cell.strip() for cell in row.split('|')[2:-1]] == [
        '36.3', '23.0', '21.9', '44.6', '14.4', 'n/a'
    ]
    assert text.index('@0.5') < text.index('AP per class')
    as_dict = report.as_dict()
    assert as_dict['bbox_mAP_s'] == -1.0
    assert as_dict['per_class'][1] == dict(
        name='train', category_id=7, bbox_mAP=None, gt_instances=0)
    json.dumps(as_dict, allow_nan=False)
