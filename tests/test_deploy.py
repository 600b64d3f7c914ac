"""ONNX export, onnxruntime evaluation and int8 quantisation.

Every exportable pooling method is exported in a small backbone and checked
against PyTorch; a freshly initialised SSD is exported through the
command-line tool and evaluated through mmdet's test loop in onnxruntime,
and its detections are compared with PyTorch's on the same batches.
"""
import json
import os
import os.path as osp
import sys

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmengine.runner import Runner

from tiny_demo import ROOT, TINY_SIZE, run_tool_in_process as run_tool
from sapool_mmdet.analysis import load_config
from sapool_mmdet.deploy import (PARITY_TOLERANCE, create_session,
                                 evaluate_onnx, export_module, export_onnx,
                                 exportable_pooling_methods,
                                 find_unexportable, onnx_test_config,
                                 session_metadata)
from sapool_mmdet.deploy.quantize import (load_calibration_inputs,
                                          quantize_int8)
from sapool_mmdet.pooling import POOLING

import onnx  # noqa: E402  (the deploy extra; its absence must fail, not skip)

REFUSED = ('DeformNLPool', 'DeformMixNLPool')
EXPORTABLE = sorted(set(POOLING.module_dict) - set(REFUSED))
SIZE = TINY_SIZE


def small_backbone(method: str) -> torch.nn.Module:
    """A narrow MobileNetV2 whose every down-sampling stage is ``method``."""
    backbone = MODELS.build(
        dict(type='NLPoolMobileNetV2', widen_factor=0.25, out_indices=(1, 2),
             pooling=dict(type=method)))
    backbone.eval()
    return backbone



def run_onnx(path: str, inputs: torch.Tensor) -> list:
    return create_session(path, num_threads=1).run(
        None, {'input': inputs.numpy()})


def test_exportable_methods_are_all_but_the_deformable_ones():
    assert exportable_pooling_methods() == EXPORTABLE
    assert len(EXPORTABLE) == len(POOLING.module_dict) - 2


def test_export_makes_the_missing_folders_of_its_output(tmp_path):
    out = tmp_path / 'a' / 'b' / 'conv.onnx'
    result = export_module(torch.nn.Conv2d(3, 4, 3), str(out), (8, 8),
                           verify=True)
    assert result.max_abs_diff <= PARITY_TOLERANCE
    assert os.listdir(out.parent) == ['conv.onnx']


def test_int8_where_onnxruntime_symbolic_shape_inference_gives_up(
        tmp_path, monkeypatch):
    """A MobileNetV2 with NLPool at 100x100 (stages of 50, 25, 13 ... px,
    partial patches): onnxruntime's symbolic shape inference gives up on
    the graph; the quantiser goes on with ONNX's own shape inference."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    nlp = dict(type='NLPool', embed_ratio=1.0, num_heads=2)
    torch.manual_seed(0)
    backbone = MODELS.build(dict(
        type='NLPoolMobileNetV2', widen_factor=0.25, out_indices=(4, 7),
        pool_position='inner', pooling=[
            None, dict(nlp, patch_size=8), dict(nlp, patch_size=4),
            dict(nlp, patch_size=2), None, dict(nlp, patch_size=1), None
        ])).eval()
    out = str(tmp_path / 'float.onnx')
    export_module(backbone, out, (100, 100))
    monkeypatch.chdir(tmp_path)  # where onnxruntime leaves its partial model
    with pytest.raises(Exception, match='Incomplete symbolic shape'):
        quant_pre_process(out, str(tmp_path / 'prepared.onnx'))

    rng = np.random.default_rng(0)
    calibration = [rng.standard_normal((1, 3, 100, 100)).astype(np.float32)
                   for _ in range(2)]
    with open(out, 'rb') as f:
        int8_bytes, correlation = quantize_int8(f.read(), calibration)
    ops = {node.op_type for node in onnx.load_from_string(int8_bytes)
           .graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= ops
    assert correlation.keys() == {'feats_0', 'feats_1'}
    assert min(correlation.values()) > 0.9  # 0.97 and 0.95 here


@pytest.mark.parametrize('method', EXPORTABLE)
def test_every_exportable_method_matches_pytorch(tmp_path, method):
    backbone = small_backbone(method)
    out = str(tmp_path / f'{method}.onnx')
    # 26x38: odd sizes, so the edge windows of every pooling are partial.
    result = export_module(backbone, out, (26, 38), verify=True)
    assert result.max_abs_diff <= PARITY_TOLERANCE
    assert result.output_names == ['feats_0', 'feats_1']
    assert any(isinstance(m, POOLING.get(method)) for m in backbone.modules())
    model = onnx.load(out)
    onnx.checker.check_model(model)
    if 'NLPool' in method:  # attention made it into the graph
        assert 'Softmax' in {node.op_type for node in model.graph.node}
    assert os.listdir(tmp_path) == [f'{method}.onnx']  # no temporary file

    inputs = torch.randn(1, 3, 26, 38,
                         generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        expected = backbone(inputs)
    got = run_onnx(out, inputs)
    assert [g.shape for g in got] == [tuple(e.shape) for e in expected]
    for ours, theirs in zip(got, expected):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-4)


def test_dynamic_export_runs_at_other_batch_and_size(tmp_path):
    backbone = small_backbone('NLPool')
    out = str(tmp_path / 'dynamic.onnx')
    # Traced at a size that needs padding to the patch size, the graph pads
    # by the computed amount and so holds at every size.
    result = export_module(backbone, out, (27, 37), dynamic=True,
                           verify=True)
    assert result.dynamic_batch and result.dynamic_spatial
    assert result.notes == []
    inputs = torch.randn(3, 3, 45, 29)
    with torch.no_grad():
        expected = backbone(inputs)
    for ours, theirs in zip(run_onnx(out, inputs), expected):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-4)


def test_dynamic_export_keeps_a_size_the_trace_cannot_leave(tmp_path):
    backbone = small_backbone('NLPool')
    out = str(tmp_path / 'batch_only.onnx')
    # At 32x32 no padding is traced, so other sizes would go wrong: the
    # export keeps the size fixed and says so; the batch stays dynamic.
    result = export_module(backbone, out, (32, 32), dynamic=True,
                           verify=True)
    assert result.dynamic_batch and not result.dynamic_spatial
    assert 'fixed at 32x32' in result.notes[0]
    shape = create_session(out).get_inputs()[0].shape
    assert shape[1:] == [3, 32, 32] and isinstance(shape[0], str)
    inputs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = backbone(inputs)
    for ours, theirs in zip(run_onnx(out, inputs), expected):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize('method', REFUSED)
def test_deformable_methods_are_refused_and_nothing_is_written(
        tmp_path, method):
    backbone = small_backbone(method)
    layers = find_unexportable(backbone)
    assert layers and {layer.method for layer in layers} == {method}
    out = str(tmp_path / 'refused.onnx')
    with pytest.raises(ValueError, match=method) as error:
        export_module(backbone, out, (32, 32))
    assert 'ModulatedDeformConv2d' in str(error.value)
    assert 'NLPool' in str(error.value).split('Methods that export:')[1]
    assert os.listdir(tmp_path) == []


@pytest.fixture(scope='module')
def tiny_ssd(tiny_detector):
    """The session's tiny demo SSD (freshly initialised, 96x96, 3 synthetic
    validation images) and its float32 export through the tool."""
    onnx_file = str(tiny_detector['root'] / 'ssd.onnx')
    printed = run_tool('export_onnx.py', tiny_detector['config'],
                       tiny_detector['checkpoint'], '--out', onnx_file,
                       '--verify')
    assert 'verified: max abs difference to PyTorch' in printed
    return dict(tiny_detector, onnx=onnx_file)


def detections(model: torch.nn.Module, cfg) -> list:
    """(boxes, scores, labels) per image of the config's test set."""
    loader = Runner.build_dataloader(cfg.test_dataloader)
    found = []
    model.eval()
    with torch.no_grad():
        for data in loader:
            for sample in model.test_step(data):
                pred = sample.pred_instances
                order = torch.argsort(pred.scores, descending=True)
                found.append((pred.bboxes[order], pred.scores[order],
                              pred.labels[order]))
    return found


@pytest.mark.slow
def test_detector_export_gives_pytorch_detections(tiny_ssd):
    session = create_session(tiny_ssd['onnx'])
    metadata = session_metadata(session)
    assert metadata['scope'] == 'detector'
    assert metadata['input_size'] == [SIZE, SIZE]
    assert metadata['output_groups'] == [['cls_scores', 6], ['bbox_preds', 6]]

    cfg = load_config(tiny_ssd['config'])
    detector = MODELS.build(cfg.model)
    detector.load_state_dict(
        torch.load(tiny_ssd['checkpoint'])['state_dict'])
    onnx_cfg = onnx_test_config(tiny_ssd['config'], tiny_ssd['onnx'])
    onnx_detector = MODELS.build(onnx_cfg.model)
    ours = detections(onnx_detector, onnx_cfg)
    theirs = detections(detector, cfg)
    assert len(ours) == len(theirs) == 3
    for image, (found, reference) in enumerate(zip(ours, theirs)):
        assert_same_detections(found, reference, f'image {image}')


def assert_same_detections(found: tuple, reference: tuple, what: str,
                           score_atol: float = 1e-5,
                           box_atol: float = 1e-3) -> None:
    """``found`` and ``reference`` (boxes, scores, labels) are the same
    detections: as many, the same ranked scores, and each detection of
    ``found`` pairs with its own one of ``reference`` of the same class,
    score and box. Two scores closer than the float error of the two
    runtimes may swap ranks, so detections are paired by value, not by
    rank; at the lowest kept score such a swap may also exchange which of
    two tied detections the top-k cut keeps, so those are left unpaired."""
    boxes, scores, labels = found
    ref_boxes, ref_scores, ref_labels = reference
    assert len(scores) == len(ref_scores) > 0, what
    torch.testing.assert_close(scores.sort().values, ref_scores.sort().values,
                               rtol=0, atol=score_atol, msg=what)
    free = torch.ones(len(ref_scores), dtype=torch.bool)
    paired = 0
    for box, score, label in zip(boxes, scores, labels):
        if score - min(scores.min(), ref_scores.min()) <= score_atol:
            continue
        same = (free & (ref_labels == label) &
                ((ref_scores - score).abs() <= score_atol) &
                ((ref_boxes - box).abs().amax(dim=1) <= box_atol))
        assert same.any(), (
            f'{what}: no reference detection of class {int(label)}, score '
            f'{float(score):.6f}, box {box.tolist()}')
        free[same.nonzero()[0, 0]] = False
        paired += 1
    assert paired >= len(scores) // 2, what


@pytest.mark.slow
def test_test_onnx_writes_the_same_report_as_pytorch(tiny_ssd):
    onnx_dir = str(tiny_ssd['root'] / 'work_onnx')
    run_tool('test_onnx.py', tiny_ssd['config'], tiny_ssd['onnx'],
             '--work-dir', onnx_dir, '--threads', '1')
    with open(osp.join(onnx_dir, 'driving_metrics.json')) as f:
        onnx_report = json.load(f)
    assert osp.isfile(osp.join(onnx_dir, 'driving_metrics.md'))

    cfg = load_config(tiny_ssd['config'])
    cfg.work_dir = str(tiny_ssd['root'] / 'work_torch')
    cfg.load_from = tiny_ssd['checkpoint']
    Runner.from_cfg(cfg).test()
    with open(osp.join(cfg.work_dir, 'driving_metrics.json')) as f:
        torch_report = json.load(f)
    assert onnx_report['num_images'] == torch_report['num_images'] == 3
    for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75'):
        assert abs(onnx_report[key] - torch_report[key]) <= 1e-3


@pytest.mark.slow
def test_int8_export_correlates_with_float32_and_evaluates(tiny_ssd):
    out = str(tiny_ssd['root'] / 'ssd_int8.onnx')
    images = osp.join(tiny_ssd['data_root'], 'val')
    result = export_onnx(tiny_ssd['config'], tiny_ssd['checkpoint'], out,
                         int8=True, calib_images=images, calib_count=3)
    assert result.int8 and session_metadata(create_session(out))['int8']
    model = onnx.load(out)
    ops = {node.op_type for node in model.graph.node}
    assert {'QuantizeLinear', 'DequantizeLinear'} <= ops
    assert result.num_bytes < 0.5 * os.path.getsize(tiny_ssd['onnx'])

    # On the images it will see (the validation images, preprocessed as the
    # config does) the int8 outputs follow the float ones of the same image,
    # far closer than the float outputs of another image do. The model is
    # untrained (random weights, norms calibrated on these images), so the
    # rounding noise of 20 quantised blocks is not small next to its
    # outputs: the correlation is about 0.8 here, against about 0.4 between
    # two images.
    outputs = []
    for inputs in load_calibration_inputs(load_config(tiny_ssd['config']),
                                          images, 3, (SIZE, SIZE)):
        inputs = torch.from_numpy(inputs)
        outputs.append([
            np.concatenate([o.ravel() for o in run_onnx(path, inputs)])
            for path in (tiny_ssd['onnx'], out)])
    for image, (fp32, int8) in enumerate(outputs):
        same = np.corrcoef(fp32, int8)[0, 1]
        other = np.corrcoef(outputs[image - 1][0], int8)[0, 1]
        assert same > 0.7 and same > other + 0.2, (image, same, other)

    work_dir = str(tiny_ssd['root'] / 'work_int8')
    metrics = evaluate_onnx(tiny_ssd['config'], out, work_dir,
                            num_threads=1)
    assert 'coco/bbox_mAP_50' in metrics
    assert osp.isfile(osp.join(work_dir, 'driving_metrics.json'))


@pytest.mark.slow
def test_bad_input_gives_clear_errors_and_writes_nothing(tiny_ssd, tmp_path):
    config, checkpoint = tiny_ssd['config'], tiny_ssd['checkpoint']
    out = str(tmp_path / 'model.onnx')
    with pytest.raises(FileNotFoundError, match='checkpoint file .*missing'):
        export_onnx(config, str(tmp_path / 'missing.pth'), out)
    (tmp_path / 'file').write_text('')
    with pytest.raises(NotADirectoryError, match='is a file, not a folder'):
        export_onnx(config, checkpoint, str(tmp_path / 'file' / 'model.onnx'))
    with pytest.raises(ValueError, match='multiple of 32'):
        export_onnx(config, checkpoint, out, input_size=(100, 100),
                    cfg_options={'model.data_preprocessor.pad_size_divisor':
                                 32})
    with pytest.raises(ValueError, match='two positive integers'):
        export_onnx(config, checkpoint, out, input_size=(0, 96))
    with pytest.raises(ValueError, match='cannot take a 3x3 input'):
        # an unpadded 5x5 conv needs at least 5x5
        export_module(torch.nn.Conv2d(3, 4, 5), out, (3, 3))
    with pytest.raises(ValueError, match='opset must be an integer from 14'):
        export_onnx(config, checkpoint, out, opset=11)
    with pytest.raises(ValueError, match=r'holds 3 images .* ask for at '
                       r'most 3 \(--calib-count\)'):
        export_onnx(config, checkpoint, out, int8=True, calib_count=5,
                    calib_images=osp.join(tiny_ssd['data_root'], 'val'))
    with pytest.raises(ValueError, match='opset must be an integer from 14'):
        export_onnx(config, checkpoint, str(tmp_path / 'new' / 'm.onnx'),
                    opset=11)  # a refused export makes no folder
    assert os.listdir(tmp_path) == ['file']

    backbone_file = str(tmp_path / 'backbone.onnx')
    export_module(small_backbone('MaxPool'), backbone_file, (32, 32))
    with pytest.raises(ValueError, match='not a detector export'):
        evaluate_onnx(config, backbone_file,
                      str(tiny_ssd['root'] / 'work_refused'))

    # a truncated export, and an export of another head (8 classes) under
    # a config of 2: refused before any image is read
    truncated = tiny_ssd['root'] / 'truncated.onnx'
    with open(tiny_ssd['onnx'], 'rb') as f:
        truncated.write_bytes(f.read(4096))
    with pytest.raises(ValueError, match='cannot be loaded by onnxruntime, '
                       'it is truncated or not an ONNX model'):
        evaluate_onnx(config, str(truncated),
                      str(tiny_ssd['root'] / 'work_refused'))
    with pytest.raises(ValueError, match="does not fit the config's head: "
                       'output cls_scores_0 has 54 channels, the head makes '
                       '18'):
        evaluate_onnx(config, tiny_ssd['onnx'],
                      str(tiny_ssd['root'] / 'work_refused'),
                      cfg_options={'model.bbox_head.num_classes': 2})

    with pytest.raises(SystemExit, match='error: checkpoint file'):
        run_tool('export_onnx.py', config, str(tmp_path / 'missing.pth'),
                 '--out', out)
    assert sorted(os.listdir(tmp_path)) == ['backbone.onnx', 'file']


def test_missing_onnx_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'onnx', None)
    with pytest.raises(ImportError, match=r"pip install -e '\.\[deploy\]'"):
        export_module(small_backbone('MaxPool'), str(tmp_path / 'x.onnx'),
                      (32, 32))


def test_int8_shape_inference_failure_leaves_nothing_behind(tmp_path,
                                                            monkeypatch):
    """onnxruntime's symbolic shape inference saves a partial model into the
    working directory when it fails; quantize_int8 runs it in its scratch
    folder, so the failure reaches the caller and no file is left."""
    import tempfile

    import onnxruntime.quantization.shape_inference as shape_inference

    from sapool_mmdet.deploy.quantize import quantize_int8

    def failing_pre_process(input_path, output_path, **kwargs):
        with open('sym_shape_infer_temp.onnx', 'wb') as f:  # as onnxruntime
            f.write(b'partial')
        raise Exception('Incomplete symbolic shape inference')

    monkeypatch.setattr(shape_inference, 'quant_pre_process',
                        failing_pre_process)
    scratch = tmp_path / 'tmp'
    scratch.mkdir()
    monkeypatch.setattr(tempfile, 'tempdir', str(scratch))
    work = tmp_path / 'work'
    work.mkdir()
    monkeypatch.chdir(work)
    with pytest.raises(Exception, match='Incomplete symbolic shape'):
        quantize_int8(b'not a model', [np.zeros((1, 3, 8, 8), np.float32)])
    assert os.getcwd() == str(work)
    assert not list(work.iterdir())
    assert not list(scratch.iterdir())
