"""Users' failing cases (tests/data/cases/, see its README) through every
path that reads the same input: the dataset (training and test), the
in-run metric and the offline tools, with the values pycocotools gives
when run directly."""
import copy
import json
import pickle
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
from mmdet.registry import DATASETS
from mmengine.dataset import pseudo_collate
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torch import nn
from torch.utils.data import DataLoader

import sapool_mmdet  # noqa: F401  (registers the dataset and metric)
from sapool_mmdet.analysis.analyze import analyze_configs
from sapool_mmdet.datasets import (COCO2017_CATEGORIES, DRIVING_CLASSES,
                                   CocoFilledWarning, CocoFormatError,
                                   subset_coco_file)
from sapool_mmdet.engine import run_cli
from sapool_mmdet.engine.hooks import ClassCountCheckHook, RunConfigError
from sapool_mmdet.evaluation import DrivingCocoMetric, evaluate_results

from conftest import write_json
from test_metric import ImageIds, LookupDetector, data_samples, evaluate

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / 'tests' / 'data' / 'cases'
NAMES = {c['id']: c['name'] for c in COCO2017_CATEGORIES}


def case(name, file='gt.json'):
    return str(CASES / name / file)


def read(path):
    with open(path) as f:
        return json.load(f)


def xyxy(bbox):
    x, y, w, h = bbox
    return [x, y, x + w, y + h]


def as_predictions(detections, gt, classes):
    """COCO detections as per-image (x1, y1, x2, y2), score, label, the
    labels indexing ``classes``."""
    name_of = {c['id']: c['name'] for c in gt['categories']}
    per_image = {img['id']: [] for img in gt['images']}
    for det in detections:
        per_image[det['image_id']].append(
            (xyxy(det['bbox']), det['score'],
             classes.index(name_of[det['category_id']])))
    return per_image


def as_detections(per_image, gt, classes):
    id_of = {c['name']: c['id'] for c in gt['categories']}
    return [
        dict(image_id=image_id, category_id=id_of[classes[label]],
             bbox=[box[0], box[1], box[2] - box[0], box[3] - box[1]],
             score=score)
        for image_id, predictions in per_image.items()
        for box, score, label in predictions
    ]


def pycocotools_ap(gt_file, detections, category_id):
    """AP@[0.5,0.95] of one category, pycocotools run directly on it alone
    (NaN without ground truth)."""
    gt = COCO(gt_file)
    dt = gt.loadRes(copy.deepcopy(detections))
    coco_eval = COCOeval(gt, dt, 'bbox')
    coco_eval.params.catIds = [category_id]
    coco_eval.evaluate()
    coco_eval.accumulate()
    precision = coco_eval.eval['precision'][:, :, 0, 0, -1]
    precision = precision[precision > -1]
    return float(np.mean(precision)) if precision.size else float('nan')


def build_dataset(ann_file, dataset_type='CocoDrivingDataset', **kwargs):
    cfg = dict(type=dataset_type, ann_file=ann_file,
               data_prefix=dict(img='images/'), pipeline=[])
    cfg.update(kwargs)
    return DATASETS.build(cfg)


def run_tool(monkeypatch, tool, *args):
    path = str(ROOT / 'tools' / tool)
    monkeypatch.setattr(sys, 'argv', [path, *map(str, args)])
    runpy.run_path(path, run_name='__main__')


def logged_text(name, log_file, action):
    logger = MMLogger.get_instance(name, log_file=str(log_file))
    result = action()
    for handler in logger.handlers:
        handler.flush()
    return result, Path(log_file).read_text()


def classwise_rows(log, classes):
    """The rows of mmdet's class-wise table: {class: [mAP, mAP_50, mAP_75,
    mAP_s, mAP_m, mAP_l]} (NaN where a size has no ground truth)."""
    rows = {}
    for line in log.splitlines():
        cells = [cell.strip() for cell in line.strip().strip('|').split('|')]
        if len(cells) == 7 and cells[0] in classes:
            rows[cells[0]] = [float(v) for v in cells[1:]]
    return rows


# --------------------------------------------------- per-class-order

@pytest.mark.parametrize('classes', [('car', 'person'), ('person', 'car'),
                                     DRIVING_CLASSES[::-1]])
def test_per_class_order_offline(tmp_path, monkeypatch, capsys, classes):
    evaluation = evaluate_results(
        case('per-class-order'), case('per-class-order', 'results.json'),
        classes)
    aps = {c.name: c.bbox_mAP for c in evaluation.report.per_class}
    assert aps['person'] == 1.0 and aps['car'] == 0.0

    run_tool(monkeypatch, 'eval_driving.py', case('per-class-order'),
             case('per-class-order', 'results.json'), '--classes', *classes,
             '--out-dir', tmp_path)
    rows = {line.split('|')[1].strip(): line.split('|')[2].strip()
            for line in capsys.readouterr().out.splitlines()
            if line.count('|') == 4}
    assert rows['person'] == '100.0' and rows['car'] == '0.0'
    report = read(tmp_path / 'driving_metrics.json')
    assert {c['name']: c['bbox_mAP'] for c in report['per_class']
            }['person'] == 1.0


@pytest.mark.parametrize('classes', [('car', 'person'), ('person', 'car')])
def test_per_class_order_in_run(tmp_path, classes):
    gt = read(case('per-class-order'))
    detections = read(case('per-class-order', 'results.json'))
    metric = DrivingCocoMetric(ann_file=case('per-class-order'),
                               report_dir=tmp_path)
    results, log = logged_text(
        f'per_class_order_{classes[0]}', tmp_path / 'run.log',
        lambda: evaluate(metric, classes, data_samples(
            as_predictions(detections, gt, list(classes)))))
    assert results['person_precision'] == 1.0
    assert results['car_precision'] == 0.0
    # mmdet's class-wise table, every column: a person is medium (7200
    # px), a car large (9600 px > 96^2)
    rows = classwise_rows(log, classes)
    nan = float('nan')
    np.testing.assert_equal(rows['person'], [1.0, 1.0, 1.0, nan, 1.0, nan])
    np.testing.assert_equal(rows['car'], [0.0, 0.0, 0.0, nan, nan, 0.0])
    report = read(tmp_path / 'driving_metrics.json')
    assert {c['name']: c['bbox_mAP'] for c in report['per_class']} == dict(
        person=1.0, car=0.0)


def noisy_predictions(gt, classes, seed=1):
    """Shifted boxes, misses, wrong labels and false positives with random
    scores, labels indexing ``classes`` (names from ``gt``'s categories)."""
    rng = np.random.default_rng(seed)
    name_of = {c['id']: c['name'] for c in gt['categories']}
    per_image = {img['id']: [] for img in gt['images']}
    for ann in gt['annotations']:
        if ann['iscrowd'] or rng.random() < 0.2:
            continue
        x0, y0, x1, y1 = xyxy(ann['bbox'])
        box = [v + rng.normal(0, 0.1 * (x1 - x0)) for v in (x0, y0, x1, y1)]
        name = name_of[ann['category_id']]
        label = classes.index(name) if name in classes and \
            rng.random() > 0.1 else int(rng.integers(len(classes)))
        per_image[ann['image_id']].append((box, float(rng.random()), label))
    for image_id in per_image:
        x, y = rng.uniform(0, 250), rng.uniform(0, 180)
        per_image[image_id].append(([x, y, x + 40, y + 40],
                                    float(rng.random() * 0.5),
                                    int(rng.integers(len(classes)))))
    return per_image


def renumbered(gt, seed):
    """The same ground truth with other category ids, listed in another
    order."""
    rng = np.random.default_rng(seed)
    ids = [c['id'] for c in gt['categories']]
    new_ids = dict(zip(ids, rng.permutation(ids).tolist()))
    out = copy.deepcopy(gt)
    out['categories'] = [dict(c, id=new_ids[c['id']])
                         for c in out['categories']]
    rng.shuffle(out['categories'])
    for ann in out['annotations']:
        ann['category_id'] = new_ids[ann['category_id']]
    return out


@pytest.mark.parametrize('seed', [None, 3, 4])
@pytest.mark.parametrize('classes', [
    DRIVING_CLASSES,
    ('truck', 'car', 'traffic light', 'person', 'bus', 'bicycle', 'train',
     'motorcycle'),
    ('bus', 'person', 'car'),
])
def test_each_class_ap_equals_pycocotools_on_that_category(
        tmp_path, eval_coco, seed, classes):
    gt = eval_coco if seed is None else renumbered(eval_coco, seed)
    gt_file = write_json(tmp_path / 'gt.json', gt)
    per_image = noisy_predictions(gt, list(classes))
    detections = as_detections(per_image, gt, list(classes))
    id_of = {c['name']: c['id'] for c in gt['categories']}
    expected = {name: round(pycocotools_ap(gt_file, detections, id_of[name]),
                            3) for name in classes}
    assert len(set(expected.values())) > len(classes) // 2, \
        'the predictions must give the classes different APs'

    offline = evaluate_results(gt_file, copy.deepcopy(detections), classes)
    assert {c.name: c.bbox_mAP for c in offline.report.per_class} == \
        expected
    metric = DrivingCocoMetric(ann_file=gt_file)
    in_run = evaluate(metric, classes, data_samples(per_image))
    assert {name: in_run[f'{name}_precision'] for name in classes} == \
        expected


# --------------------------------------------------- missing-iscrowd

def test_missing_iscrowd_is_filled_in_every_path(tmp_path, monkeypatch):
    gt_file = case('missing-iscrowd')
    message = re.escape(f'{gt_file}: 3 of 3 annotations have no "iscrowd" '
                        '(ids 1, 2, 3): iscrowd=0 used')
    with pytest.warns(CocoFilledWarning, match=message):
        evaluation = evaluate_results(
            gt_file, case('missing-iscrowd', 'results.json'), ['car'])
    assert evaluation.report.per_class[0].bbox_mAP == 1.0

    with pytest.warns(CocoFilledWarning, match=message):
        dataset = build_dataset(gt_file)
    assert len(dataset) == 3
    assert all(info['instances'][0]['ignore_flag'] == 0
               for info in (dataset.get_data_info(i) for i in range(3)))

    with pytest.warns(CocoFilledWarning, match=message):
        metric = DrivingCocoMetric(ann_file=gt_file, report_dir=tmp_path)
    gt = read(gt_file)
    predictions = as_predictions(
        read(case('missing-iscrowd', 'results.json')), gt, ['car'])
    assert evaluate(metric, ['car'], data_samples(predictions)
                    )['car_precision'] == 1.0

    with pytest.warns(CocoFilledWarning, match=message):
        subset_coco_file(gt_file, str(tmp_path / 'subset.json'))
    assert [ann['iscrowd'] for ann in read(tmp_path / 'subset.json')[
        'annotations']] == [0, 0, 0]


def test_missing_area_is_the_box_area(tmp_path):
    gt = read(case('missing-iscrowd'))
    for ann in gt['annotations']:
        del ann['area']
    gt_file = write_json(tmp_path / 'gt.json', gt)
    with pytest.warns(CocoFilledWarning,
                      match='3 of 3 annotations have no "area" '
                      r'\(ids 1, 2, 3\): the area of their box used'):
        dataset = build_dataset(gt_file)
    assert len(dataset) == 3
    with pytest.warns(CocoFilledWarning):
        report = evaluate_results(
            gt_file, case('missing-iscrowd', 'results.json'),
            ['car']).report
    # 100 x 60 = 6000 px: a medium object, no small or large one
    assert report.summary['bbox_mAP_m'] == 1.0
    assert report.summary['bbox_mAP_s'] == report.summary['bbox_mAP_l'] == -1


# ------------------------------------------ duplicate-annotation-ids

def test_duplicate_annotation_ids_are_refused_everywhere(tmp_path,
                                                         monkeypatch):
    gt_file = case('duplicate-annotation-ids')
    message = 'annotation id(s) are used more than once: 2;'
    with pytest.raises(CocoFormatError, match=re.escape(message)):
        evaluate_results(gt_file,
                         case('duplicate-annotation-ids', 'results.json'))
    with pytest.raises(CocoFormatError, match=re.escape(message)):
        build_dataset(gt_file)
    with pytest.raises(CocoFormatError, match=re.escape(message)):
        build_dataset(gt_file, test_mode=True)
    with pytest.raises(CocoFormatError, match=re.escape(message)):
        DrivingCocoMetric(ann_file=gt_file)
    out = tmp_path / 'subset.json'
    with pytest.raises(SystemExit, match=re.escape(message)):
        run_tool(monkeypatch, 'coco_subset.py', gt_file, out)
    assert not out.exists()


@pytest.mark.parametrize('change, message', [
    (lambda gt: gt['images'].append(dict(gt['images'][0])),
     'image id(s) are used more than once: 1;'),
    (lambda gt: gt['categories'].append(dict(id=3, name='automobile')),
     'category id(s) are used more than once: 3;'),
    (lambda gt: gt['categories'].append(dict(id=99, name='car')),
     "the category name(s) 'car' are used by more than one category id "
     '(3, 99)'),
])
def test_repeated_ids_are_refused(tmp_path, change, message):
    gt = read(case('per-class-order'))
    change(gt)
    gt_file = write_json(tmp_path / 'gt.json', gt)
    for read_it in (lambda: build_dataset(gt_file),
                    lambda: DrivingCocoMetric(ann_file=gt_file),
                    lambda: evaluate_results(gt_file, [])):
        with pytest.raises(CocoFormatError, match=re.escape(message)):
            read_it()


def test_truncated_annotation_file_is_named(tmp_path):
    path = tmp_path / 'truncated.json'
    path.write_text(Path(case('per-class-order')).read_text()[:100])
    for read_it in (lambda: build_dataset(str(path)),
                    lambda: DrivingCocoMetric(ann_file=str(path)),
                    lambda: evaluate_results(str(path), [])):
        with pytest.raises(CocoFormatError,
                           match=f'{re.escape(str(path))} is not valid JSON'):
            read_it()


# -------------------------------------------------- background-images

def test_background_images_are_kept_when_asked(tmp_path, monkeypatch):
    train = case('background-images', 'train.json')
    keep = dict(filter_cfg=dict(filter_empty_gt=False))
    assert len(build_dataset(train, **keep)) == 3
    # as mmdet's CocoDataset does
    assert len(build_dataset(train, 'CocoDataset', metainfo=dict(
        classes=DRIVING_CLASSES), **keep)) == 3
    assert len(build_dataset(train)) == 1
    assert len(build_dataset(
        train, filter_cfg=dict(filter_empty_gt=True))) == 1

    run_tool(monkeypatch, 'coco_subset.py', train, tmp_path / 'kept.json',
             '--keep-empty')
    assert len(read(tmp_path / 'kept.json')['images']) == 3
    run_tool(monkeypatch, 'coco_subset.py', train, tmp_path / 'drop.json')
    assert len(read(tmp_path / 'drop.json')['images']) == 1


# ------------------------------------------------- described cases

class HeadOf80(LookupDetector):
    """A detector whose head was left at the 80 COCO classes."""

    def __init__(self, per_image):
        super().__init__(per_image)
        self.bbox_head = nn.Module()
        self.bbox_head.num_classes = 80


def test_head_class_count_is_checked_before_the_run(tmp_path):
    gt_file = case('per-class-order')
    runner = Runner(
        model=HeadOf80({1: [], 2: [], 3: []}),
        work_dir=str(tmp_path / 'work'),
        test_dataloader=DataLoader(ImageIds([1, 2, 3]), batch_size=3,
                                   collate_fn=pseudo_collate),
        test_evaluator=[DrivingCocoMetric(ann_file=gt_file)],
        test_cfg=dict(),
        default_scope='mmdet')
    assert any(isinstance(h, ClassCountCheckHook) for h in runner.hooks)
    with pytest.raises(SystemExit) as exit_info:
        # tools/train.py and tools/test.py: one error line, no traceback
        run_cli(runner.test)
    message = exit_info.value.code
    assert message.startswith('error: ') and '\n' not in message
    error = exit_info.value.__context__
    assert isinstance(error, RunConfigError)
    assert "the model's bbox_head has 80 classes (the test dataset has 8)" \
        in str(error)
    assert 'but the label classes are only 8' in str(error)
    assert not (tmp_path / 'work' / 'driving_metrics.json').exists()


@pytest.mark.parametrize('trained, refused', [
    (DRIVING_CLASSES[::-1], True),     # the same classes in another order
    (DRIVING_CLASSES, False),
    (tuple(f'class {i}' for i in range(8)), False),  # other names: allowed
])
def test_checkpoint_classes_in_another_order_stop_a_test(tmp_path, trained,
                                                         refused):
    import torch
    ckpt = tmp_path / 'trained.pth'
    torch.save({'state_dict': {}, 'meta': dict(
        dataset_meta=dict(classes=trained))}, str(ckpt))
    runner = Runner(
        model=LookupDetector({1: [], 2: [], 3: []}),
        work_dir=str(tmp_path / 'work'),
        test_dataloader=DataLoader(ImageIds([1, 2, 3]), batch_size=3,
                                   collate_fn=pseudo_collate),
        test_evaluator=[DrivingCocoMetric(ann_file=case('per-class-order'))],
        test_cfg=dict(), load_from=str(ckpt), default_scope='mmdet')
    if not refused:
        runner.test()
        return
    with pytest.raises(RunConfigError) as error:
        runner.test()
    # the per-class numbers would belong to other classes
    assert f'trained with the classes {DRIVING_CLASSES[::-1]} in this ' \
        f'label order, the test dataset lists {DRIVING_CLASSES}' in \
        str(error.value)
    assert not (tmp_path / 'work' / 'driving_metrics.json').exists()


def test_out_of_range_label_same_message_in_run_and_offline(tmp_path):
    gt_file = case('per-class-order')
    prediction = {1: [([20, 30, 80, 150], 0.9, 20)]}
    metric = DrivingCocoMetric(ann_file=gt_file)
    with pytest.raises(CocoFormatError) as in_run:
        evaluate(metric, DRIVING_CLASSES, data_samples(prediction))
    path = tmp_path / 'results.pkl'
    path.write_bytes(pickle.dumps(data_samples(prediction), protocol=2))
    with pytest.raises(CocoFormatError) as offline:
        evaluate_results(gt_file, str(path), label_classes=DRIVING_CLASSES)
    explained = 'image 1 has the label 20, but the label classes are only 8'
    assert explained in str(in_run.value)
    assert str(in_run.value).split(': ', 1)[1] == \
        str(offline.value).split(': ', 1)[1]


@pytest.mark.parametrize('bad', ['box', 'score'])
def test_non_finite_predictions_are_named_by_image(tmp_path, bad):
    box, score = [20, 30, 80, 150], 0.9
    if bad == 'box':
        box = [20, float('nan'), 80, 150]
    else:
        score = float('inf')
    metric = DrivingCocoMetric(ann_file=case('per-class-order'))
    with pytest.raises(CocoFormatError, match=f'image 2 has 1 .*{bad}'):
        evaluate(metric, DRIVING_CLASSES,
                 data_samples({1: [], 2: [(box, score, 0)]}))


def test_format_only_removes_an_earlier_report(tmp_path):
    report_dir = tmp_path / 'work'
    report_dir.mkdir()
    for suffix in ('json', 'md'):
        (report_dir / f'driving_metrics.{suffix}').write_text('earlier run')
    metric = DrivingCocoMetric(
        ann_file=case('per-class-order'), format_only=True,
        outfile_prefix=str(tmp_path / 'formatted'), report_dir=report_dir)
    assert evaluate(metric, DRIVING_CLASSES,
                    data_samples({1: [], 2: [], 3: []})) == {}
    assert sorted(p.name for p in report_dir.iterdir()) == []
    assert (tmp_path / 'formatted.bbox.json').is_file()


def test_input_size_is_checked_the_same_way_by_every_tool(tmp_path):
    config = str(ROOT / 'configs' / 'yolov3_mbv2_nlp.py')
    message = ('pads every input to a multiple of 32, so the model never '
               'sees 300x300 (and a neck that joins levels of different '
               'strides fails on it); choose H and W divisible by 32, e.g. '
               '320 320')
    with pytest.raises(ValueError, match=re.escape(message)):
        analyze_configs([config], 'detector', (300, 300), progress=False)
    pytest.importorskip('onnx')
    from sapool_mmdet.deploy import export_onnx
    with pytest.raises(ValueError, match=re.escape(message)):
        export_onnx(config, str(tmp_path / 'missing.pth'),
                    str(tmp_path / 'model.onnx'), input_size=(300, 300))
    # analyze_model.py --deployed (it died inside the neck)
    from sapool_mmdet.deploy.config_memory import deployed_config_memory
    with pytest.raises(ValueError, match=re.escape(message)):
        deployed_config_memory(config, 'detector', (300, 300))
    # benchmark_train.py
    from sapool_mmdet.analysis.train_benchmark import benchmark_train
    with pytest.raises(ValueError, match=re.escape(message)):
        benchmark_train([config], input_size=(300, 300), progress=False)


def test_missing_images_are_found_when_the_dataset_is_built(tmp_path):
    train = case('background-images', 'train.json')
    (tmp_path / 'images').mkdir()
    (tmp_path / 'images' / '000000000002.jpg').write_bytes(b'')
    pipeline = [dict(type='LoadImageFromFile')]
    with pytest.raises(FileNotFoundError) as error:
        build_dataset(train, data_root=str(tmp_path), pipeline=pipeline)
    assert '2 of the 3 images of' in str(error.value)
    assert "first: '000000000001.jpg', '000000000003.jpg'" in str(error.value)
    with pytest.raises(FileNotFoundError, match='which does not exist'):
        build_dataset(train, data_root=str(tmp_path / 'elsewhere'),
                      pipeline=pipeline, test_mode=True)
