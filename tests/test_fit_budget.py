"""The budget planner (sapool_mmdet.deploy.budget, tools/fit_budget.py) on
small budgets and input sizes."""
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config

pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')

from sapool_mmdet.analysis.config import build_from_config  # noqa: E402
from sapool_mmdet.deploy.budget import (Candidate,  # noqa: E402
                                        configs_root, estimate_candidate,
                                        estimate_peak,
                                        fit_budget, input_sizes,
                                        measure_candidate,
                                        write_candidate_config)

CONFIGS = configs_root()


def test_input_sizes_step_down_keeping_the_aspect():
    assert input_sizes((320, 320), min_size=224) == [
        (320, 320), (288, 288), (256, 256), (224, 224)]
    # 240x320: heights 224, 192 ... with widths rounded to 32 px.
    assert input_sizes((240, 320), min_size=160) == [
        (240, 320), (224, 288), (192, 256), (160, 224)]


@pytest.mark.parametrize('candidate, shipped', [
    (Candidate('NLPool', 2, 2, 1.0, False, False, (320, 320)),
     'ssd_mbv2_nlp_s2.py'),
    (Candidate('NLPool', 4, 2, 1.0, False, False, (320, 320)),
     'ssd_mbv2_nlp_s4.py'),
    (Candidate('conv', 4, 2, 1.0, False, False, (320, 320)),
     'ssd_mbv2_conv_s4.py'),
    (Candidate('conv', 1, 2, 0.35, False, False, (320, 320)),
     'ssd_mbv2-035_conv.py'),
])
def test_written_configs_are_the_shipped_variants(tmp_path, candidate,
                                                  shipped):
    path = write_candidate_config(candidate, str(tmp_path / 'c.py'))
    ours, theirs = Config.fromfile(path).model, Config.fromfile(
        osp.join(CONFIGS, shipped)).model
    # The backbone's defaults; pooling None is no pooling in any stage.
    defaults = dict(strides=(1, 2, 2, 2, 1, 2, 1), pooling=[None] * 7,
                    pool_position='pre', widen_factor=1.0)
    for key, default in defaults.items():
        assert (ours.backbone.get(key) or default) == (
            theirs.backbone.get(key) or default), key
    assert tuple(ours.neck.in_channels) == tuple(theirs.neck.in_channels)
    assert tuple(ours.bbox_head.in_channels) == tuple(
        theirs.bbox_head.in_channels)
    assert [int(s) for s in ours.bbox_head.anchor_generator.strides] == [
        int(s) for s in theirs.bbox_head.anchor_generator.strides]


def test_smaller_input_resizes_pipelines_and_anchors(tmp_path):
    candidate = Candidate('conv', 2, 2, 0.35, False, False, (160, 160))
    path = write_candidate_config(candidate, str(tmp_path / 'c.py'),
                                  recipe='demo')
    cfg = Config.fromfile(path)
    scales = [t['scale'] for loader in ('train_dataloader', 'val_dataloader')
              for t in cfg[loader].dataset.pipeline if t['type'] == 'Resize']
    assert scales == [(160, 160), (160, 160)]
    anchors = cfg.model.bbox_head.anchor_generator
    # Maps of 5, 3, 2, 1, 1, 1 cells at 160 px; sizes half the 320 ones.
    assert anchors.strides == [32, 53, 80, 160, 160, 160]
    assert anchors.min_sizes == [24, 50, 75, 101, 126, 152]
    detector = build_from_config(cfg, 'detector')
    with torch.no_grad():
        scores, _ = detector(torch.zeros(1, 3, 160, 160), None,
                             mode='tensor')
    assert [tuple(s.shape[2:]) for s in scores] == [
        (5, 5), (3, 3), (2, 2), (1, 1), (1, 1), (1, 1)]


def test_estimate_matches_the_deployed_int8_graph(tmp_path):
    candidate = Candidate('conv', 2, 2, 0.35, False, True, (64, 64))
    estimate = estimate_candidate(candidate)
    path = write_candidate_config(candidate, str(tmp_path / 'c.py'))
    device, as_run = measure_candidate(candidate, path)
    # The stem conv holds the 64x64x3 image and its 8-channel (16 pruned
    # 2x) 32x32 output: 12288 + 8192 bytes at one byte per element.
    assert estimate.peak_bytes == device.peak_bytes == 12288 + 8192
    assert 'conv1' in estimate.peak_layer and 'conv1' in device.peak_node
    assert device.input_bytes_at_peak == 12288
    assert as_run.peak_bytes >= device.peak_bytes


def test_estimate_holds_the_attention_scores_the_graph_holds():
    class Attention(torch.nn.Module):

        def forward(self, x):
            return torch.nn.functional.scaled_dot_product_attention(x, x, x)

    x = torch.randn(1, 2, 16, 4)
    peak, layer, macs = estimate_peak(Attention(), x)
    # The input and the output (128 one-byte elements each), the CPU
    # kernel's log-sum-exp (2 x 16), and the 2 x 16 x 16 scores twice
    # (scores and softmax), as the exported MatMul + Softmax holds them.
    assert peak == 128 + 128 + 32 + 2 * 512
    assert 'scaled_dot_product' in layer
    assert macs == 2 * (2 * 16 * 16 * 4)


def test_nothing_fits_names_the_floor(tmp_path):
    report = fit_budget(8, (64, 64), str(tmp_path / 'plan'),
                        methods=['conv'], widths=[0.35],
                        first_strides=[4], second_strides=[2],
                        stem_pooling=[False], pruning=[False],
                        keep_size=True, progress=False)
    assert report.frontier == [] and report.estimated == 1
    assert 'int8 input image alone is 12.0 KiB at 64x64' in report.floor
    assert 'over the 8 KiB budget' in report.floor
    assert report.floor in (tmp_path / 'plan' / 'fit_budget.md').read_text()


def test_fit_writes_the_configs_and_the_frontier(tmp_path):
    out = tmp_path / 'plan'
    report = fit_budget(24, (96, 96), str(out), methods=['conv'],
                        widths=[0.35], first_strides=[2],
                        second_strides=[2], stem_pooling=[False],
                        pruning=[True], confirm=1, progress=False)
    # 96x96: 27 KiB of input alone; 64x64 is the largest size that fits.
    assert len(report.frontier) == 1
    plan = report.frontier[0]
    assert plan.candidate.input_size == (64, 64)
    assert plan.deployed_peak_bytes == 20480 <= report.budget_bytes
    assert report.best['conv'] is plan
    assert osp.isfile(plan.config) and osp.dirname(plan.config) == str(out)
    built = build_from_config(Config.fromfile(plan.config), 'detector')
    assert built.backbone.widen_factor == 0.35
    saved = json.loads((out / 'fit_budget.json').read_text())
    assert saved['frontier'][0]['deployed_peak_bytes'] == 20480
    assert '| conv s1=2 s2=2 0.35x +CP | 64x64 |' in (
        out / 'fit_budget.md').read_text()


def test_a_candidate_that_cannot_be_measured_leaves_no_config(
        tmp_path, monkeypatch):
    import sapool_mmdet.deploy.budget as budget

    def fails(*args, **kwargs):
        # what onnxruntime's quantiser raises on some NLPool graphs
        raise Exception('Incomplete symbolic shape inference')

    monkeypatch.setattr(budget, 'measure_candidate', fails)
    out = tmp_path / 'plan'
    report = fit_budget(24, (96, 96), str(out), methods=['conv'],
                        widths=[0.35], first_strides=[2],
                        second_strides=[2], stem_pooling=[False],
                        pruning=[True], confirm=1, progress=False)
    assert list(report.failed) == ['conv_s22_w035_cp_64x64']
    assert 'Incomplete symbolic shape inference' in \
        report.failed['conv_s22_w035_cp_64x64']
    assert sorted(p.name for p in out.iterdir()) == [
        'fit_budget.json', 'fit_budget.md']


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match='positive number of KiB'):
        fit_budget(0, (64, 64))
    with pytest.raises(ValueError, match="'DeformNLPool' cannot be planned"):
        fit_budget(64, (64, 64), methods=['DeformNLPool'])
    with pytest.raises(ValueError, match="recipe must be one of"):
        fit_budget(64, (64, 64), recipe='coco')
    with pytest.raises(ValueError, match='s1 values'):
        fit_budget(64, (64, 64), first_strides=[0])
