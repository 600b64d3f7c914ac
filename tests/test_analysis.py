"""Activation accounting, FLOP counting and tools/analyze_model.py."""
import json
import runpy
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn as nn
from PIL import Image

from sapool_mmdet.analysis import (analyze_model, count_flops,
                                   infer_input_size, load_config,
                                   measure_latency, trace_activations)
from sapool_mmdet.backbones import NLPoolMobileNetV2
from sapool_mmdet.pooling import build_pooling

ROOT = Path(__file__).resolve().parents[1]
TOOL = str(ROOT / 'tools' / 'analyze_model.py')
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
FLOAT = 4  # bytes per fp32 element
# Time one call after the timer's own warm-up call: the tests check what is
# reported, not how fast.
QUICK = dict(min_run_time=0, max_run_time=1e-3)
QUICK_ARGS = ('--min-run-time', 0, '--max-run-time', 1e-3)


def run_tool(monkeypatch, *args):
    monkeypatch.setattr(sys, 'argv', [TOOL, *map(str, args)])
    runpy.run_path(TOOL, run_name='__main__')


class Residual(nn.Module):
    """conv -> conv, a residual add, an in-place ReLU, a pool and a view."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 2, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(2, 2, 1, bias=False)
        self.pool = nn.AvgPool2d(2)

    def forward(self, x):
        a = self.conv1(x)
        b = self.conv2(a)
        c = (a + b).relu_()
        return self.pool(c).flatten(1)


def test_activation_trace_matches_hand_count():
    model = Residual().eval()
    x = torch.randn(1, 1, 4, 4)
    with torch.no_grad():
        trace = trace_activations(model, lambda: model(x), inputs=[x])
    x_bytes = 16 * FLOAT           # 1x1x4x4
    map_bytes = 2 * 16 * FLOAT     # a, b, c: 1x2x4x4
    out_bytes = 2 * 4 * FLOAT      # 1x2x2x2
    # conv1 reads x, writes a; conv2 reads a (still needed by the add),
    # writes b; the add holds a, b and c; relu_ writes into c; the pool
    # reads c and writes the output, and flatten is a view of it.
    assert trace.live_bytes == [
        x_bytes + map_bytes, 2 * map_bytes, 3 * map_bytes, map_bytes,
        map_bytes + out_bytes, out_bytes
    ]
    assert trace.live_bytes_int8 == [b // FLOAT for b in trace.live_bytes]
    assert trace.peak() == (3 * map_bytes, 2)
    assert trace.layer_at(2) == '<root> (add)'
    assert trace.total_bytes == x_bytes + 3 * map_bytes + out_bytes
    assert trace.module_spans['conv2'] == (1, 1)
    assert trace.module_outputs['pool'].shapes == [(1, 2, 2, 2)]
    assert trace.module_outputs['pool'].nbytes == out_bytes


def test_activation_trace_backward_keeps_saved_tensors_and_gradients():
    model = nn.Conv2d(1, 1, 1, bias=False)
    x = torch.randn(1, 1, 2, 2, requires_grad=True)
    grad = torch.ones(1, 1, 2, 2)

    def step():
        output = model(x)
        output.backward(grad)
        return output

    trace = trace_activations(model, step, inputs=[x, grad],
                              keep=lambda: [x.grad, model.weight.grad])
    unit = 4 * FLOAT  # every map is 1x1x2x2
    # x, the upstream gradient, the output and, once backward has run, the
    # input gradient (4 floats) and the weight gradient (1 float) stay live.
    assert trace.peak_bytes == 4 * unit + FLOAT


def mobilenet_v2(s1: int) -> NLPoolMobileNetV2:
    """The backbones of configs/ssd_mbv2_nlp.py (s1 = 1) and
    configs/ssd_mbv2_nlp_s2.py (s1 = 2)."""
    nlp = dict(type='NLPool', embed_ratio=1.0, num_heads=2)
    first = None if s1 == 1 else dict(nlp, patch_size=8)
    model = NLPoolMobileNetV2(
        strides=(s1, 2, 2, 2, 1, 2, 1),
        pool_position='inner',
        out_indices=(4, 7),
        pooling=[
            first,
            dict(nlp, patch_size=4),
            dict(nlp, patch_size=4),
            dict(nlp, patch_size=2), None,
            dict(nlp, patch_size=1), None
        ])
    model.eval()
    return model


def test_peak_memory_s1_2_against_s1_1_mobilenetv2():
    """The paper (Sec. 6.4): halving the resolution after the stem roughly
    halves memory. By our definition (largest total of tensors live at
    once) the ratio is exactly 3 at any input size: with inner-stage pooling
    the peak of s1 = 1 is the first block of stage 2 at full stem
    resolution (H/2), whose depthwise conv reads and writes 96 channels,
    while at s1 = 2 it is the stem and stage 1 at H/2 with 32 channels (a
    conv and its batch norm, or the stride-1 depthwise conv of stage 1).
    The total of all activations, the measure closer to "total memory
    consumption", drops by a factor between 2 and 3."""
    size = 64
    full = (size // 2)**2 * FLOAT
    s1 = analyze_model(mobilenet_v2(1), (size, size), **QUICK)
    s2 = analyze_model(mobilenet_v2(2), (size, size), **QUICK)
    assert s1.peak_activation_bytes == 2 * 96 * full
    assert s1.peak_layer.startswith('layer2.0.')
    assert s2.peak_activation_bytes == 2 * 32 * full
    assert s1.peak_activation_bytes / s2.peak_activation_bytes == 3.0
    assert s1.peak_activation_bytes_int8 == s1.peak_activation_bytes // 4
    assert 2.0 < s1.total_activation_bytes / s2.total_activation_bytes < 3.0
    assert [stage.name for stage in s1.stages][:3] == [
        'conv1', 'layer1', 'layer2'
    ]
    assert s1.stages[2].output_shapes == [(1, 24, 16, 16)]
    assert s2.stages[2].output_shapes == [(1, 24, 8, 8)]


def test_flops_count_attention_by_hand():
    """NLPool on 1x4x8x8, patch 2, 2 heads: 16 tokens of 4 channels."""
    pool = build_pooling(dict(type='NLPool', patch_size=2, num_heads=2), 4,
                         2).eval()
    flops = count_flops(pool, (torch.randn(1, 4, 8, 8), ))
    tokens, head_dim = 16, 2
    attention = 2 * tokens * tokens * (head_dim + head_dim)  # qk^T and av
    expected = {
        'conv': 16 * 4 * (4 * 2 * 2) + 16 * 4 * 4,  # embed 2x2, restore 1x1
        'batch_norm': 2 * 64 + 2 * 256,  # bn1 on 4x4x4, bn2 on 4x8x8
        # bilinear: 4 per output of the positional table (16x16 -> 4x4)
        # and of the restored map (4x4 -> 8x8)
        'upsample_bilinear2d': 4 * 64 + 4 * 256,
        'linear': 16 * 4 * 12 + 16 * 4 * 4,  # q/k/v and output projection
        'scaled_dot_product_attention': attention,
        'avg_pool2d': 2 * 256,  # the two window sums of eq. 5
    }
    assert flops.by_operator == expected
    assert flops.total == sum(expected.values()) == 6784
    assert 'aten::scaled_dot_product_attention' not in flops.skipped


def test_flops_count_rnn_by_hand():
    """RNNPool, C = 8 (hidden = summary = 2), on 1x8x4x4 with s = 2: four
    2x2 windows, each swept along rows and along columns."""
    pool = build_pooling(dict(type='RNNPool'), 8, 2).eval()
    flops = count_flops(pool, (torch.randn(1, 8, 4, 4), ))
    gates = 3
    lines = 4 * 2 * 2 * gates * 2 * (8 + 2)  # 8 lines of 2 steps
    summary = 2 * 4 * 2 * gates * 2 * (2 + 2)  # bidirectional, 2 steps
    assert flops.by_operator['gru'] == 2 * (lines + summary)


def test_input_size_from_config():
    assert infer_input_size(load_config(
        str(ROOT / 'configs' / 'ssd_mbv2_nlp.py'))) == (320, 320)
    # 1333x800 with keep_ratio, padded to the preprocessor's divisor of 32
    assert infer_input_size(load_config(
        str(ROOT / 'configs' / 'faster-rcnn_r18_nlp.py'))) == (800, 1344)


def test_tool_table_json_markdown_and_plot(tmp_path, monkeypatch, capsys):
    configs = [ROOT / 'configs' / 'ssd_mbv2_conv.py',
               ROOT / 'configs' / 'ssd_mbv2_nlp.py']
    out = tmp_path / 'out'
    run_tool(monkeypatch, *configs, '--input-size', 64, 64, *QUICK_ARGS,
             '--threads', 1, '--json', out / 'r.json', '--markdown',
             out / 'r.md', '--plot', out / 'r.png')
    stdout = capsys.readouterr().out
    assert 'ssd_mbv2_nlp' in stdout and '(1.00x)' in stdout
    assert 'stages of ssd_mbv2_conv' in stdout
    header = [cell.strip() for cell in stdout.splitlines()[1].split('|')]
    assert header[8:12] == ['total act. (MiB)', 'latency (ms)', 'IQR (ms)',
                            'threads']

    records = json.loads((out / 'r.json').read_text())
    assert [Path(r['config']).name for r in records] == [
        'ssd_mbv2_conv.py', 'ssd_mbv2_nlp.py'
    ]
    for record in records:
        assert {'config', 'peak_activation_bytes', 'params', 'flops',
                'stages'} <= set(record)
        assert record['input_size'] == [64, 64]
        assert record['latency_threads'] == 1
        assert record['latency_ms'] > 0 and record['latency_iqr_ms'] >= 0
    # Same stock stages, plus the pooling layers' parameters and FLOPs.
    assert records[1]['params'] > records[0]['params']
    assert (records[1]['flops_by_operator']['scaled_dot_product_attention']
            > 0)
    header, rule = (out / 'r.md').read_text().splitlines()[:2]
    assert header.split('|')[1].strip() == 'config'
    assert set(rule) <= set('|-: ')

    png = out / 'r.png'
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(png) as image:
        assert image.format == 'PNG' and image.size == (960, 720)


def test_tool_detector_scope(tmp_path, monkeypatch, capsys):
    run_tool(monkeypatch, ROOT / 'configs' / 'ssd_mbv2_nlp.py', '--scope',
             'detector', '--input-size', 64, 64, *QUICK_ARGS, '--json',
             tmp_path / 'r.json')
    record, = json.loads((tmp_path / 'r.json').read_text())
    names = [stage['name'] for stage in record['stages']]
    assert names[0] == 'backbone.conv1'
    # mmdet calls the SSD head's forward directly: found through its
    # submodules, without output shapes.
    assert names[-2:] == ['neck', 'bbox_head']
    assert record['stages'][-1]['output_shapes'] == []


def test_tool_cfg_options_apply_to_every_config(tmp_path, monkeypatch):
    """Pre-stage pooling runs every block of a pooled stage at the reduced
    resolution. The peak moves from the 96-channel first block of stage 2 at
    H/2 to its second block at H/4: the 24-channel input kept for the
    residual and the 144-channel expansion, conv output and batch norm."""
    run_tool(monkeypatch, ROOT / 'configs' / 'ssd_mbv2_nlp.py',
             '--input-size', 64, 64, *QUICK_ARGS,
             '--cfg-options', 'model.backbone.pool_position=pre', '--json',
             tmp_path / 'r.json')
    record, = json.loads((tmp_path / 'r.json').read_text())
    assert record['cfg_options'] == {'model.backbone.pool_position': 'pre'}
    assert record['peak_activation_bytes'] == (24 + 2 * 144) * 16 * 16 * FLOAT
    assert record['peak_layer'] == (
        'layer2.1.expand_conv.bn (native_batch_norm)')


@pytest.mark.parametrize('args, message', [
    (['missing.py'], "config file(s) not found: ['missing.py']"),
    ([str(ROOT / 'configs' / 'ssd_mbv2_nlp.py'), '--input-size', '0', '64'],
     'an input size must be two positive integers H W, got [0, 64]'),
    ([str(ROOT / 'configs' / 'ssd_mbv2_nlp.py'), '--max-run-time', '0'],
     'need 0 <= min_run_time <= max_run_time and max_run_time > 0'),
    ([str(ROOT / 'configs' / 'ssd_mbv2_nlp.py'), '--threads', '0'],
     'threads must be an integer >= 1, got 0'),
])
def test_tool_bad_input_fails_clearly(monkeypatch, args, message):
    with pytest.raises(SystemExit) as exit_info:
        run_tool(monkeypatch, *args)
    assert message in str(exit_info.value)


def test_latency_median_spread_and_threads():
    """Timer blocks of a call that sleeps 20 ms: the median is at least
    20 ms (more on a busy machine), at least four blocks are timed, and the
    thread count is the one asked for, restored afterwards."""
    threads = torch.get_num_threads()
    latency = measure_latency(lambda: time.sleep(0.02), min_run_time=0.08,
                              max_run_time=2.0, threads=2)
    assert 20 <= latency.median_ms < 1000
    assert latency.iqr_ms >= 0
    assert latency.runs >= 4 and latency.threads == 2
    assert torch.get_num_threads() == threads
    with pytest.raises(ValueError, match='min_run_time <= max_run_time'):
        measure_latency(lambda: None, min_run_time=2, max_run_time=1)
