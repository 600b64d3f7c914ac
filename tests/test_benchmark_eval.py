"""tools/benchmark_eval.py: the COCO-scale files it makes and its
documented invocation on a tiny set."""
import json
import runpy
import sys
from collections import Counter
from pathlib import Path

import pytest

from sapool_mmdet.datasets import COCO2017_CATEGORIES, load_coco_json
from sapool_mmdet.evaluation import evaluate_results
from sapool_mmdet.evaluation.benchmark import (coco_scale_files_match,
                                               make_coco_scale_files)

TOOL = str(Path(__file__).resolve().parents[1] / 'tools' /
           'benchmark_eval.py')
NAMES = [c['name'] for c in COCO2017_CATEGORIES]


def test_files_have_the_asked_sizes_and_pass_the_checks(tmp_path):
    gt_json, results_json = make_coco_scale_files(str(tmp_path), 30, 90, 400)
    gt = load_coco_json(gt_json)
    assert (len(gt['images']), len(gt['annotations'])) == (30, 90)
    assert gt['categories'] == COCO2017_CATEGORIES
    with open(results_json) as f:
        results = json.load(f)
    assert len(results) == 400
    # two detections of the right class near each box, the rest on the
    # images with objects
    gt_pairs = Counter((a['image_id'], a['category_id'])
                       for a in gt['annotations'])
    det_pairs = Counter((d['image_id'], d['category_id'])
                        for d in results[:180])
    assert det_pairs == Counter({pair: 2 * n for pair, n in gt_pairs.items()})
    assert {d['image_id'] for d in results} <= {
        a['image_id'] for a in gt['annotations']}
    report = evaluate_results(gt_json, results_json, NAMES).report
    assert 0 < report.summary['bbox_mAP'] < 1


def test_files_of_other_sizes_are_not_reused(tmp_path):
    assert not coco_scale_files_match(str(tmp_path), 30, 90, 400)
    gt_json, results_json = make_coco_scale_files(str(tmp_path), 30, 90, 400)
    assert coco_scale_files_match(str(tmp_path), 30, 90, 400)
    # --images 50 after a run of 30 timed the 30-image files before
    assert not coco_scale_files_match(str(tmp_path), 50, 90, 400)
    assert not coco_scale_files_match(str(tmp_path), 30, 90, 500)
    Path(results_json).unlink()
    assert not coco_scale_files_match(str(tmp_path), 30, 90, 400)


def test_too_few_detections_are_refused(tmp_path):
    with pytest.raises(ValueError, match='at least two detections per box'):
        make_coco_scale_files(str(tmp_path), 10, 50, 60)
    assert list(tmp_path.iterdir()) == []


def test_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, 'argv', [
        TOOL, '--work-dir', str(tmp_path), '--images', '10', '--boxes', '20',
        '--detections', '100'])
    runpy.run_path(TOOL, run_name='__main__')
    printed = capsys.readouterr().out
    for row in ('pycocotools directly', 'tools/eval_driving.py',
                'import sapool_mmdet only'):
        assert f'| {row}' in printed
    assert '| 1.00x      | 1.00x     | 1.00x' in printed
    assert (tmp_path / 'report' / 'driving_metrics.json').is_file()
