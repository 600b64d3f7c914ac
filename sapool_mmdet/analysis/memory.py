"""Activation memory of a forward (or forward + backward) pass.

Definition used throughout the package (and the README):

    **Peak activation memory** is the largest total size of the tensors that
    are live at the same time while the model runs, in execution order, with
    every tensor freed right after its last use.

The steps are the ATen operators PyTorch executes (seen through a
``TorchDispatchMode``, so functional code such as residual additions,
attention products and the weighted average of eq. 5 is counted, not only
module outputs). A tensor is live from the operator that creates it to the
last operator that reads it; the model input is live from the first step,
the model outputs to the last. Views share their base's storage and
in-place operators write into their input, so neither allocates. Parameters
and buffers are not activations and are left out. Sizes are storage sizes
in bytes; the int8 figure counts one byte per element of every
floating-point tensor, the memory of the same schedule after int8
quantisation. Nothing is fused: a batch norm after a convolution holds both
maps at its step, as eager PyTorch does.

This is the measure MCU deployment cares about (the activation arena a
static memory planner needs for this operator order, without operator
fusion), and unlike allocator statistics it does not depend on the device,
the allocator or what else runs.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
# The hook torch.utils.flop_counter.FlopCounterMode counts operators with.
from torch.utils._python_dispatch import TorchDispatchMode

__all__ = ['OpStep', 'ModuleOutput', 'ActivationTrace', 'trace_activations',
           'iter_tensors']


@dataclass
class OpStep:
    """One executed operator and the innermost module that ran it."""
    op: str
    module: str


@dataclass
class ModuleOutput:
    """The tensors a module returned: shapes, bytes, and bytes at one byte
    per floating-point element (int8)."""
    shapes: List[Tuple[int, ...]]
    nbytes: int
    nbytes_int8: int

    @classmethod
    def of(cls, output) -> 'ModuleOutput':
        # dtype attributes and shapes only: no operator runs, so calling
        # this from a hook inside the traced pass adds no step.
        tensors = list(iter_tensors(output))
        return cls([tuple(t.shape) for t in tensors],
                   sum(t.numel() * t.dtype.itemsize for t in tensors),
                   sum(t.numel() * (1 if t.dtype.is_floating_point else
                                    t.dtype.itemsize) for t in tensors))


@dataclass
class ActivationTrace:
    """Live activation bytes at every step of a traced run.

    Attributes:
        steps (list[OpStep]): The operators in execution order.
        live_bytes (list[int]): Bytes live at each step.
        live_bytes_int8 (list[int]): The same with one byte per
            floating-point element.
        total_bytes (int): Sum of the sizes of all activations created:
            the memory of a runtime that frees nothing (and close to what
            training keeps for the backward pass).
        total_bytes_int8 (int): The same at one byte per floating-point
            element.
        module_spans (dict): Module name -> (first step, last step) of the
            operators run inside it or its submodules (so a module whose
            ``forward`` is called directly, which hooks do not see, is found
            through its submodules); '' is the traced root.
        module_outputs (dict): Module name -> :class:`ModuleOutput` of its
            first call.
    """
    steps: List[OpStep]
    live_bytes: List[int]
    live_bytes_int8: List[int]
    total_bytes: int = 0
    total_bytes_int8: int = 0
    module_spans: Dict[str, Tuple[int, int]] = field(default_factory=dict)
    module_outputs: Dict[str, ModuleOutput] = field(default_factory=dict)

    def peak(self, first: int = 0, last: Optional[int] = None,
             int8: bool = False) -> Tuple[int, int]:
        """Return (peak bytes, step of the peak) within steps first..last."""
        live = self.live_bytes_int8 if int8 else self.live_bytes
        last = len(live) - 1 if last is None else last
        if not live or last < first:
            return 0, -1
        step = max(range(first, last + 1), key=live.__getitem__)
        return live[step], step

    @property
    def peak_bytes(self) -> int:
        return self.peak()[0]

    @property
    def peak_bytes_int8(self) -> int:
        return self.peak(int8=True)[0]

    def layer_at(self, step: int) -> str:
        """'module (operator)' of a step; the root module is '<root>'."""
        if step < 0:
            return '-'
        op_step = self.steps[step]
        return f'{op_step.module or "<root>"} ({op_step.op})'


def iter_tensors(obj) -> Iterator[torch.Tensor]:
    """Yield the tensors in nested lists, tuples and dicts."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from iter_tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from iter_tensors(item)


def _storage_key(tensor: torch.Tensor) -> Tuple[int, int]:
    storage = tensor.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


@dataclass
class _Record:
    nbytes: int
    nbytes_int8: int
    born: int
    last: int


class _LiveTensorTracker(TorchDispatchMode):
    """Records, per storage, the first and last operator that touches it.

    A storage is identified by its address and size. An output at an
    address that none of the operator's inputs has is a new allocation, even
    if a freed tensor used that address before, so the tracker keeps no
    tensor alive.
    """

    def __init__(self, excluded: set) -> None:
        super().__init__()
        self.excluded = excluded
        self.records: List[_Record] = []
        self.current: Dict[int, int] = {}
        self.steps: List[OpStep] = []
        self.module_stack: List[str] = ['']

    def _new_record(self, tensor: torch.Tensor, born: int) -> None:
        nbytes = tensor.untyped_storage().nbytes()
        int8 = (nbytes // tensor.element_size()
                if tensor.is_floating_point() else nbytes)
        self.current[_storage_key(tensor)] = len(self.records)
        self.records.append(_Record(nbytes, int8, born, born))

    def _touch(self, tensor: torch.Tensor, step: int) -> bool:
        """Extend a known storage's life to ``step``; False if unknown."""
        index = self.current.get(_storage_key(tensor))
        if index is None:
            return False
        self.records[index].last = step
        return True

    def _tracked(self, tensor: torch.Tensor) -> bool:
        return (tensor.untyped_storage().nbytes() > 0
                and _storage_key(tensor) not in self.excluded)

    def add_input(self, tensor: torch.Tensor) -> None:
        """Register a tensor that exists before the first step."""
        if self._tracked(tensor) and not self._touch(tensor, 0):
            self._new_record(tensor, 0)

    def keep_alive(self, tensors) -> None:
        """Make tensors (model outputs, gradients) live to the last step."""
        last = len(self.steps) - 1
        for tensor in iter_tensors(tensors):
            if self._tracked(tensor):
                self._touch(tensor, last)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        step = len(self.steps)
        self.steps.append(OpStep(func.overloadpacket.__name__,
                                 self.module_stack[-1]))
        input_keys = set()
        for tensor in iter_tensors((args, kwargs)):
            input_keys.add(_storage_key(tensor))
            if self._tracked(tensor) and not self._touch(tensor, step):
                self._new_record(tensor, step)
        for tensor in iter_tensors(result):
            if not self._tracked(tensor):
                continue
            if _storage_key(tensor) in input_keys:
                self._touch(tensor, step)
            else:
                self._new_record(tensor, step)
        return result

    def live_bytes(self, int8: bool = False) -> List[int]:
        delta = [0] * (len(self.steps) + 1)
        for rec in self.records:
            size = rec.nbytes_int8 if int8 else rec.nbytes
            delta[rec.born] += size
            delta[rec.last + 1] -= size
        live, total = [], 0
        for change in delta[:-1]:
            total += change
            live.append(total)
        return live


def trace_activations(model: nn.Module,
                      run: Callable[[], object],
                      inputs: Sequence[torch.Tensor] = (),
                      keep: Callable[[], object] = lambda: ()
                      ) -> ActivationTrace:
    """Run ``run()`` once and account the activation memory of every step.

    Args:
        model (nn.Module): The module whose parameters and buffers are
            excluded and whose submodules name the steps (``named_modules``
            names; '' is ``model`` itself).
        run (callable): Runs the pass to trace, e.g.
            ``lambda: model(x)``; its return value is kept live to the end.
            Wrap it in ``torch.no_grad()`` for inference.
        inputs (sequence of Tensor): Tensors that exist before the first step
            (the model input); they count from step 0.
        keep (callable): Called after ``run``; the tensors it returns are
            kept live to the end (e.g. the gradients of a backward pass).

    Returns:
        ActivationTrace: see :mod:`sapool_mmdet.analysis.memory` for the
        definition of liveness.
    """
    excluded = {_storage_key(t) for t in
                list(model.parameters()) + list(model.buffers())}
    tracker = _LiveTensorTracker(excluded)
    outputs: Dict[str, ModuleOutput] = {}
    handles = []

    def enter(name: str):
        def hook(module, args):
            tracker.module_stack.append(name)
        return hook

    def leave(name: str):
        def hook(module, args, output):
            tracker.module_stack.pop()
            if name not in outputs:
                outputs[name] = ModuleOutput.of(output)
        return hook

    for name, module in model.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(enter(name)))
            handles.append(module.register_forward_hook(leave(name)))
    for tensor in inputs:
        tracker.add_input(tensor)
    try:
        with tracker:
            result = run()
    finally:
        for handle in handles:
            handle.remove()
    tracker.keep_alive(result)
    tracker.keep_alive(keep())
    spans: Dict[str, Tuple[int, int]] = {}
    for step, op_step in enumerate(tracker.steps):
        parts = op_step.module.split('.') if op_step.module else []
        for depth in range(len(parts) + 1):
            name = '.'.join(parts[:depth])
            first, last = spans.get(name, (step, step))
            spans[name] = (min(first, step), max(last, step))
    outputs[''] = ModuleOutput.of(result)
    return ActivationTrace(
        tracker.steps, tracker.live_bytes(), tracker.live_bytes(int8=True),
        sum(r.nbytes for r in tracker.records),
        sum(r.nbytes_int8 for r in tracker.records), spans, outputs)
