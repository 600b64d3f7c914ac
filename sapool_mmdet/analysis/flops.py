"""FLOPs with mmengine.analysis, plus handles for the operators our pooling
methods use that mmengine does not count.

Convention (mmengine's, from fvcore): one fused multiply-add counts as one
FLOP, so convolution, linear and matrix-product counts are MACs. Norms,
upsampling and window pooling count one or a few FLOPs per element, and
element-wise arithmetic and activations (add, mul, div, exp, sigmoid...)
are not counted; :func:`count_flops` reports which operators were skipped.

Added here, because mmengine 0.10 skips them silently or with a warning:

- ``aten::scaled_dot_product_attention`` (NLPool's multi-head attention):
  q @ k^T and attn @ v, ``batch * heads * L * S * (E + Ev)`` MACs;
  the softmax is element-wise and not counted.
- ``aten::gru`` / ``aten::lstm`` / ``aten::rnn_tanh`` / ``aten::rnn_relu``
  (RNNPool): ``gates * hidden * (input + hidden)`` MACs per step, direction
  and layer.
- mmcv's deformable convolutions (DeformNLPool's patch embedding): the MACs
  of the equivalent convolution plus 4 FLOPs per bilinearly sampled value,
  as mmengine counts ``grid_sampler``.
- ``aten::avg_pool2d`` and ``aten::max_pool2d`` (the window sums of eq. 5,
  max/avg pooling): one FLOP per input element, as mmengine counts
  ``adaptive_avg_pool2d``.
"""
from dataclasses import dataclass, field
from math import prod
from typing import Any, Dict, List, Sequence

import torch
import torch.nn as nn
from mmengine.analysis import FlopAnalyzer
from mmengine.analysis.jit_handles import elementwise_flop_counter, get_shape

__all__ = ['EXTRA_FLOP_HANDLES', 'FlopCount', 'count_flops']

RNN_GATES = {'aten::gru': 3, 'aten::lstm': 4, 'aten::rnn_tanh': 1,
             'aten::rnn_relu': 1}


def attention_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
    """MACs of ``scaled_dot_product_attention(q, k, v)``."""
    query, key, value = (get_shape(v) for v in inputs[:3])
    *batch, length, embed = query
    return prod(batch) * length * key[-2] * (embed + value[-1])


def _rnn_flop_counter(gates: int):

    def rnn_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
        """MACs of an ``aten::gru``-like op (input, hx, params, has_biases,
        num_layers, dropout, train, bidirectional, batch_first)."""
        num_layers = inputs[4].toIValue()
        directions = 2 if inputs[7].toIValue() else 1
        batch_first = inputs[8].toIValue()
        in_shape, out_shape = get_shape(inputs[0]), get_shape(outputs[0])
        steps, batch = (in_shape[1], in_shape[0]) if batch_first else (
            in_shape[0], in_shape[1])
        hidden = out_shape[-1] // directions
        total, features = 0, in_shape[-1]
        for _ in range(num_layers):
            total += (directions * batch * steps * gates * hidden *
                      (features + hidden))
            features = directions * hidden
        return total

    return rnn_flop_jit


def _deform_conv_flop_counter(weight_index: int):

    def deform_conv_flop_jit(inputs: List[Any], outputs: List[Any]) -> int:
        """Conv MACs plus bilinear sampling of every column value."""
        weight = get_shape(inputs[weight_index])
        out_shape = get_shape(outputs[0])
        batch, _, height, width = out_shape
        in_channels = get_shape(inputs[0])[1]
        sampled = batch * in_channels * prod(weight[2:]) * height * width
        return prod(out_shape) * prod(weight[1:]) + 4 * sampled

    return deform_conv_flop_jit


EXTRA_FLOP_HANDLES = {
    'aten::scaled_dot_product_attention': attention_flop_jit,
    **{op: _rnn_flop_counter(g) for op, g in RNN_GATES.items()},
    'prim::PythonOp.ModulatedDeformConv2dFunction':
    _deform_conv_flop_counter(3),
    'prim::PythonOp.DeformConv2dFunction': _deform_conv_flop_counter(2),
    'aten::avg_pool2d': elementwise_flop_counter(1, 0),
    'aten::max_pool2d': elementwise_flop_counter(1, 0),
}


@dataclass
class FlopCount:
    """Result of :func:`count_flops`.

    Attributes:
        total (int): FLOPs (multiply-add = 1) of one forward.
        by_operator (dict): Operator -> FLOPs.
        by_module (dict): Module name -> FLOPs ('' is the whole model).
        skipped (dict): Operators met but not counted -> number of calls
            (element-wise arithmetic and activations, by convention; any
            other name here is an operator no handle knows).
    """
    total: int
    by_operator: Dict[str, int] = field(default_factory=dict)
    by_module: Dict[str, int] = field(default_factory=dict)
    skipped: Dict[str, int] = field(default_factory=dict)


def count_flops(model: nn.Module, inputs: Sequence[torch.Tensor]
                ) -> FlopCount:
    """Count the FLOPs of ``model(*inputs)`` by tracing it once.

    Args:
        model (nn.Module): Traced in its current mode (call ``eval()`` for
            inference counts); it must take and return tensors (or tuples
            and lists of them).
        inputs (sequence of Tensor): Positional inputs.

    Returns:
        FlopCount: see the module docstring for the convention.
    """
    analyzer = FlopAnalyzer(model, tuple(inputs))
    analyzer.set_op_handle(**EXTRA_FLOP_HANDLES)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    return FlopCount(
        total=int(analyzer.total()),
        by_operator={k: int(v) for k, v in analyzer.by_operator().items()},
        by_module={k: int(v) for k, v in analyzer.by_module().items()},
        skipped=dict(analyzer.unsupported_ops()))
