"""Deployed-graph memory (sapool_mmdet.deploy.memory): peaks of small
hand-built ONNX graphs worked out by hand, and the unfused walk against the
PyTorch trace of sapool_mmdet.analysis.memory."""
import io

import numpy as np
import pytest
import torch
import torch.nn as nn

onnx = pytest.importorskip('onnx')
pytest.importorskip('onnxruntime')
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sapool_mmdet.analysis.memory import trace_activations  # noqa: E402
from sapool_mmdet.deploy.memory import (deployed_memory,  # noqa: E402
                                        deployed_memory_text,
                                        execution_order, graph_memory)

F32 = 4


def _init(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


def _weights(name, out_ch, in_ch, k=1, seed=0):
    rng = np.random.default_rng(seed)
    return _init(name, rng.standard_normal((out_ch, in_ch, k, k))
                 .astype(np.float32))


def _model(nodes, inputs, outputs, inits):
    graph = helper.make_graph(nodes, 'g', inputs, outputs, inits)
    # IR version 8 (opset 17's own): onnx writes its newest by default,
    # which an older onnxruntime refuses.
    model = helper.make_model(graph, ir_version=8,
                              opset_imports=[helper.make_opsetid('', 17)])
    onnx.checker.check_model(model)
    return model


def _chain():
    """x (1,3,8,8) -> Conv 3->4 (3x3) -> BN -> Relu -> Conv 4->2 -> y."""
    inits = [_weights('w1', 4, 3, 3), _weights('w2', 2, 4, seed=1),
             _init('scale', np.full(4, 2.0, np.float32)),
             _init('bias', np.arange(4, dtype=np.float32)),
             _init('mean', np.zeros(4, np.float32)),
             _init('var', np.ones(4, np.float32))]
    nodes = [
        helper.make_node('Conv', ['x', 'w1'], ['c1'], name='conv1',
                         pads=[1, 1, 1, 1]),
        helper.make_node('BatchNormalization',
                         ['c1', 'scale', 'bias', 'mean', 'var'], ['bn'],
                         name='bn1'),
        helper.make_node('Relu', ['bn'], ['act'], name='relu1'),
        helper.make_node('Conv', ['act', 'w2'], ['y'], name='conv2'),
    ]
    return _model(
        nodes, [helper.make_tensor_value_info('x', TensorProto.FLOAT,
                                              [1, 3, 8, 8])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT,
                                       [1, 2, 8, 8])], inits)


def test_chain_unfused_and_fused_by_hand():
    x, c4, y = 3 * 64 * F32, 4 * 64 * F32, 2 * 64 * F32  # 768, 1024, 512
    unfused = deployed_memory(_chain(), level='disable')
    assert [op for _, op in unfused.nodes] == [
        'Conv', 'BatchNormalization', 'Relu', 'Conv']
    # conv1: x + c1; bn1: c1 + bn; relu1: bn + act; conv2: act + y.
    assert unfused.live_bytes == [x + c4, 2 * c4, 2 * c4, c4 + y]
    assert unfused.peak_bytes == 2 * c4 and unfused.peak_step == 1
    assert unfused.input_bytes == x and unfused.input_share == 0
    # onnxruntime folds the norm into conv1 and fuses the Relu into it:
    # two nodes, the peak is the fused conv holding the input and its map.
    fused = deployed_memory(_chain(), level='extended')
    assert len(fused.nodes) == 2
    assert fused.nodes[0][1] == 'com.microsoft.FusedConv'
    assert fused.live_bytes == [x + c4, c4 + y]
    assert fused.peak_bytes == x + c4 and fused.peak_step == 0
    assert fused.input_bytes_at_peak == x
    assert fused.input_share == pytest.approx(768 / 1792)
    # FusedConv is onnxruntime's own operator: ONNX shape inference cannot
    # see through it, so its output shape came from running the graph.
    assert fused.shapes_from == 'inference+run'
    assert {t.name: t.shape for t in fused.live_at_peak}[
        fused.live_at_peak[0].name] == (1, 4, 8, 8)
    assert 'FusedConv' in deployed_memory_text(fused)


def test_branch_keeps_its_tensor_alive():
    # a = conv(x) is read again by the Add after two more convs: it is live
    # through both of them.
    inits = [_weights('wa', 4, 3), _weights('wb', 8, 4, seed=1),
             _weights('wc', 4, 8, seed=2)]
    nodes = [
        helper.make_node('Conv', ['x', 'wa'], ['a'], name='conv_a'),
        helper.make_node('Conv', ['a', 'wb'], ['b'], name='conv_b'),
        helper.make_node('Conv', ['b', 'wc'], ['c'], name='conv_c'),
        helper.make_node('Add', ['a', 'c'], ['y'], name='add'),
    ]
    model = _model(
        nodes, [helper.make_tensor_value_info('x', TensorProto.FLOAT,
                                              [1, 3, 4, 5])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT,
                                       [1, 4, 4, 5])], inits)
    hw = 4 * 5 * F32
    x, a, b, c, y = 3 * hw, 4 * hw, 8 * hw, 4 * hw, 4 * hw
    result = deployed_memory(model, level='disable')
    assert result.live_bytes == [x + a, a + b, a + b + c, a + c + y]
    assert result.peak_bytes == a + b + c == 1280
    assert result.peak_node == 'conv_c (Conv)'
    assert [(t.name, t.nbytes, t.producer) for t in result.live_at_peak] == [
        ('b', b, 'conv_b'), ('a', a, 'conv_a'), ('c', c, 'conv_c')]
    assert result.shapes_from == 'inference'


def _int8_conv():
    """QDQ: x -> Q -> DQ -> Conv (DQ'd int8 weight) -> Q -> DQ -> y."""
    rng = np.random.default_rng(0)
    inits = [
        _init('sx', np.float32(0.05)), _init('zx', np.int8(0)),
        _init('wq', rng.integers(-100, 100, (4, 3, 3, 3)).astype(np.int8)),
        _init('sw', np.full(4, 0.01, np.float32)),
        _init('zw', np.zeros(4, np.int8)),
        _init('sy', np.float32(0.1)), _init('zy', np.int8(0))]
    nodes = [
        helper.make_node('QuantizeLinear', ['x', 'sx', 'zx'], ['xq'],
                         name='quant_x'),
        helper.make_node('DequantizeLinear', ['xq', 'sx', 'zx'], ['xd'],
                         name='dequant_x'),
        helper.make_node('DequantizeLinear', ['wq', 'sw', 'zw'], ['wd'],
                         name='dequant_w', axis=0),
        helper.make_node('Conv', ['xd', 'wd'], ['c'], name='conv',
                         pads=[1, 1, 1, 1]),
        helper.make_node('QuantizeLinear', ['c', 'sy', 'zy'], ['cq'],
                         name='quant_c'),
        helper.make_node('DequantizeLinear', ['cq', 'sy', 'zy'], ['y'],
                         name='dequant_y'),
    ]
    return _model(
        nodes, [helper.make_tensor_value_info('x', TensorProto.FLOAT,
                                              [1, 3, 8, 8])],
        [helper.make_tensor_value_info('y', TensorProto.FLOAT,
                                       [1, 4, 8, 8])], inits)


def test_int8_quantize_linear_path():
    x8, c8 = 3 * 64, 4 * 64
    # onnxruntime turns the QDQ pattern into one QLinearConv on int8
    # tensors; the device takes the int8 image and returns the int8 map.
    result = deployed_memory(_int8_conv(), level='extended')
    assert result.quantized_io
    assert result.nodes == [('conv', 'QLinearConv')]
    assert result.live_bytes == [x8 + c8]
    assert result.input_bytes == x8
    assert result.input_share == pytest.approx(192 / 448)
    # onnxruntime may run int8 activations as uint8 on x86: one byte each.
    assert {t.dtype for t in result.live_at_peak} <= {'int8', 'uint8'}
    # Counting the graph's own float input and output instead: the
    # QuantizeLinear holds the float image and its int8 copy, the last
    # DequantizeLinear the int8 map and the float output.
    as_graph = deployed_memory(_int8_conv(), level='extended',
                               quantized_io=False)
    assert [op for _, op in as_graph.nodes] == [
        'QuantizeLinear', 'QLinearConv', 'DequantizeLinear']
    assert as_graph.live_bytes == [3 * 64 * F32 + x8, x8 + c8,
                                   c8 + 4 * 64 * F32]
    assert as_graph.peak_bytes == 1280
    # Unoptimised, the dequantised weight is computed from weights alone
    # and is not an activation; the float maps around the Conv are.
    unfused = deployed_memory(_int8_conv(), level='disable')
    assert 'wd' not in {t.name for t in unfused.live_at_peak}
    assert unfused.peak_node == 'conv (Conv)'
    assert unfused.peak_bytes == 3 * 64 * F32 + 4 * 64 * F32


def test_int8_device_needs_no_int8_kernels():
    # Unoptimised, onnxruntime would run the Conv in float between DQ and
    # Q; an all-int8 runtime holds the same schedule at one byte per
    # element with Q and DQ free: the QLinearConv figure.
    unfused = deployed_memory(_int8_conv(), level='disable',
                              int8_device=True)
    assert [op for _, op in unfused.nodes] == ['DequantizeLinear', 'Conv']
    assert unfused.live_bytes == [3 * 64, 3 * 64 + 4 * 64]
    assert {t.name: t.nbytes for t in unfused.live_at_peak} == {
        'c': 256, 'x': 192}
    fused = deployed_memory(_int8_conv(), level='extended')
    assert unfused.peak_bytes == fused.peak_bytes
    # A float graph is counted at one byte per element the same way.
    assert deployed_memory(_chain(), level='extended',
                           int8_device=True).peak_bytes == 3 * 64 + 4 * 64


def test_nodes_out_of_order_are_sorted_topologically():
    model = _chain()
    nodes = list(model.graph.node)
    del model.graph.node[:]
    model.graph.node.extend([nodes[2], nodes[0], nodes[3], nodes[1]])
    assert execution_order(model.graph) == [1, 3, 0, 2]
    assert graph_memory(model).peak_bytes == 2048


def test_dynamic_input_needs_a_size():
    model = _chain()
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = 'height', 'width'
    dims = model.graph.output[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = 'height', 'width'
    with pytest.raises(ValueError, match='dynamic dimension 2.*input_size'):
        graph_memory(model)
    result = graph_memory(model, input_size=(4, 2))
    assert result.input_bytes == 3 * 8 * F32
    assert result.peak_bytes == 2 * 4 * 8 * F32


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match='missing.onnx'):
        deployed_memory(str(tmp_path / 'missing.onnx'))
    with pytest.raises(ValueError, match="'disable', 'basic'"):
        deployed_memory(_chain(), level='max')


@pytest.mark.parametrize('budget', [0, -5, float('nan'), float('inf')])
def test_fit_budget_not_positive_is_refused_before_the_config(budget):
    from sapool_mmdet.deploy.config_memory import deployed_config_memory
    # refused before the (missing) config is read or anything exported
    with pytest.raises(ValueError, match='positive number of KiB'):
        deployed_config_memory('missing.py', fit_kib=[512, budget])


class _Residual(nn.Module):

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.expand = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU()
        self.project = nn.Conv2d(8, 3, 1)
        self.down = nn.Conv2d(3, 5, 3, stride=2, padding=1)

    def forward(self, x):
        y = x + self.project(self.act(self.expand(x)))
        return self.down(y)


def test_unfused_graph_matches_the_pytorch_trace(tmp_path):
    model = _Residual().eval()
    inputs = torch.randn(1, 3, 6, 7)
    buffer = io.BytesIO()
    torch.onnx.export(model, (inputs, ), buffer, dynamo=False,
                      opset_version=17, input_names=['input'])
    with torch.no_grad():
        trace = trace_activations(model, lambda: model(inputs), [inputs])
    deployed = deployed_memory(buffer.getvalue(), level='disable',
                               quantized_io=False)
    assert [op for _, op in deployed.nodes] == ['Conv', 'Relu', 'Conv',
                                                'Add', 'Conv']
    assert [s.op for s in trace.steps] == ['convolution', 'relu',
                                           'convolution', 'add',
                                           'convolution']
    assert deployed.live_bytes == trace.live_bytes
    assert deployed.peak_bytes == trace.peak_bytes
    # Optimised, the Relu is fused into the first conv. The trace's peak
    # (the Relu: x, the conv map and its activation) is gone; the peak
    # moves to the projection, which holds x for the residual, the
    # activation and its own output.
    x, expanded = 3 * 6 * 7 * F32, 8 * 6 * 7 * F32
    assert trace.peak_bytes == x + 2 * expanded
    fused = deployed_memory(buffer.getvalue(), level='extended')
    assert fused.peak_bytes == x + expanded + x
    assert fused.peak_node.startswith('/project/')


def test_deploy_benchmark_rows_show_the_deployed_peaks():
    from sapool_mmdet.deploy.benchmark import DeployBenchmark, benchmark_rows
    result = DeployBenchmark(
        'NLPool', 'c.py', 'c.pth', (320, 320),
        model_bytes=dict(pytorch=1, onnx_fp32=2, onnx_int8=3),
        latency_ms=dict(pytorch=1.0, onnx_fp32=2.0, onnx_int8=3.0),
        latency_iqr_ms=dict(pytorch=0.1, onnx_fp32=0.2, onnx_int8=0.3),
        peak_activation_bytes=5 * 2**20, peak_activation_bytes_int8=2**20,
        deployed_peak_bytes=dict(onnx_fp32=3 * 2**20, onnx_int8=2**19,
                                 int8_device=2**18))
    rows = benchmark_rows([result])
    assert rows[0][-1] == 'deployed peak (MiB)'
    assert [row[-1] for row in rows[1:]] == ['-', '3.00', '0.50']


@pytest.mark.slow
def test_config_mode_compares_trace_and_deployed_graphs():
    from sapool_mmdet.deploy.budget import configs_root
    from sapool_mmdet.deploy.config_memory import (deployed_config_memory,
                                                   deployed_reports_table)
    import os.path as osp
    report = deployed_config_memory(
        osp.join(configs_root(), 'ssd_mbv2-035_conv.py'),
        input_size=(96, 96), fit_kib=[64, 8])
    # Folding norms and activations, and int8 tensors, only lower the
    # peak; the all-int8 figure is at most what onnxruntime's kernels hold.
    assert report.float32 < report.traced
    assert report.int8 <= report.int8_onnxruntime < report.float32
    assert report.int8 <= report.traced_int8
    # 8 KiB is under the smallest searched input's 12 KiB image.
    assert report.fits['8'] is None
    height, width, peak, measured = report.fits['64']
    assert (height, width) == (64, 64) and peak <= 64 * 1024 and measured
    table = deployed_reports_table([report], markdown=True)
    assert '| ssd_mbv2-035_conv.py | 96x96 |' in table
    assert table.rstrip().endswith('| 64x64 (60) | none |')
