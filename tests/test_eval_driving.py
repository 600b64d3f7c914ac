"""evaluate_results and tools/eval_driving.py: APs worked out by hand, the
same numbers as DrivingCocoMetric for the same predictions, and bad input."""
import json
import math
import os
import pickle
import re
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmdet.evaluation import DumpDetResults
from mmdet.structures import DetDataSample
from mmengine.evaluator import Evaluator
from mmengine.structures import InstanceData

from sapool_mmdet.datasets import (COCO2017_CATEGORIES, DRIVING_CLASSES,
                                   CocoFormatError)
from sapool_mmdet.evaluation import (DrivingCocoMetric, evaluate_results,
                                     label_classes_from_config,
                                     resolve_label_classes)

from conftest import write_json
from test_metric import noisy_predictions

CATEGORY_IDS = {c['name']: c['id'] for c in COCO2017_CATEGORIES}
COCO_NAMES = [c['name'] for c in COCO2017_CATEGORIES]
ROOT = Path(__file__).resolve().parents[1]
TOOL = str(ROOT / 'tools' / 'eval_driving.py')


def det(image_id, name, bbox, score):
    return dict(
        image_id=image_id,
        category_id=CATEGORY_IDS[name],
        bbox=[float(v) for v in bbox],
        score=score)


@pytest.fixture
def hand_results():
    """Detections on ``driving_coco`` (conftest) whose APs are worked out
    by hand in :func:`test_aps_worked_out_by_hand`."""
    return [
        det(101, 'car', [20, 20, 40, 18], 0.9),
        det(409, 'person', [0, 10, 40, 30], 0.95),
        det(205, 'person', [10, 10, 12, 12], 0.8),
        det(101, 'person', [2, 4, 10, 30], 0.5),
        det(307, 'traffic light', [5, 2, 6, 13], 0.6),
        det(512, 'truck', [1, 5, 30, 20], 0.7),
        det(205, 'stop sign', [10, 10, 12, 12], 0.9),
        det(512, 'bench', [10, 30, 20, 8], 0.8),
    ]


def read(path):
    with open(path, encoding='utf-8') as f:
        return json.load(f)


def test_aps_worked_out_by_hand(tmp_path, driving_coco_file, hand_results):
    """Every ground-truth box of driving_coco is small (area < 32**2).

    - car: one exact box: AP 1.
    - person: the box on the crowd of 409 matches the crowd and is ignored;
      ranked by score, the false positive on 205 (0.8) comes before the
      exact box on 101 (0.5): precision 1/2 at recall 1, so the
      interpolated precision is 1/2 at every recall: AP 0.5 at every IoU.
    - traffic light: IoU = (6 * 13) / (6 * 15) = 0.867, a hit at the eight
      thresholds 0.50 ... 0.85 and a miss at 0.90 and 0.95: AP 8/10.
    - truck: exact: AP 1. bus: missed: AP 0.
    - bicycle, motorcycle, train: no ground truth: n/a, left out of mAP.
    """
    evaluation = evaluate_results(
        driving_coco_file, write_json(tmp_path / 'res.json', hand_results),
        out_dir=str(tmp_path / 'out'))
    aps = dict(person=0.5, car=1.0, bus=0.0, truck=1.0,
               **{'traffic light': 0.8})
    ap_50 = dict(aps, **{'traffic light': 1.0})
    report = evaluation.report
    assert report.summary == dict(
        bbox_mAP=round(np.mean(list(aps.values())), 3),
        bbox_mAP_50=round(np.mean(list(ap_50.values())), 3),
        bbox_mAP_75=round(np.mean(list(ap_50.values())), 3),
        bbox_mAP_s=round(np.mean(list(aps.values())), 3),
        bbox_mAP_m=-1.0,
        bbox_mAP_l=-1.0)
    assert report.num_images == 6
    assert [c.name for c in report.per_class] == list(DRIVING_CLASSES)
    for entry in report.per_class:
        assert entry.category_id == CATEGORY_IDS[entry.name]
        if entry.name in aps:
            assert entry.bbox_mAP == aps[entry.name]
            assert entry.gt_instances == 1
        else:
            assert math.isnan(entry.bbox_mAP)
            assert entry.gt_instances == 0
    counts = evaluation.detections
    assert (counts.total, counts.other_classes) == (8, 2)
    assert counts.per_class == dict(
        person=3, bicycle=0, car=1, motorcycle=0, bus=0, train=0, truck=1,
        **{'traffic light': 1})
    assert evaluation.notes == []

    written = read(tmp_path / 'out' / 'driving_metrics.json')
    assert written == json.loads(json.dumps(report.as_dict()))
    assert written['bbox_mAP'] == 0.66
    assert sorted(os.listdir(tmp_path / 'out')) == [
        'driving_metrics.json', 'driving_metrics.md'
    ]
    text = evaluation.text()
    assert '| other classes (dropped) | 2' in text
    assert '| traffic light' in text and '80.0' in text


def test_other_classes_in_any_order(driving_coco, hand_results):
    evaluation = evaluate_results(
        driving_coco, hand_results, classes=['stop sign', 'car'])
    assert [(c.name, c.bbox_mAP) for c in evaluation.report.per_class] == [
        ('stop sign', 1.0), ('car', 1.0)
    ]
    assert evaluation.report.summary['bbox_mAP'] == 1.0
    assert evaluation.detections.other_classes == 6


def samples_of(per_image):
    """DetDataSamples as a test loop hands them to the evaluator."""
    samples = []
    for image_id, predictions in per_image.items():
        boxes, scores, labels = zip(*predictions) if predictions else \
            ([], [], [])
        sample = DetDataSample(
            metainfo=dict(
                img_id=image_id,
                img_path=f'{image_id:012d}.jpg',
                ori_shape=(240, 320),
                img_shape=(300, 400),
                scale_factor=(1.25, 1.25),
                flip=False,
                flip_direction=None,
                homography_matrix=np.eye(3, dtype=np.float32)))
        sample.pred_instances = InstanceData(
            bboxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            scores=torch.tensor(scores, dtype=torch.float32),
            labels=torch.tensor(labels, dtype=torch.int64))
        samples.append(sample)
    return samples


def crowded_predictions(coco, classes):
    """noisy_predictions plus 150 low-score boxes on image 1, so the cap
    on detections per image (CocoMetric: 1000, pycocotools: 100) counts."""
    per_image = noisy_predictions(coco, classes)
    rng = np.random.default_rng(2)
    for k in range(150):
        x, y = rng.uniform(0, 280), rng.uniform(0, 200)
        per_image[1].append(([x, y, x + 30, y + 30], 0.01 + k * 1e-4,
                             k % len(classes)))
    return per_image


def test_same_numbers_as_the_metric(tmp_path, eval_coco, eval_coco_file):
    """One set of predictions through a test run's evaluator (the pickle of
    --out and DrivingCocoMetric), then offline from the pickle and from the
    COCO results JSON: the three reports are the same files."""
    classes = list(DRIVING_CLASSES[::-1])
    per_image = crowded_predictions(eval_coco, classes)
    evaluator = Evaluator([
        DumpDetResults(out_file_path=str(tmp_path / 'results.pkl')),
        DrivingCocoMetric(
            ann_file=eval_coco_file, report_dir=str(tmp_path / 'metric'))
    ])
    evaluator.dataset_meta = dict(classes=tuple(classes))
    evaluator.process(samples_of(per_image))
    metrics = evaluator.evaluate(len(per_image))
    assert 0.2 < metrics['coco/bbox_mAP_50'] < 0.95

    from_pickle = evaluate_results(
        eval_coco_file, str(tmp_path / 'results.pkl'), classes,
        label_classes=classes, out_dir=str(tmp_path / 'pickle'))
    detections = []
    for image_id, predictions in per_image.items():
        for box, score, label in predictions:
            # what CocoMetric.results2json writes with outfile_prefix
            x1, y1, x2, y2 = np.float32(box).tolist()
            detections.append(
                dict(image_id=image_id,
                     category_id=CATEGORY_IDS[classes[label]],
                     bbox=[x1, y1, x2 - x1, y2 - y1],
                     score=float(np.float32(score))))
    from_json = evaluate_results(
        eval_coco_file, write_json(tmp_path / 'results.json', detections),
        classes, out_dir=str(tmp_path / 'json'))

    for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s',
                'bbox_mAP_m', 'bbox_mAP_l'):
        assert from_pickle.report.summary[key] == metrics[f'coco/{key}']
    for entry in from_pickle.report.per_class:
        assert entry.bbox_mAP == metrics[f'coco/{entry.name}_precision']
    for name in ('driving_metrics.json', 'driving_metrics.md'):
        expected = (tmp_path / 'metric' / name).read_text()
        assert (tmp_path / 'pickle' / name).read_text() == expected
        assert (tmp_path / 'json' / name).read_text() == expected
    assert from_pickle.detections == from_json.detections
    assert from_pickle.detections.total == sum(map(len, per_image.values()))


def test_pickle_of_a_coco_model(tmp_path, driving_coco_file, hand_results):
    """Labels of a stock mmdet COCO model index the 80 COCO classes."""
    per_image = {}
    for d in hand_results:
        x, y, w, h = d['bbox']
        label = COCO_NAMES.index(
            next(c['name'] for c in COCO2017_CATEGORIES
                 if c['id'] == d['category_id']))
        per_image.setdefault(d['image_id'], []).append(
            ([x, y, x + w, y + h], d['score'], label))
    results = [sample.to_dict() for sample in samples_of(per_image)]
    path = tmp_path / 'results.pkl'
    from_json = evaluate_results(driving_coco_file, hand_results)
    # mmengine dumps with protocol 2; a re-saved file may use another
    for protocol in (2, pickle.HIGHEST_PROTOCOL):
        path.write_bytes(pickle.dumps(results, protocol=protocol))
        from_pickle = evaluate_results(
            driving_coco_file, str(path),
            label_classes=resolve_label_classes(['coco']))
        assert json.dumps(from_pickle.report.as_dict()) == \
            json.dumps(from_json.report.as_dict())
        assert from_pickle.detections == from_json.detections

    with pytest.raises(ValueError, match='labels index the model'):
        evaluate_results(driving_coco_file, str(path))
    with pytest.raises(CocoFormatError, match='the label 11, but the label '
                       'classes are only 8'):
        evaluate_results(
            driving_coco_file, str(path), label_classes=DRIVING_CLASSES)
    with pytest.raises(ValueError, match='for mmdet results pickles only'):
        evaluate_results(
            driving_coco_file, hand_results, label_classes=DRIVING_CLASSES)


def test_label_classes_from_config(tmp_path):
    assert label_classes_from_config(
        str(ROOT / 'configs' / 'ssd_mbv2_nlp.py')) == DRIVING_CLASSES
    config = tmp_path / 'wrapped.py'
    config.write_text(
        "test_dataloader = dict(dataset=dict(type='ClassBalancedDataset', "
        "dataset=dict(type='CocoDataset', metainfo=dict(classes=('car', "
        "'bus')))))\n")
    assert label_classes_from_config(str(config)) == ('car', 'bus')
    config.write_text("test_dataloader = dict(dataset=dict(type='CocoDataset'"
                      '))\n')
    assert resolve_label_classes(config=str(config)) == \
        resolve_label_classes(['coco'])
    assert len(resolve_label_classes(['coco'])) == 80
    assert resolve_label_classes(['driving']) == DRIVING_CLASSES
    config.write_text('model = dict()\n')
    with pytest.raises(ValueError, match='no test_dataloader.dataset'):
        label_classes_from_config(str(config))
    with pytest.raises(ValueError, match='not both'):
        resolve_label_classes(['car'], str(config))


@pytest.mark.parametrize('detections', [[], 'other classes'])
def test_no_detection_reports_zeros(tmp_path, driving_coco_file, detections):
    if detections:
        detections = [det(205, 'stop sign', [10, 10, 12, 12], 0.9)]
    evaluation = evaluate_results(
        driving_coco_file, write_json(tmp_path / 'res.json', detections),
        out_dir=str(tmp_path / 'out'))
    summary = evaluation.report.summary
    assert summary == dict(bbox_mAP=0.0, bbox_mAP_50=0.0, bbox_mAP_75=0.0,
                           bbox_mAP_s=0.0, bbox_mAP_m=-1.0, bbox_mAP_l=-1.0)
    with_gt = {'person', 'car', 'bus', 'truck', 'traffic light'}
    for entry in evaluation.report.per_class:
        assert (entry.bbox_mAP == 0.0) if entry.name in with_gt else \
            math.isnan(entry.bbox_mAP)
    expected = 'no detections of the evaluated classes (1 of other ' \
        'classes dropped)' if detections else 'has no detections'
    assert len(evaluation.notes) == 1 and expected in evaluation.notes[0]
    assert 'note: ' in evaluation.text()
    assert read(tmp_path / 'out' / 'driving_metrics.json')['bbox_mAP'] == 0


@pytest.mark.parametrize('content, message', [
    ('[{"image_id": 101, "category_id": 3, ', 'is not valid JSON'),
    ('{"images": [], "annotations": [], "categories": []}',
     'this is an annotation file, not a results file'),
    ('[{"image_id": 101, "category_id": 3, "bbox": [1, 2, 3, 4]}]',
     "detection 0 must be an object with the keys"),
    ('[{"image_id": 101, "category_id": 3, "bbox": [1, 2, 3], '
     '"score": 0.5}]', 'detection 0 (image 101) has a malformed bbox'),
    ('[{"image_id": 101, "category_id": 3, "bbox": [1, 2, -3, 4], '
     '"score": 0.5}]', 'width and height >= 0'),
    ('[{"image_id": 101, "category_id": 3, "bbox": [1, 2, NaN, 4], '
     '"score": 0.5}]', 'four finite numbers'),
    ('[{"image_id": 101, "category_id": 3, "bbox": [1, 2, 3, 4], '
     '"score": "high"}]', "has the score 'high'"),
    ('[{"image_id": 101, "category_id": 0, "bbox": [1, 2, 3, 4], '
     '"score": 0.5}, {"image_id": 101, "category_id": 91, "bbox": '
     '[1, 2, 3, 4], "score": 0.5}]',
     'does not have: 0, 91; its category ids are 1, 2, 3, '),
])
def test_malformed_results(tmp_path, driving_coco_file, content, message):
    path = tmp_path / 'res.json'
    path.write_text(content)
    with pytest.raises(CocoFormatError, match=re.escape(message)):
        evaluate_results(
            driving_coco_file, str(path), out_dir=str(tmp_path / 'out'))
    assert not (tmp_path / 'out').exists()


def test_report_folder_that_is_a_file_is_refused_first(tmp_path,
                                                       hand_results):
    # refused before the (missing) files are read: at COCO scale the
    # evaluation took a minute before the report could not be written
    path = write_json(tmp_path / 'res.json', hand_results)
    with pytest.raises(ValueError, match="report folder '.*res.json' is a "
                       'file; give a folder'):
        evaluate_results(str(tmp_path / 'missing.json'), path,
                         out_dir=path)


def test_unknown_image_ids(tmp_path, driving_coco_file, hand_results):
    stray = [det(image_id, 'car', [1, 2, 3, 4], 0.5)
             for image_id in (901, 902, 902, 903, 904, 905, 906)]
    path = write_json(tmp_path / 'res.json', hand_results + stray)
    with pytest.raises(CocoFormatError) as error:
        evaluate_results(driving_coco_file, path,
                         out_dir=str(tmp_path / 'out'))
    assert '7 detection(s) on 6 image id(s) that' in str(error.value)
    assert '(first: 901, 902, 903, 904, 905, ...)' in str(error.value)
    assert not (tmp_path / 'out').exists()


def test_unknown_class_lists_the_file_classes(driving_coco_file,
                                              hand_results):
    with pytest.raises(ValueError) as error:
        evaluate_results(driving_coco_file, hand_results, ['car', 'tram'])
    assert "no category named 'tram'" in str(error.value)
    assert "'toothbrush'" in str(error.value)


class Exploit:

    def __reduce__(self):
        return (print, ('unpickled code ran', ))


def test_malformed_pickles(tmp_path, driving_coco_file):
    def evaluate(results):
        path = tmp_path / 'results.pkl'
        path.write_bytes(pickle.dumps(results, protocol=2))
        return evaluate_results(driving_coco_file, str(path),
                                label_classes=DRIVING_CLASSES)

    with pytest.raises(CocoFormatError, match='asks for .*print; .* refused'):
        evaluate([Exploit()])
    with pytest.raises(CocoFormatError, match="expected a dict with 'img_id'"):
        evaluate([dict(img_id=101, pred_instances=dict(bboxes=[]))])
    sample = dict(img_id=101, pred_instances=dict(
        bboxes=torch.tensor([[30.0, 2, 20, 40]]), scores=torch.ones(1),
        labels=torch.zeros(1, dtype=torch.long)))
    with pytest.raises(CocoFormatError, match=r'malformed box\(es\), first '
                       r'\[30.0, 2.0, 20.0, 40.0\]: boxes are '
                       r'\(x1, y1, x2, y2\)'):
        evaluate([sample])
    sample['pred_instances']['bboxes'] = torch.ones(1, 5)
    with pytest.raises(CocoFormatError, match=r'shape \(1, 5\), expected '
                       r'\(N, 4\)'):
        evaluate([sample])
    sample['pred_instances']['bboxes'] = torch.tensor([[1.0, 2, 3, 4]])
    sample['img_id'] = 999
    with pytest.raises(CocoFormatError, match=r'1 image result\(s\) on 1 '
                       r'image id\(s\) .*\(first: 999\)'):
        evaluate([sample])
    path = tmp_path / 'truncated.pkl'
    path.write_bytes(pickle.dumps([sample], protocol=2)[:40])
    with pytest.raises(CocoFormatError, match='not a readable results pickle'):
        evaluate_results(driving_coco_file, str(path),
                         label_classes=DRIVING_CLASSES)


def run_tool(monkeypatch, *args):
    monkeypatch.setattr(sys, 'argv', [TOOL, *map(str, args)])
    runpy.run_path(TOOL, run_name='__main__')


def test_command_line(tmp_path, driving_coco_file, hand_results, monkeypatch,
                      capsys):
    (tmp_path / 'run').mkdir()
    results = write_json(tmp_path / 'run' / 'res.json', hand_results)
    run_tool(monkeypatch, driving_coco_file, results)
    printed = capsys.readouterr().out
    assert '| mAP (%) | 70.0 | 70.0  | 66.0' in printed
    assert '| other classes (dropped) | 2' in printed
    assert sorted(os.listdir(tmp_path / 'run')) == [
        'driving_metrics.json', 'driving_metrics.md', 'res.json'
    ]
    assert 'wrote ' in printed

    run_tool(monkeypatch, driving_coco_file, results, '--classes', 'car',
             'truck', '--out-dir', tmp_path / 'out', '--name', 'val')
    assert read(tmp_path / 'out' / 'val.json')['bbox_mAP'] == 1.0


@pytest.mark.parametrize('args, message', [
    (['--classes', 'tram'], "no category named 'tram'"),
    (['--label-classes', 'coco'], 'for mmdet results pickles only'),
])
def test_command_line_errors(tmp_path, driving_coco_file, hand_results,
                             monkeypatch, args, message):
    results = write_json(tmp_path / 'res.json', hand_results)
    with pytest.raises(SystemExit) as exit_info:
        run_tool(monkeypatch, driving_coco_file, results, *args)
    assert str(exit_info.value).startswith('error: ')
    assert message in str(exit_info.value)
    assert sorted(os.listdir(tmp_path)) == ['instances.json', 'res.json']
