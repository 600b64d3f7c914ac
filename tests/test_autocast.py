"""Every registered pooling method under ``torch.autocast``: finite outputs
and gradients, within a stated tolerance of float32.

The registry is iterated, so a newly registered method is covered without
touching this file. Each method runs twice from the same weights and seed
(GaussianPool's noise): in float32, and under autocast, with the input in
the autocast dtype (what the pooling gets from a conv before it inside an
autocast network) or in float32 (after an operator that autocast keeps in
float32). Both runs see the same input values.

Tolerances (measured worst cases in parentheses; training mode, 2x8x9x7):

- output: max|amp - fp32| <= OUTPUT_TOLERANCE * max|fp32|
  (bfloat16 0.021, RNNPool; float16 0.003, RNNPool);
- gradients: ||amp - fp32|| / ||fp32|| <= GRADIENT_TOLERANCE, for the
  input gradient (bfloat16 0.072, RNNPool; float16 0.002) and for all
  parameter gradients together (bfloat16 0.153, NLPool; float16 0.016,
  NLPool). Parameter gradients are compared together because some are
  exactly zero in exact arithmetic (a bias in front of a batch norm): their
  float32 values are rounding noise.

CPU autocast supports float16 too, and keeps more operators in float16 than
CUDA autocast does (exp and softplus, which CUDA autocast runs in float32),
so the float16 overflow cases are checked here without a GPU: inputs of
magnitude ~1000, whose squares (GaussianPool's window variance) and whose
deformable-conv offset gradients overflow float16 (largest value 65504)
unless computed in float32.
"""
import copy

import pytest
import torch
import torch.nn as nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils._python_dispatch import TorchDispatchMode

from sapool_mmdet.pooling import POOLING, build_pooling
from sapool_mmdet.pooling.weighted_average import (pooled_size,
                                                   weighted_window_average)

METHODS = sorted(POOLING.module_dict)
CHANNELS, STRIDE = 8, 2
SHAPE = (2, CHANNELS, 9, 7)  # odd sizes: windows at the edges are cut
OUTPUT_TOLERANCE = {torch.bfloat16: 0.03, torch.float16: 0.005}
GRADIENT_TOLERANCE = {torch.bfloat16: 0.2, torch.float16: 0.03}

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason='needs a CUDA device')
AUTOCASTS = [
    pytest.param('cpu', torch.bfloat16, id='cpu-bfloat16'),
    pytest.param('cpu', torch.float16, id='cpu-float16'),
    pytest.param('cuda', torch.float16, id='cuda-float16', marks=needs_cuda),
    pytest.param('cuda', torch.bfloat16, id='cuda-bfloat16',
                 marks=needs_cuda),
]


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max|actual - expected| / max|expected|."""
    return ((actual.float() - expected).abs().max() /
            expected.abs().max()).item()


def relative_norm_error(actual, expected) -> float:
    """||actual - expected|| / ||expected|| over lists of tensors."""
    actual = torch.cat([t.float().flatten() for t in actual])
    expected = torch.cat([t.flatten() for t in expected])
    return ((actual - expected).norm() / expected.norm()).item()


def run(module, x, grad_output, device, dtype=None):
    """Forward (under autocast when ``dtype`` is given) and backward of
    ``(output * grad_output).sum()``; returns the output and the gradients
    of the input and of every parameter that gets one, by name."""
    x = x.detach().clone().requires_grad_()
    torch.manual_seed(0)
    with torch.autocast(device, dtype=dtype or torch.float32,
                        enabled=dtype is not None):
        output = module(x)
    (output.float() * grad_output).sum().backward()
    grads = {'input': x.grad}
    grads.update((name, p.grad) for name, p in module.named_parameters()
                 if p.grad is not None)
    return output, grads


def calibrate_norms(module: nn.Module, x: torch.Tensor) -> None:
    """Set every batch norm's running statistics to those of ``x``'s
    forward pass, as training on such inputs would, and switch to eval."""
    for norm in module.modules():
        if isinstance(norm, _BatchNorm):
            norm.reset_running_stats()
            norm.momentum = None  # a plain average of the batches seen
    module.train()
    with torch.no_grad():
        module(x)
    module.eval()


def compare(method, device, dtype, input_dtype, scale=1.0, training=True):
    torch.manual_seed(0)
    module = build_pooling(dict(type=method), CHANNELS, STRIDE).to(device)
    generator = torch.Generator().manual_seed(1)
    # Values that the reduced dtype represents exactly: both runs see the
    # same input.
    x = (scale * torch.randn(SHAPE, generator=generator)).to(dtype).float()
    x = x.to(device)
    if training:
        module.train()
    else:
        calibrate_norms(module, x)
    pooled_shape = (*SHAPE[:2], pooled_size(SHAPE[2], STRIDE),
                    pooled_size(SHAPE[3], STRIDE))
    grad_output = torch.randn(pooled_shape, generator=generator).to(device)
    reference, reference_grads = run(copy.deepcopy(module), x, grad_output,
                                     device)
    output, grads = run(module, x.to(input_dtype), grad_output, device,
                        dtype)

    assert output.shape == reference.shape
    assert output.dtype in (dtype, torch.float32)
    assert torch.isfinite(output).all(), f'{method}: non-finite output'
    error = relative_error(output, reference)
    assert error <= OUTPUT_TOLERANCE[dtype], f'{method} output: {error:.4f}'
    # A gradient for every tensor that gets one in float32, and only those.
    assert grads.keys() == reference_grads.keys()
    for name, grad in grads.items():
        assert torch.isfinite(grad).all(), f'{method}: non-finite {name}'
    params = [name for name in grads if name != 'input']
    for names in (['input'], params) if params else (['input'], ):
        error = relative_norm_error([grads[n] for n in names],
                                    [reference_grads[n] for n in names])
        assert error <= GRADIENT_TOLERANCE[dtype], (
            f'{method} gradient of {names}: {error:.4f}')


@pytest.mark.parametrize('device,dtype', AUTOCASTS)
@pytest.mark.parametrize('method', METHODS)
def test_autocast_matches_float32(method, device, dtype):
    """Input in the autocast dtype, as from a conv inside the network."""
    compare(method, device, dtype, input_dtype=dtype)


@pytest.mark.parametrize('method', METHODS)
def test_autocast_with_float32_input(method):
    compare(method, 'cpu', torch.bfloat16, input_dtype=torch.float32)


@pytest.mark.parametrize('device', [
    pytest.param('cpu'),
    pytest.param('cuda', marks=needs_cuda),
])
@pytest.mark.parametrize('method', METHODS)
def test_float16_large_inputs(method, device):
    """|x| ~ 1000 in float16, in eval mode with the batch norms' running
    statistics of these inputs (a network trained on them). Not in training
    mode: there, PyTorch's CPU batch norm backward, given a float16 input
    and a channels-last float16 gradient (NLPool's token map is
    channels-last), sums in float16 and overflows for such inputs, whatever
    the layer around it."""
    compare(method, device, torch.float16, input_dtype=torch.float16,
            scale=1000.0, training=False)


class RecordDtypes(TorchDispatchMode):
    """The dtypes of the floating-point inputs of every operator run."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        dtypes = {a.dtype for a in args
                  if isinstance(a, torch.Tensor) and a.is_floating_point()}
        self.calls.append((func.overloadpacket.__name__, dtypes))
        return func(*args, **(kwargs or {}))


#: Operators whose results overflow float16 or lose bfloat16 precision
#: quickly: exps (weights, SoftPool, softplus), powers and roots (window
#: variances), logs.
SENSITIVE = {'exp', 'expm1', 'softplus', 'pow', 'square', 'sqrt', 'log'}


@pytest.mark.parametrize('method', METHODS)
def test_sensitive_operators_run_in_float32(method):
    """Under bfloat16 autocast, with a bfloat16 input, no exp, power, root
    or log runs in reduced precision, in the forward or the backward pass:
    the casts that protect float16 on CUDA are in the code path."""
    torch.manual_seed(0)
    module = build_pooling(dict(type=method), CHANNELS, STRIDE).train()
    x = torch.randn(SHAPE).bfloat16().requires_grad_()
    with RecordDtypes() as record:
        with torch.autocast('cpu', dtype=torch.bfloat16):
            output = module(x)
        output.float().sum().backward()
    reduced = sorted({name for name, dtypes in record.calls
                      if name in SENSITIVE and dtypes & {torch.bfloat16}})
    assert not reduced, f'{method} runs {reduced} in bfloat16'


def test_weighted_average_sums_in_float32():
    """pi * x with |x| = 30000 and pi = e overflows float16 (65504); eq. 5
    computes its window sums in float32 and returns float16."""
    x = torch.full((1, 1, 2, 2), 30000.0).half()
    x[..., 0, 0] = 20000.0
    weights = torch.full_like(x, torch.e)
    weights[..., 0, 0] = 1.0
    with torch.autocast('cpu', dtype=torch.float16):
        pooled = weighted_window_average(x, weights, 2)
        plain = weighted_window_average(x, weights, 2, window_norm=False)
    expected = (20000.0 + 3 * torch.e * 30000.0) / (1 + 3 * torch.e)
    assert pooled.dtype == torch.float16
    assert pooled.item() == pytest.approx(expected, rel=1e-3)
    # Without the denominator the mean of pi * x is 66170: past float16's
    # largest value, so it is inf in float16, not a wrapped-around number.
    assert plain.dtype == torch.float16 and plain.isinf().all()
