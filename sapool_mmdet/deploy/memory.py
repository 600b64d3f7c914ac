"""Peak activation memory of the graph onnxruntime actually runs.

:mod:`sapool_mmdet.analysis.memory` traces the PyTorch forward with nothing
fused. A deployed model differs: norms are folded into the convolutions,
activations fused into them, tensors of a quantised graph are int8, and the
input image has to be held. This module measures that graph:

1. Take the graph after onnxruntime's own optimisations
   (``SessionOptions.optimized_model_filepath``, at the optimisation level
   asked for; ``'extended'`` by default, see :data:`DEFAULT_LEVEL`).
2. Give every tensor a shape and an element type: ``onnx.shape_inference``
   first; where it leaves a tensor unknown or symbolic (onnxruntime's own
   fused operators are outside the ONNX standard), run the optimised graph
   once on a random input with those tensors as extra outputs and read
   their shapes.
3. Walk the nodes in the optimised graph's topological order. A tensor is
   live from the node that produces it to the last node that reads it; the
   graph input is live from the first node, graph outputs to the last.
   Initializers (weights) and ``Constant`` outputs are not activations and
   are left out. The peak is the largest total of live bytes at one node.

Quantised input and output (``quantized_io``): a device runs an int8 model
on the int8 image and hands back the int8 outputs with their scales. When
the graph's float input feeds only ``QuantizeLinear`` nodes, those nodes are
taken as done before the model runs (their int8 outputs are the input), and
graph outputs made by a ``DequantizeLinear`` are returned quantised (that
node is left out, its int8 input is kept to the end). This is what makes
the int8 figure hold the 1-byte input image rather than the float one.
"""
import os.path as osp
import tempfile
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..fileio import atomic_open
from .requirements import import_onnx, import_onnxruntime

__all__ = ['OPTIMIZATION_LEVELS', 'DEFAULT_LEVEL', 'LiveTensor',
           'DeployedMemory', 'optimized_graph', 'tensor_types',
           'execution_order', 'graph_memory', 'deployed_memory',
           'deployed_memory_text']

OPTIMIZATION_LEVELS = ('disable', 'basic', 'extended', 'all')
# 'extended' folds norms, fuses activations into convolutions and turns the
# QDQ pattern of an int8 model into int8 operators (QLinearConv ...).
# 'all' adds onnxruntime's layout transformations (NCHWc blocked layouts,
# NHWC transposes) for this machine's CPU; onnxruntime warns that such a
# graph is hardware specific, so it is not the default.
DEFAULT_LEVEL = 'extended'
_ORT_LEVELS = {'disable': 'ORT_DISABLE_ALL', 'basic': 'ORT_ENABLE_BASIC',
               'extended': 'ORT_ENABLE_EXTENDED', 'all': 'ORT_ENABLE_ALL'}
GRAPH_INPUT = '<input>'
_QDQ_OPS = ('QuantizeLinear', 'DequantizeLinear')


@dataclass
class LiveTensor:
    """A tensor live at some node.

    Attributes:
        name (str): Tensor name in the optimised graph.
        shape (tuple[int, ...]): Its shape.
        dtype (str): Element type ('float32', 'int8', ...).
        nbytes (int): Its size in bytes.
        producer (str): The node that makes it, '<input>' for a graph
            input.
    """
    name: str
    shape: Tuple[int, ...]
    dtype: str
    nbytes: int
    producer: str


@dataclass
class DeployedMemory:
    """Activation memory of one deployed graph.

    Attributes:
        level (str): onnxruntime optimisation level of the walked graph.
        quantized_io (bool): Input and outputs counted quantised (see the
            module docstring).
        nodes (list[tuple[str, str]]): (name, operator) of every node
            walked, in execution order.
        live_bytes (list[int]): Bytes live at each node.
        peak_bytes (int): The largest of ``live_bytes``.
        peak_step (int): Index of the node at the peak (-1: no nodes).
        live_at_peak (list[LiveTensor]): The tensors live there, largest
            first.
        input_bytes (int): Size of the graph input(s) as counted.
        input_bytes_at_peak (int): The part of the peak held by the input.
        shapes_from (str): 'inference', or 'inference+run' when some shapes
            came from running the graph.
        int8_device (bool): Accounted as an all-int8 runtime would hold
            the graph (see :func:`graph_memory`).
    """
    level: str
    quantized_io: bool
    nodes: List[Tuple[str, str]]
    live_bytes: List[int]
    peak_bytes: int
    peak_step: int
    live_at_peak: List[LiveTensor] = field(default_factory=list)
    input_bytes: int = 0
    input_bytes_at_peak: int = 0
    shapes_from: str = 'inference'
    int8_device: bool = False

    @property
    def peak_node(self) -> str:
        """'name (operator)' of the node at the peak."""
        if self.peak_step < 0:
            return '-'
        name, op = self.nodes[self.peak_step]
        return f'{name or "<unnamed>"} ({op})'

    @property
    def input_share(self) -> float:
        """Fraction of the peak held by the graph input."""
        return (self.input_bytes_at_peak / self.peak_bytes
                if self.peak_bytes else 0.0)

    def as_dict(self) -> dict:
        data = asdict(self)
        data.update(peak_node=self.peak_node, input_share=self.input_share)
        return data


def _load(model):
    onnx = import_onnx()
    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    if isinstance(model, str):
        if not osp.isfile(model):
            raise FileNotFoundError(f'ONNX file {model!r} not found')
        return onnx.load(model)
    raise TypeError(f'expected an ONNX file path, its bytes or an '
                    f'onnx.ModelProto, got {type(model).__name__}')


def _check_level(level: str) -> str:
    if level not in OPTIMIZATION_LEVELS:
        raise ValueError(f'optimisation level must be one of '
                         f'{OPTIMIZATION_LEVELS}, got {level!r}')
    return level


def optimized_graph(model, level: str = DEFAULT_LEVEL):
    """The graph onnxruntime runs: ``model`` after onnxruntime's CPU graph
    optimisations at ``level``, as written by
    ``SessionOptions.optimized_model_filepath``.

    Args:
        model (str | bytes | onnx.ModelProto): The model.
        level (str): One of :data:`OPTIMIZATION_LEVELS`. 'disable' returns
            the model unchanged. Default: :data:`DEFAULT_LEVEL`.

    Returns:
        onnx.ModelProto
    """
    onnx = import_onnx()
    proto = _load(model)
    if _check_level(level) == 'disable':
        return proto
    ort = import_onnxruntime()
    with tempfile.TemporaryDirectory(prefix='sapool_ort_') as folder:
        path = osp.join(folder, 'optimized.onnx')
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = getattr(
            ort.GraphOptimizationLevel, _ORT_LEVELS[level])
        options.optimized_model_filepath = path
        ort.InferenceSession(proto.SerializeToString(), sess_options=options,
                             providers=['CPUExecutionProvider'])
        return onnx.load(path)


def _dims(type_proto) -> Optional[Tuple[int, ...]]:
    """Concrete dims of a tensor type, None where any is unknown."""
    tensor = type_proto.tensor_type
    if not tensor.HasField('shape'):
        return None
    dims = []
    for dim in tensor.shape.dim:
        if not dim.HasField('dim_value'):
            return None
        dims.append(dim.dim_value)
    return tuple(dims)


def _activation_names(graph) -> List[str]:
    weights = _weight_names(graph)
    names = [i.name for i in graph.input if i.name not in weights]
    for node in graph.node:
        names += [name for name in node.output
                  if name and name not in weights]
    return list(dict.fromkeys(names))


def _weight_names(graph) -> set:
    """Initializers, and what nodes compute from them alone (``Constant``
    outputs, the DequantizeLinear of an int8 weight): a device holds them
    with the weights, computed once."""
    names = {init.name for init in graph.initializer}
    names |= {init.values.name for init in graph.sparse_initializer}
    changed = True
    while changed:
        changed = False
        for node in graph.node:
            if (all(name in names for name in node.input if name)
                    and not all(name in names for name in node.output)):
                names.update(node.output)
                changed = True
    return names


def _random_feeds(graph, weights: set,
                  input_size: Optional[Sequence[int]]) -> Dict[str, object]:
    import onnx.helper
    feeds = {}
    rng = np.random.default_rng(0)
    for value in graph.input:
        if value.name in weights:
            continue
        dims = []
        for index, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.HasField('dim_value'):
                dims.append(dim.dim_value)
            elif index == 0:
                dims.append(1)
            elif input_size is not None and index in (2, 3):
                dims.append(int(input_size[index - 2]))
            else:
                raise ValueError(
                    f'graph input {value.name!r} has a dynamic dimension '
                    f'{index} ({dim.dim_param or "?"}); pass input_size '
                    f'(H, W) to measure the graph at one size')
        dtype = onnx.helper.tensor_dtype_to_np_dtype(
            value.type.tensor_type.elem_type)
        feeds[value.name] = rng.standard_normal(dims).astype(dtype)
    return feeds


def tensor_types(model, input_size: Optional[Sequence[int]] = None
                 ) -> Tuple[Dict[str, Tuple[Tuple[int, ...], np.dtype]],
                            str]:
    """Shape and element type of every activation of ``model``.

    ``onnx.shape_inference`` first (with the graph input's dynamic
    dimensions fixed: batch 1, H and W from ``input_size``); the tensors it
    leaves unknown are read from one run of the graph on a random input.

    Args:
        model (onnx.ModelProto): The graph (e.g. from
            :func:`optimized_graph`).
        input_size (Sequence[int], optional): (H, W) for a graph input
            whose height and width are dynamic.

    Returns:
        tuple: ({name: (shape, numpy dtype)}, 'inference' or
        'inference+run').

    Raises:
        ValueError: if the input has a dynamic dimension other than the
            batch and ``input_size`` does not fix it.
    """
    onnx = import_onnx()
    from onnx import helper, shape_inference
    graph = model.graph
    weights = _weight_names(graph)
    feeds = _random_feeds(graph, weights, input_size)
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for value in fixed.graph.input:
        if value.name in feeds:
            shape = value.type.tensor_type.shape
            del shape.dim[:]
            for size in feeds[value.name].shape:
                shape.dim.add().dim_value = size
    inferred = shape_inference.infer_shapes(fixed, strict_mode=False)
    known = {}
    for value in (list(inferred.graph.input) + list(inferred.graph.value_info)
                  + list(inferred.graph.output)):
        dims = _dims(value.type)
        elem = value.type.tensor_type.elem_type
        if dims is not None and elem:
            known[value.name] = (dims, helper.tensor_dtype_to_np_dtype(elem))
    missing = [name for name in _activation_names(graph)
               if name not in known]
    if not missing:
        return known, 'inference'
    ort = import_onnxruntime()
    probe = onnx.ModelProto()
    probe.CopyFrom(fixed)
    outputs = {value.name for value in probe.graph.output}
    for name in missing:
        if name not in outputs:
            probe.graph.output.append(helper.ValueInfoProto(name=name))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.\
        ORT_DISABLE_ALL
    session = ort.InferenceSession(probe.SerializeToString(),
                                   sess_options=options,
                                   providers=['CPUExecutionProvider'])
    values = session.run(missing, feeds)
    for name, value in zip(missing, values):
        known[name] = (tuple(value.shape), value.dtype)
    return known, 'inference+run'


def execution_order(graph) -> List[int]:
    """Indices of ``graph.node`` in execution order: the graph's own order
    where it is topological (onnxruntime writes its optimised graph so),
    else a stable topological sort of it."""
    available = set(_weight_names(graph)) | {i.name for i in graph.input}
    available.add('')
    ordered = True
    for node in graph.node:
        if any(name not in available for name in node.input):
            ordered = False
            break
        available.update(node.output)
    if ordered:
        return list(range(len(graph.node)))
    producer = {}
    for index, node in enumerate(graph.node):
        for name in node.output:
            producer[name] = index
    waiting = [0] * len(graph.node)
    readers = defaultdict(list)
    for index, node in enumerate(graph.node):
        deps = {producer[name] for name in node.input if name in producer}
        waiting[index] = len(deps)
        for dep in deps:
            readers[dep].append(index)
    order = []
    ready = [i for i, count in enumerate(waiting) if count == 0]
    while ready:
        index = min(ready)
        ready.remove(index)
        order.append(index)
        for reader in readers[index]:
            waiting[reader] -= 1
            if waiting[reader] == 0:
                ready.append(reader)
    if len(order) != len(graph.node):
        raise ValueError('the graph has a cycle or reads a tensor no node '
                         'makes; it is not a valid ONNX graph')
    return order


def _quantized_boundary(graph, weights: set) -> Tuple[Dict[str, str], set]:
    """For ``quantized_io``: {float input: the int8 tensor that replaces
    it} and the output DequantizeLinear nodes to leave out."""
    readers = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            readers[name].append(node)
    replaced = {}
    for value in graph.input:
        if value.name in weights:
            continue
        nodes = readers[value.name]
        if nodes and all(n.op_type == 'QuantizeLinear' and
                         n.input[0] == value.name for n in nodes):
            replaced[value.name] = [n.output[0] for n in nodes]
    outputs = {value.name for value in graph.output}
    dropped = set()
    for index, node in enumerate(graph.node):
        if (node.op_type == 'DequantizeLinear' and node.output[0] in outputs
                and len(readers[node.output[0]]) == 0):
            dropped.add(index)
    return replaced, dropped


def graph_memory(model,
                 input_size: Optional[Sequence[int]] = None,
                 quantized_io: Optional[bool] = None,
                 level: str = 'disable',
                 int8_device: bool = False) -> DeployedMemory:
    """Walk ``model`` as it is (no further optimisation) and account its
    activation memory; see the module docstring for the rules.

    Args:
        model (str | bytes | onnx.ModelProto): The graph.
        input_size (Sequence[int], optional): (H, W) for a dynamic-size
            input.
        quantized_io (bool, optional): Count the input and outputs
            quantised where the graph quantises them. Default: None, which
            does so whenever the graph input feeds only QuantizeLinear.
        level (str): Recorded in the result only. Default: 'disable'.
        int8_device (bool): Account the graph as a runtime with an int8
            kernel for every operator would hold it: every activation one
            byte per element, QuantizeLinear and DequantizeLinear free
            (their output is their input). onnxruntime's CPU kernels leave
            some operators of a QDQ model in float (those without an int8
            kernel, and convolutions whose QDQ pattern it does not
            convert); this figure does not depend on which. Default: False.

    Returns:
        DeployedMemory
    """
    proto = _load(model)
    graph = proto.graph
    weights = _weight_names(graph)
    types, shapes_from = tensor_types(proto, input_size)
    replaced, dropped = _quantized_boundary(graph, weights)
    if quantized_io is None:
        quantized_io = bool(replaced) or int8_device
    if not quantized_io or int8_device:
        replaced, dropped = {}, set()
    skipped_nodes = set(dropped)
    for index, node in enumerate(graph.node):
        if (node.op_type == 'QuantizeLinear' and node.input
                and node.input[0] in replaced):
            skipped_nodes.add(index)
    # int8_device: a Q/DQ output is the tensor it converts.
    alias = {}
    if int8_device:
        for index, node in enumerate(graph.node):
            if node.op_type in _QDQ_OPS and node.input[0] not in weights:
                alias[node.output[0]] = node.input[0]
                skipped_nodes.add(index)

    def root(name: str) -> str:
        while name in alias:
            name = alias[name]
        return name

    def nbytes(name: str) -> int:
        shape, dtype = types[name]
        size = 1 if int8_device else np.dtype(dtype).itemsize
        return int(np.prod(shape, dtype=np.int64)) * size

    input_tensors = []
    for value in graph.input:
        if value.name not in weights:
            input_tensors += replaced.get(value.name, [value.name])
    order = [i for i in execution_order(graph) if i not in skipped_nodes]
    kept_outputs = {root(value.name) for value in graph.output}
    for index in dropped:
        kept_outputs.discard(graph.node[index].output[0])
        kept_outputs.add(graph.node[index].input[0])

    born, last, producer = {}, {}, {}
    for name in input_tensors:
        born[name], last[name], producer[name] = 0, 0, GRAPH_INPUT
    nodes = []
    for step, index in enumerate(order):
        node = graph.node[index]
        nodes.append((node.name, node.op_type if node.domain in ('', 'ai.onnx')
                      else f'{node.domain}.{node.op_type}'))
        for name in map(root, node.input):
            if name in born:
                last[name] = step
        for name in map(root, node.output):
            if name and name not in weights and name not in born:
                born[name], last[name] = step, step
                producer[name] = node.name or node.op_type
    final = len(order) - 1
    for name in kept_outputs:
        if name in born:
            last[name] = max(last[name], final)
    delta = [0] * (len(order) + 1)
    for name in born:
        delta[born[name]] += nbytes(name)
        delta[last[name] + 1] -= nbytes(name)
    live_bytes, total = [], 0
    for change in delta[:-1]:
        total += change
        live_bytes.append(total)
    if not live_bytes:
        return DeployedMemory(level, quantized_io, [], [], 0, -1,
                              shapes_from=shapes_from,
                              int8_device=int8_device)
    peak_step = max(range(len(live_bytes)), key=live_bytes.__getitem__)
    live = [LiveTensor(name, tuple(types[name][0]),
                       'int8' if int8_device else
                       np.dtype(types[name][1]).name, nbytes(name),
                       producer[name])
            for name in born if born[name] <= peak_step <= last[name]]
    live.sort(key=lambda tensor: (-tensor.nbytes, tensor.name))
    return DeployedMemory(
        level=level, quantized_io=quantized_io, nodes=nodes,
        live_bytes=live_bytes, peak_bytes=live_bytes[peak_step],
        peak_step=peak_step, live_at_peak=live,
        input_bytes=sum(nbytes(name) for name in input_tensors),
        input_bytes_at_peak=sum(t.nbytes for t in live
                                if t.producer == GRAPH_INPUT),
        shapes_from=shapes_from, int8_device=int8_device)


def deployed_memory(model: Union[str, bytes, object],
                    level: str = DEFAULT_LEVEL,
                    input_size: Optional[Sequence[int]] = None,
                    quantized_io: Optional[bool] = None,
                    save_optimized: Optional[str] = None,
                    int8_device: bool = False) -> DeployedMemory:
    """Peak activation memory of the graph onnxruntime runs for ``model``
    (float32 or int8 QDQ, as ``tools/export_onnx.py`` writes them).

    Args:
        model (str | bytes | onnx.ModelProto): The exported model.
        level (str): onnxruntime optimisation level, one of
            :data:`OPTIMIZATION_LEVELS`. Default: :data:`DEFAULT_LEVEL`.
        input_size (Sequence[int], optional): (H, W) for a model exported
            with dynamic height and width.
        quantized_io (bool, optional): See :func:`graph_memory`.
        int8_device (bool): See :func:`graph_memory`. Default: False.
        save_optimized (str, optional): Also write the optimised graph
            there (atomically).

    Returns:
        DeployedMemory: Peak in bytes, the node there, the tensors live
        there and the input's share.

    Raises:
        FileNotFoundError: if ``model`` is a path that does not exist.
        ValueError: for an unknown level, or a dynamic input size without
            ``input_size``.
    """
    optimized = optimized_graph(model, level)
    if save_optimized:
        with atomic_open(save_optimized, 'wb') as f:
            f.write(optimized.SerializeToString())
    return graph_memory(optimized, input_size, quantized_io, level,
                        int8_device)


def _kib(nbytes: int) -> str:
    return f'{nbytes / 1024:.1f}'


def _accounting(result: DeployedMemory) -> str:
    if result.int8_device:
        return 'every activation int8'
    return ('int8 input/output' if result.quantized_io else
            'input/output as in the graph')


def deployed_memory_text(result: DeployedMemory, title: str = '',
                         top: int = 6) -> str:
    """A few lines for the terminal: the peak, the node there, the input's
    share and the largest tensors live there."""
    lines = [f'{title + ": " if title else ""}deployed peak '
             f'{_kib(result.peak_bytes)} KiB at {result.peak_node} (node '
             f'{result.peak_step + 1} of {len(result.nodes)}, onnxruntime '
             f'level {result.level!r}, '
             f'{_accounting(result)});'
             f' input {_kib(result.input_bytes)} KiB = '
             f'{100 * result.input_share:.0f}% of the peak']
    for tensor in result.live_at_peak[:top]:
        shape = 'x'.join(str(d) for d in tensor.shape)
        lines.append(f'  {_kib(tensor.nbytes):>8} KiB  {tensor.dtype:<7} '
                     f'{shape:<16} {tensor.name} (from {tensor.producer})')
    if len(result.live_at_peak) > top:
        rest = sum(t.nbytes for t in result.live_at_peak[top:])
        lines.append(f'  {_kib(rest):>8} KiB  in '
                     f'{len(result.live_at_peak) - top} more tensors')
    return '\n'.join(lines) + '\n'
