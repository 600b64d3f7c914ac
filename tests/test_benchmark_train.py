"""tools/benchmark_train.py: the synthetic batch, the optimizer wrapper of
each precision, the measurements of a training step through mmengine's
train_step, and the table / JSON / Markdown / plot. Tiny inputs on the CPU;
the CUDA cases skip, with the reason, without a GPU."""
import json
import os.path as osp
import runpy
import sys

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import AmpOptimWrapper, OptimWrapper
from mmengine.registry import init_default_scope

from sapool_mmdet.analysis.train_benchmark import (
    benchmark_train, build_train_optim_wrapper, model_num_classes,
    plot_train_benchmark, synthetic_batch, train_markdown, train_rows,
    train_text, write_train_json)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONV = osp.join(ROOT, 'configs', 'ssd_mbv2_conv.py')
NLP = osp.join(ROOT, 'configs', 'ssd_mbv2_nlp.py')
TOOL = osp.join(ROOT, 'tools', 'benchmark_train.py')
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason='no CUDA device on this machine')
TINY = dict(input_size=(64, 64), batch_size=2, steps=2, warmup=1,
            throughput_batch=2, min_run_time=0.01, max_run_time=0.05)


@pytest.fixture(scope='module')
def cpu_results():
    """The strided-conv and NLPool SSDs, 64x64, batch 2, on the CPU."""
    return benchmark_train([CONV, NLP], device='cpu', progress=False,
                           **TINY)


def test_synthetic_batch_is_a_packed_detection_batch():
    batch = synthetic_batch(5, (40, 56), num_classes=3, seed=7)
    assert len(batch['inputs']) == len(batch['data_samples']) == 5
    counts, labels = [], []
    for image, sample in zip(batch['inputs'], batch['data_samples']):
        assert image.shape == (3, 40, 56) and image.dtype == torch.uint8
        assert isinstance(sample, DetDataSample)
        assert sample.img_shape == sample.ori_shape == (40, 56)
        assert sample.scale_factor == (1.0, 1.0)
        boxes = sample.gt_instances.bboxes.tensor
        x1, y1, x2, y2 = boxes.unbind(1)
        assert (x1 >= 0).all() and (y1 >= 0).all()
        assert (x2 <= 56 + 1e-4).all() and (y2 <= 40 + 1e-4).all()
        # sides 5 to 50 % of the image side, at least 2 px
        assert ((x2 - x1 >= 2.0 - 1e-4) & (x2 - x1 <= 28 + 1e-4)).all()
        assert ((y2 - y1 >= 2.0 - 1e-4) & (y2 - y1 <= 20 + 1e-4)).all()
        counts.append(len(boxes))
        labels += sample.gt_instances.labels.tolist()
    assert all(1 <= count <= 6 for count in counts)
    assert len(set(counts)) > 1  # images differ in their number of boxes
    assert set(labels) <= {0, 1, 2} and len(set(labels)) > 1
    again = synthetic_batch(5, (40, 56), num_classes=3, seed=7)
    other = synthetic_batch(5, (40, 56), num_classes=3, seed=8)
    assert torch.equal(batch['inputs'][0], again['inputs'][0])
    assert not torch.equal(batch['inputs'][0], other['inputs'][0])


@pytest.mark.parametrize('size,error', [((0, 8), 'two positive integers'),
                                        ((8, ), 'two positive integers')])
def test_synthetic_batch_refuses_bad_sizes(size, error):
    with pytest.raises(ValueError, match=error):
        synthetic_batch(1, size, 3)
    with pytest.raises(ValueError, match='batch size must be an integer'):
        synthetic_batch(0, (8, 8), 3)


def test_model_num_classes():
    assert model_num_classes(Config.fromfile(CONV).model) == 8
    two_stage = Config.fromfile(
        osp.join(ROOT, 'configs', 'faster-rcnn_r18_conv.py')).model
    assert model_num_classes(two_stage) == 8
    with pytest.raises(ValueError, match='no num_classes'):
        model_num_classes(dict(type='X', backbone=dict(depth=18)))
    with pytest.raises(ValueError, match=r'num_classes values \[3, 8\]'):
        model_num_classes(dict(head_a=dict(num_classes=8),
                               head_b=[dict(num_classes=3)]))


class TwoConvs(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Conv2d(4, 2, 1))

    def forward(self, x):
        return self.convs(x)


@pytest.mark.parametrize('amp,wrapper_type,dtype', [
    ('none', OptimWrapper, torch.float32),
    ('bf16', OptimWrapper, torch.bfloat16),
])
def test_optim_wrapper_precision_on_cpu(amp, wrapper_type, dtype):
    init_default_scope('mmdet')
    model = TwoConvs()
    cfg = dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9),
               clip_grad=dict(max_norm=1.0), loss_scale='dynamic')
    wrapper = build_train_optim_wrapper(model, cfg, amp, 'cpu')
    assert isinstance(wrapper, wrapper_type)
    assert not isinstance(wrapper, AmpOptimWrapper)
    assert isinstance(wrapper.optimizer, torch.optim.SGD)
    assert wrapper.clip_grad_kwargs == dict(max_norm=1.0)
    with wrapper.optim_context(model):
        out = model(torch.randn(1, 3, 5, 5))
    assert out.dtype == dtype
    # as AmpOptimWrapper, the autocast covers the forward only
    assert model(torch.randn(1, 3, 5, 5)).dtype == torch.float32


def test_optim_wrapper_refuses_what_the_device_cannot_run():
    init_default_scope('mmdet')
    cfg = dict(optimizer=dict(type='SGD', lr=0.1))
    with pytest.raises(ValueError, match='needs a CUDA device.*bf16 or '
                       'none'):
        build_train_optim_wrapper(TwoConvs(), cfg, 'fp16', 'cpu')
    with pytest.raises(ValueError, match=r"amp must be one of \('none', "
                       r"'fp16', 'bf16'\), got 'fp8'"):
        build_train_optim_wrapper(TwoConvs(), cfg, 'fp8', 'cpu')


def _expected_state_bytes(config: str) -> int:
    """Parameters and buffers of the built detector, plus a gradient and
    an SGD momentum buffer per trainable parameter, counted here from the
    model itself."""
    cfg = Config.fromfile(config)
    init_default_scope('mmdet')
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    assert cfg.optim_wrapper.optimizer.type == 'SGD'
    assert cfg.optim_wrapper.optimizer.momentum > 0
    fp32 = 4
    all_params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    return fp32 * (all_params + 2 * trainable) + buffers


def test_cpu_measurements(cpu_results):
    conv, nlp = cpu_results
    for result, config in ((conv, CONV), (nlp, NLP)):
        assert (result.device, result.amp, result.batch_size,
                result.input_size) == ('cpu', 'none', 2, (64, 64))
        assert result.memory_source == 'trace'
        # warm-up, timed steps and the traced step
        assert len(result.losses) == 1 + 2 + 1
        assert result.loss_finite and all(np.isfinite(result.losses))
        assert result.step_ms > 0 and result.step_iqr_ms >= 0
        assert result.images_per_s == pytest.approx(2e3 / result.step_ms)
        assert result.state_bytes == _expected_state_bytes(config)
        # the input batch alone (float32 after the preprocessor) is live
        # beyond the state at the peak
        assert result.peak_beyond_state_bytes >= 2 * 3 * 64 * 64 * 4
        assert result.latency_ms > 0 and result.throughput_batch == 2
        assert result.throughput_images_per_s == pytest.approx(
            2e3 / result.throughput_ms)
    assert nlp.params > conv.params  # the pooling layers' own weights
    assert nlp.state_bytes > conv.state_bytes


def test_table_ratios_json_markdown_plot(cpu_results, tmp_path):
    conv, nlp = cpu_results
    rows = train_rows(cpu_results)
    header, first, second = rows
    assert [first[0], second[0]] == ['ssd_mbv2_conv', 'ssd_mbv2_nlp']
    step = header.index('step (ms)')
    assert first[step] == f'{conv.step_ms:.1f} (1.00x)'
    assert second[step] == (f'{nlp.step_ms:.1f} '
                            f'({nlp.step_ms / conv.step_ms:.2f}x)')
    peak = header.index('peak (MiB)')
    assert second[peak].endswith(
        f'({nlp.peak_bytes / conv.peak_bytes:.2f}x)')
    assert 'step: median time of one model.train_step' in train_text(
        cpu_results)
    assert train_markdown(cpu_results).startswith('| config ')
    write_train_json(cpu_results, str(tmp_path / 'out' / 'train.json'))
    with open(tmp_path / 'out' / 'train.json') as f:
        records = json.load(f)
    assert [r['config'] for r in records] == [CONV, NLP]
    assert records[1]['peak_beyond_state_bytes'] == (
        nlp.peak_bytes - nlp.state_bytes)
    assert records[1]['losses'] == nlp.losses
    plot_train_benchmark(cpu_results, str(tmp_path / 'train.png'))
    with open(tmp_path / 'train.png', 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    # nothing but the outputs: no temporary files left next to them
    assert sorted(p.name for p in tmp_path.iterdir()) == ['out', 'train.png']


def test_bf16_on_cpu_trains_in_bfloat16(cpu_results):
    result, = benchmark_train([CONV], amp='bf16', device='cpu',
                              progress=False, **dict(TINY, steps=1))
    assert result.amp == 'bf16' and result.loss_finite
    # the same weights and batch as the float32 run: the first loss is
    # close to float32's but not equal (bfloat16 keeps 8 mantissa bits)
    fp32_loss = cpu_results[0].losses[0]
    assert result.losses[0] != fp32_loss
    assert result.losses[0] == pytest.approx(fp32_loss, rel=0.05)
    assert result.latency_ms > 0


@pytest.mark.parametrize('kwargs,error,message', [
    (dict(steps=0), ValueError, 'steps must be an integer >= 1, got 0'),
    (dict(warmup=0), ValueError, 'warmup must be an integer >= 1'),
    (dict(batch_size=0), ValueError, 'batch size must be an integer >= 1'),
    (dict(throughput_batch=0), ValueError, 'throughput batch must be'),
    (dict(input_size=(64, )), ValueError, 'two positive integers'),
    (dict(amp='fp16', device='cpu'), ValueError, 'needs a CUDA device'),
    (dict(device='tpu'), ValueError, 'device must be cpu or cuda'),
    (dict(min_run_time=2.0, max_run_time=1.0), ValueError,
     'min_run_time <= max_run_time'),
])
def test_bad_arguments_fail_before_any_model_is_built(kwargs, error, message):
    with pytest.raises(error, match=message):
        benchmark_train([CONV], progress=False, **kwargs)


def test_input_size_the_preprocessor_would_pad_is_refused():
    # YOLOv3 pads inputs to a multiple of 32: 300x300 would be timed as
    # 320x320 under a 300x300 label; the message of analyze_model.py and
    # export_onnx.py, before any config is benchmarked
    yolo = osp.join(ROOT, 'configs', 'yolov3_mbv2_nlp.py')
    with pytest.raises(ValueError, match='multiple of 32.*e.g. 320 320'):
        benchmark_train([CONV, yolo], input_size=(300, 300), progress=False)


def test_missing_configs_and_non_training_configs(tmp_path):
    with pytest.raises(FileNotFoundError, match='nope.py'):
        benchmark_train([CONV, str(tmp_path / 'nope.py')], progress=False)
    with pytest.raises(ValueError, match='no config given'):
        benchmark_train([], progress=False)
    inference_only = tmp_path / 'inference.py'
    inference_only.write_text('model = dict(type="SingleStageDetector")\n')
    with pytest.raises(ValueError, match='not a training config: it has '
                       'no optim_wrapper'):
        benchmark_train([str(inference_only)], progress=False)


def test_batch_of_one_says_why_it_cannot_train():
    # SSDlite's last extra level is 1x1 at 64x64 and at 320x320
    with pytest.raises(ValueError, match='one value per channel .*'
                       'use --batch-size 2 or more'):
        benchmark_train([CONV], **dict(TINY, batch_size=1), progress=False)


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='checks the message of a machine without CUDA')
def test_cuda_device_without_cuda_is_refused():
    with pytest.raises(ValueError, match="device 'cuda'.*sees no CUDA "
                       "device; use --device cpu"):
        benchmark_train([CONV], device='cuda', progress=False)


def run_tool(monkeypatch, *args):
    monkeypatch.setattr(sys, 'argv', [TOOL, *args])
    runpy.run_path(TOOL, run_name='__main__')


def test_tool_errors(monkeypatch):
    with pytest.raises(SystemExit, match='--plot writes a PNG file'):
        run_tool(monkeypatch, CONV, '--plot', 'train.jpg')
    with pytest.raises(SystemExit, match='error: amp fp16 trains with '
                       "mmengine's AmpOptimWrapper"):
        run_tool(monkeypatch, CONV, '--device', 'cpu', '--amp', 'fp16')


def test_tool_writes_its_outputs(monkeypatch, tmp_path, capsys):
    run_tool(monkeypatch, CONV, '--device', 'cpu', '--input-size', '64',
             '64', '--batch-size', '2', '--steps', '1', '--warmup', '1',
             '--no-inference', '--json', str(tmp_path / 'r.json'),
             '--markdown', str(tmp_path / 'r.md'), '--plot',
             str(tmp_path / 'r.png'))
    out = capsys.readouterr()
    assert 'ssd_mbv2_conv' in out.out and 'wrote' in out.out
    assert '[benchmark_train 1/1]' in out.err  # progress lines
    with open(tmp_path / 'r.json') as f:
        record, = json.load(f)
    assert record['latency_ms'] is None and record['throughput_batch'] == 0
    assert (tmp_path / 'r.md').read_text().startswith('| config ')


@needs_cuda
@pytest.mark.parametrize('amp', ['none', 'fp16', 'bf16'])
def test_cuda_measurements(amp):
    if amp == 'bf16' and not torch.cuda.is_bf16_supported():
        pytest.skip('this GPU has no bfloat16')
    result, = benchmark_train([CONV], amp=amp, device='cuda',
                              progress=False, **dict(TINY, warmup=2, steps=3))
    assert result.memory_source == 'cuda allocator'
    expected = _expected_state_bytes(CONV)
    if amp == 'fp16':
        # while float16 gradients overflow, the loss scaler skips the
        # optimizer step, which creates the momentum buffers
        momentum = sum(p.numel() * 4 for p in MODELS.build(
            Config.fromfile(CONV).model).parameters() if p.requires_grad)
        assert result.state_bytes in (expected, expected - momentum)
    else:
        assert result.state_bytes == expected
    assert result.peak_beyond_state_bytes > 2 * 3 * 64 * 64 * 4
    assert result.loss_finite and result.device == 'cuda'
    assert result.latency_ms > 0


@needs_cuda
def test_cuda_optim_wrapper_is_mmengines_amp():
    init_default_scope('mmdet')
    model = TwoConvs().cuda()
    cfg = dict(optimizer=dict(type='SGD', lr=0.1))
    fp16 = build_train_optim_wrapper(model, cfg, 'fp16', 'cuda')
    assert isinstance(fp16, AmpOptimWrapper) and fp16.cast_dtype is None
    with fp16.optim_context(model):
        assert model(torch.randn(1, 3, 5, 5).cuda()).dtype == torch.float16
