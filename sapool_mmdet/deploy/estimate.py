"""The cheap estimate the budget planner (:mod:`.budget`) and
``tools/analyze_model.py --deployed --fit-kib`` search with: the deployed
int8 peak of a model from one PyTorch trace, and the input sizes searched.
"""
import math
from typing import List, Sequence, Tuple

import torch

from ..analysis.config import check_input_size
from ..analysis.memory import (OpStep, _LiveTensorTracker, _Record,
                               _storage_key, iter_tensors)

__all__ = ['SIZE_STEP', 'ESTIMATE_AREA', 'check_budget_kib', 'estimate_peak',
           'input_sizes', 'reference_size']

SIZE_STEP = 32
ESTIMATE_AREA = 160 * 160
# The folding the estimate assumes: a norm or activation right after a
# convolution (or after one folded into it) writes into its output.
_FOLDED_OPS = frozenset({
    '_native_batch_norm_legit_no_training', 'native_batch_norm',
    'batch_norm', 'relu', 'relu6', 'hardtanh', 'clamp', 'clamp_min'})
_FOLD_TARGETS = frozenset({'convolution'}) | _FOLDED_OPS
_ALLOCATIONS = frozenset({'empty', 'empty_like', 'zeros'})


class _FoldingTracker(_LiveTensorTracker):
    """The trace of :mod:`sapool_mmdet.analysis.memory` with a norm or
    activation that reads the map the previous operator (a convolution,
    or one already folded into it) just made writing into that map, as
    onnxruntime's Conv+BatchNorm and Conv+activation fusions do."""

    def __init__(self, excluded: set) -> None:
        super().__init__(excluded)
        self.attention_macs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        source = args[0] if args and isinstance(args[0], torch.Tensor) \
            else None
        previous = len(self.steps) - 1
        # An eval-mode batch norm allocates its (unused) statistics first.
        while previous >= 0 and self.steps[previous].op in _ALLOCATIONS:
            previous -= 1
        if (name in _FOLDED_OPS and source is not None and previous >= 0
                and self.steps[previous].op in _FOLD_TARGETS):
            index = self.current.get(_storage_key(source))
            if index is not None and \
                    self.records[index].born == previous:
                result = func(*args, **(kwargs or {}))
                step = len(self.steps)
                self.steps.append(OpStep(name, self.module_stack[-1]))
                self.records[index].last = step
                output = next(iter_tensors(result))
                if self._tracked(output):
                    self.current[_storage_key(output)] = index
                return result
        result = super().__torch_dispatch__(func, types, args, kwargs)
        if 'scaled_dot_product' in name and len(args) >= 2:
            # PyTorch's CPU attention kernels never hold the (L, S) score
            # matrix; the exported graph's MatMul and Softmax hold it twice
            # (scores and probabilities) at the Softmax.
            query, key, value = args[0], args[1], args[2]
            scores = query.shape[:-1].numel() * key.shape[-2]
            step = len(self.steps) - 1
            self.records.append(_Record(8 * scores, 2 * scores, step, step))
            # q @ k^T and attn @ v, as analysis.flops counts them;
            # torch's flop counter has no formula for the CPU kernel.
            self.attention_macs += scores * (query.shape[-1] +
                                             value.shape[-1])
        return result


def estimate_peak(model: torch.nn.Module, inputs: torch.Tensor,
                  run=None) -> Tuple[int, str, int]:
    """Estimated deployed int8 peak of ``model`` on ``inputs``: the trace
    at one byte per element, input included, with norms and activations
    folded into the convolution before them.

    Args:
        model (nn.Module): Its parameters and buffers are excluded.
        inputs (Tensor): (1, 3, H, W).
        run (callable, optional): Runs the forward; default
            ``model(inputs)``.

    Returns:
        tuple[int, str, int]: Bytes, 'module (operator)' at the peak, and
        the multiply-adds of convolutions, matrix products and attention
        (``torch.utils.flop_counter``, halved): the ranking figure of the
        search, cheaper than :func:`~sapool_mmdet.analysis.count_flops`.
    """
    from torch.utils.flop_counter import FlopCounterMode
    excluded = {_storage_key(t) for t in
                list(model.parameters()) + list(model.buffers())}
    tracker = _FoldingTracker(excluded)
    names = {module: name for name, module in model.named_modules()}
    handles = []

    def enter(module, args) -> None:
        tracker.module_stack.append(names[module])

    def leave(module, args, output) -> None:
        tracker.module_stack.pop()

    for module, name in names.items():
        if name:
            handles.append(module.register_forward_pre_hook(enter))
            handles.append(module.register_forward_hook(leave))
    tracker.add_input(inputs)
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter, tracker:
            result = run() if run is not None else model(inputs)
    finally:
        for handle in handles:
            handle.remove()
    tracker.keep_alive(result)
    live = tracker.live_bytes(int8=True)
    step = max(range(len(live)), key=live.__getitem__)
    op = tracker.steps[step]
    return (live[step], f'{op.module or "<root>"} ({op.op})',
            counter.get_total_flops() // 2 + tracker.attention_macs)


def check_budget_kib(budget_kib: float) -> float:
    """``budget_kib`` if it is a positive number of KiB, else a
    ValueError that says so (before anything is built or exported)."""
    if isinstance(budget_kib, bool) or \
            not isinstance(budget_kib, (int, float)) or \
            not (budget_kib > 0 and math.isfinite(budget_kib)):
        raise ValueError(f'the budget must be a positive number of KiB, '
                         f'got {budget_kib!r}')
    return budget_kib


def input_sizes(input_size: Sequence[int], min_size: int = 64,
                step: int = SIZE_STEP) -> List[Tuple[int, int]]:
    """(H, W) from ``input_size`` down in steps of ``step`` pixels on the
    height, the width keeping the aspect ratio (a multiple of ``step``),
    largest first."""
    height, width = check_input_size(list(input_size))
    sizes = [(height, width)]
    h = (height - 1) // step * step
    while h >= min_size:
        w = max(step, round(width * h / height / step) * step)
        sizes.append((h, w))
        h -= step
    return sizes


def reference_size(input_size: Sequence[int]) -> Tuple[int, int]:
    """The size the search traces at: the largest of :func:`input_sizes`
    (down to 32 px) with at most ``ESTIMATE_AREA`` pixels."""
    sizes = input_sizes(input_size, SIZE_STEP)
    return next((at for at in sizes if at[0] * at[1] <= ESTIMATE_AREA),
                sizes[-1])
