"""ONNX export of a config's backbone or detector, with a parity check
against PyTorch (``tools/export_onnx.py``).

The detector is exported in mmdet's tensor mode: backbone, neck and head up
to the head's raw outputs (for SSD, the class scores and box deltas of every
level). Box decoding and NMS stay in Python, where
:class:`~sapool_mmdet.deploy.runtime.ONNXRuntimeDetector` runs the config's
own ``head.predict_by_feat`` on the onnxruntime outputs.

Export uses torch's TorchScript-based exporter (``dynamo=False``): it needs
only the ``onnx`` package, and it turns ``scaled_dot_product_attention``
into plain ONNX operators (MatMul, Softmax) from opset 14 on.
"""
import inspect
import io
import os
import os.path as osp
import warnings
from dataclasses import asdict, dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn as nn

from ..analysis.config import (SCOPES, build_from_config, check_input_size,
                               infer_input_size, input_size_divisor,
                               load_config)
from ..checkpoint import load_weights as load_checked_weights
from ..fileio import atomic_open
from ..pooling import POOLING, build_pooling
from .graph import (INPUT_NAME, create_session, flatten_outputs,
                    group_outputs, output_groups, output_names,
                    read_metadata, set_metadata)
from .requirements import import_onnx

__all__ = [
    'DEFAULT_OPSET', 'OPSET_RANGE', 'PARITY_TOLERANCE', 'INPUT_NAME',
    'ExportResult', 'UnexportableLayer', 'find_unexportable',
    'check_exportable', 'exportable_pooling_methods', 'output_groups',
    'output_names', 'group_outputs', 'read_metadata', 'export_module',
    'export_onnx', 'check_output_path', 'FlatOutputs', 'load_weights',
    'max_abs_difference'
]

DEFAULT_OPSET = 17
# 14: the first opset the exporter writes scaled_dot_product_attention for;
# 20: the last one torch's TorchScript-based exporter writes.
OPSET_RANGE = (14, 20)
PARITY_TOLERANCE = 1e-4
# A dynamic export is checked at (H + 5 d, W + 3 d), d the size divisor:
# odd multiples of d, so shape-dependent branches the tracer fixed (padding
# to a patch size, odd edge windows) show up.
DYNAMIC_CHECK_STEPS = (5, 3)


@dataclass
class UnexportableLayer:
    """A layer onnxruntime cannot run once exported.

    Attributes:
        name (str): Module name in the exported model.
        method (str): The registered pooling method that holds it (its own
            class name when no pooling holds it).
        operator (str): What cannot be exported, and why.
    """
    name: str
    method: str
    operator: str


@dataclass
class ExportResult:
    """What :func:`export_module` / :func:`export_onnx` wrote.

    Attributes:
        path (str): The ONNX file.
        scope (str): 'backbone' or 'detector'.
        input_size (tuple[int, int]): (H, W) of the traced input.
        opset (int): ONNX opset.
        dynamic_batch (bool): The batch dimension is dynamic.
        dynamic_spatial (bool): H and W are dynamic.
        output_names (list[str]): Graph outputs, in order.
        num_bytes (int): File size.
        max_abs_diff (float, optional): Largest absolute difference between
            the float32 onnxruntime outputs and PyTorch's (``verify``).
        int8 (bool): The file is the int8 (QDQ) model.
        int8_correlation (dict, optional): Pearson correlation of each int8
            output with the float32 model's on the first calibration image.
        notes (list[str]): What the export decided on its own (e.g. a fixed
            spatial size).
    """
    path: str
    scope: str
    input_size: Tuple[int, int]
    opset: int
    dynamic_batch: bool
    dynamic_spatial: bool
    output_names: List[str]
    num_bytes: int
    max_abs_diff: Optional[float] = None
    int8: bool = False
    int8_correlation: Optional[Dict[str, float]] = None
    notes: List[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def _deformable_conv_types() -> Dict[type, str]:
    """mmcv layers whose ONNX form is a custom mmcv operator."""
    from mmcv.ops import DeformConv2d, ModulatedDeformConv2d
    return {
        ModulatedDeformConv2d:
        'mmcv.ops.ModulatedDeformConv2d (modulated deformable convolution, '
        'DCNv2), which exports only as the custom operator '
        'mmcv::MMCVModulatedDeformConv2d that onnxruntime has no kernel for',
        DeformConv2d:
        'mmcv.ops.DeformConv2d (deformable convolution), which exports only '
        'as the custom operator mmcv::MMCVDeformConv2d that onnxruntime has '
        'no kernel for',
    }


def find_unexportable(model: nn.Module) -> List[UnexportableLayer]:
    """Layers of ``model`` that onnxruntime could not run once exported.

    Args:
        model (nn.Module): A backbone, a detector, or one pooling module.

    Returns:
        list[UnexportableLayer]: Empty when everything exports.
    """
    types = _deformable_conv_types()
    pooling_classes = tuple(POOLING.module_dict.values())
    pools = {name: type(module).__name__
             for name, module in model.named_modules()
             if isinstance(module, pooling_classes)}
    found = []
    for name, module in model.named_modules():
        operator = next((text for cls, text in types.items()
                         if isinstance(module, cls)), None)
        if operator is None:
            continue
        owners = [pool for pool in pools
                  if pool == '' or name == pool or name.startswith(pool + '.')]
        method = (pools[max(owners, key=len)] if owners else
                  type(module).__name__)
        found.append(UnexportableLayer(name or type(model).__name__, method,
                                       operator))
    return found


def exportable_pooling_methods() -> List[str]:
    """Registered pooling methods whose default build exports."""
    return [name for name in sorted(POOLING.module_dict)
            if not find_unexportable(build_pooling(dict(type=name), 16, 2))]


def check_exportable(model: nn.Module) -> None:
    """Raise ValueError naming the pooling method and the operator if
    :func:`find_unexportable` finds anything."""
    found = find_unexportable(model)
    if not found:
        return
    methods = sorted({layer.method for layer in found})
    first = found[0]
    raise ValueError(
        f'cannot export to ONNX: pooling method {", ".join(methods)} '
        f'({len(found)} layer(s), e.g. {first.name}) uses {first.operator}; '
        f'nothing was written. Methods that export: '
        f'{", ".join(exportable_pooling_methods())}')


def check_output_path(path: str) -> None:
    """Raise if ``path`` cannot be written: it is a folder, or a part of
    its folder exists as a file. A missing folder is made when the file is
    written (after every check), so a refused export leaves none."""
    folder = osp.dirname(osp.abspath(path))
    existing = folder
    while not osp.exists(existing):
        existing = osp.dirname(existing)
    if not osp.isdir(existing):
        raise NotADirectoryError(
            f'cannot write {path!r}: {existing!r} is a file, not a folder')
    if osp.isdir(path):
        raise IsADirectoryError(
            f'output path {path!r} is a folder; give a file name such as '
            f'{osp.join(path, "model.onnx")!r}')


class FlatOutputs(nn.Module):
    """A backbone (``forward(x)``) or a detector in mmdet's tensor mode with
    its outputs flattened into one tuple, the form of an ONNX graph."""

    def __init__(self, model: nn.Module, tensor_mode: bool) -> None:
        super().__init__()
        self.model = model
        self.tensor_mode = tensor_mode
        # The exporter restores the wrapper's training flag afterwards, and
        # with it the model's: keep both in eval mode.
        self.train(False)

    def raw(self, inputs: torch.Tensor):
        if self.tensor_mode:
            return self.model(inputs, None, mode='tensor')
        return self.model(inputs)

    def forward(self, inputs: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        return flatten_outputs(self.raw(inputs))


def _trace_to_onnx(model: nn.Module, inputs: torch.Tensor, names: List[str],
                   opset: int, dynamic_axes: Optional[dict]) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The tracer warns wherever Python reads a shape; the export is
        # checked against PyTorch at a second input size instead.
        warnings.simplefilter('ignore', torch.jit.TracerWarning)
        warnings.filterwarnings('ignore', category=DeprecationWarning)
        warnings.filterwarnings('ignore', category=UserWarning)
        try:
            torch.onnx.export(
                model, (inputs, ), buffer, dynamo=False,
                opset_version=opset, input_names=[INPUT_NAME],
                output_names=names, dynamic_axes=dynamic_axes,
                do_constant_folding=True)
        except Exception as error:
            raise RuntimeError(
                f'torch.onnx could not export the model at opset {opset}: '
                f'{error}') from error
    return buffer.getvalue()


def _dynamic_axes(names: List[str], spatial: bool) -> dict:
    axes = {INPUT_NAME: {0: 'batch', 2: 'height', 3: 'width'}
            if spatial else {0: 'batch'}}
    for name in names:
        axes[name] = ({0: 'batch', 2: f'{name}_height', 3: f'{name}_width'}
                      if spatial else {0: 'batch'})
    return axes


def max_abs_difference(session, model: nn.Module,
                       inputs: torch.Tensor) -> float:
    """Largest absolute difference between the outputs of an onnxruntime
    session and of ``model`` (flat outputs) on ``inputs``.

    Raises:
        ValueError: if the outputs differ in number or shape.
    """
    with torch.no_grad():
        expected = model(inputs)
    got = session.run(None, {INPUT_NAME: inputs.numpy()})
    if len(got) != len(expected):
        raise ValueError(f'the ONNX model returns {len(got)} outputs, '
                         f'PyTorch {len(expected)}')
    worst = 0.0
    for ours, theirs in zip(got, expected):
        if tuple(ours.shape) != tuple(theirs.shape):
            raise ValueError(f'an ONNX output has shape {tuple(ours.shape)}, '
                             f'PyTorch\'s {tuple(theirs.shape)}')
        if ours.size:
            worst = max(worst,
                        float(np.abs(ours - theirs.numpy()).max()))
    return worst


def _random_input(batch: int, size: Tuple[int, int],
                  seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, *size, generator=generator)


def _runs_at(model: nn.Module, inputs: torch.Tensor) -> bool:
    try:
        with torch.no_grad():
            model(inputs)
    except (RuntimeError, ValueError, IndexError):
        return False
    return True


def _check_opset(opset: int) -> int:
    low, high = OPSET_RANGE
    if isinstance(opset, bool) or not isinstance(opset, int) or \
            not low <= opset <= high:
        raise ValueError(f'opset must be an integer from {low} to {high}, '
                         f'got {opset!r}')
    return opset


def export_module(model: nn.Module,
                  out: str,
                  input_size: Sequence[int],
                  *,
                  tensor_mode: bool = False,
                  group_names: Sequence[str] = ('feats', ),
                  dynamic: bool = False,
                  opset: int = DEFAULT_OPSET,
                  verify: bool = False,
                  metadata: Optional[Dict[str, object]] = None,
                  quantize=None,
                  size_divisor: int = 1) -> ExportResult:
    """Export a backbone (``model(x)`` returning a tensor or a tuple of
    tensors) or an mmdet detector in tensor mode to an ONNX file.

    The file is written atomically and only once everything passed:
    ``onnx.checker``, and with ``verify`` the parity check; on any error
    nothing is written.

    Args:
        model (nn.Module): The model; it is put in eval mode.
        out (str): ONNX file to write; its folder must exist.
        input_size (Sequence[int]): (H, W) of the traced input (batch 1,
            3 channels).
        tensor_mode (bool): ``model`` is a detector: call it as
            ``model(x, None, mode='tensor')``. Default: False.
        group_names (Sequence[str]): Names of the returned items (the
            head's ``predict_by_feat`` arguments for a detector); a list
            item becomes outputs ``<name>_<level>``. A backbone's tuple of
            feature maps is one group. Default: ('feats',).
        dynamic (bool): Dynamic batch, and dynamic height and width if the
            traced graph reproduces PyTorch at another size (checked);
            otherwise the spatial size stays fixed and a note says so.
            Default: False.
        opset (int): ONNX opset, 14 to 20. Default: 17.
        verify (bool): Compare the onnxruntime outputs with PyTorch's on a
            random input and refuse to write if any absolute difference
            exceeds 1e-4. Default: False.
        metadata (dict, optional): Stored (as JSON) in the file's
            ``metadata_props`` under ``sapool_mmdet.<key>``.
        quantize (callable, optional): ``quantize(float_bytes) -> (bytes,
            correlation)``: writes the returned (int8) model instead.
        size_divisor (int): The model only ever sees H and W that are
            multiples of this (the data preprocessor's padding); the
            dynamic-size check uses such a size. Default: 1.

    Returns:
        ExportResult: What was written.

    Raises:
        ValueError: on an unexportable layer, a bad opset, an input size
            the model cannot take, or a failed parity check.
        NotADirectoryError: if a part of the folder of ``out`` is a file.
    """
    onnx = import_onnx()
    check_output_path(out)
    opset = _check_opset(opset)
    height, width = check_input_size(list(input_size))
    check_exportable(model)
    wrapped = FlatOutputs(model, tensor_mode)
    inputs = _random_input(1, (height, width))
    try:
        with torch.no_grad():
            raw = wrapped.raw(inputs)
    except (RuntimeError, ValueError, IndexError) as error:
        raise ValueError(f'the model cannot take a {height}x{width} input: '
                         f'{error}') from error
    if isinstance(raw, torch.Tensor):
        raw = (raw, )
    if tensor_mode:
        groups = output_groups(raw, group_names)
    else:
        groups = [[group_names[0], len(raw)]]
    names = output_names(groups)

    notes = []
    dynamic_spatial = dynamic
    onnx_bytes = _trace_to_onnx(
        wrapped, inputs, names, opset,
        _dynamic_axes(names, spatial=True) if dynamic else None)
    if dynamic:
        other_size = (height + DYNAMIC_CHECK_STEPS[0] * size_divisor,
                      width + DYNAMIC_CHECK_STEPS[1] * size_divisor)
        other = _random_input(2, other_size, seed=1)
        if not _spatial_export_holds(onnx_bytes, wrapped, other):
            dynamic_spatial = False
            notes.append(
                f'height and width are fixed at {height}x{width}: the graph '
                f'traced there does not reproduce PyTorch at '
                f'{other_size[0]}x{other_size[1]} (shape-dependent Python '
                f'code in the model, e.g. padding to a patch size only where '
                f'needed); the batch stays dynamic')
            onnx_bytes = _trace_to_onnx(wrapped, inputs, names, opset,
                                        _dynamic_axes(names, spatial=False))
    # Loading the graph checks that onnxruntime has a kernel for every node.
    session = create_session(onnx_bytes)
    max_abs_diff = None
    if verify:
        max_abs_diff = max_abs_difference(session, wrapped, inputs)
        if dynamic:
            check = _random_input(2, (height, width), seed=2)
            max_abs_diff = max(max_abs_diff,
                               max_abs_difference(session, wrapped, check))
        if not max_abs_diff <= PARITY_TOLERANCE:
            raise ValueError(
                f'parity check failed: the ONNX outputs differ from '
                f'PyTorch\'s by up to {max_abs_diff:.3g} (tolerance '
                f'{PARITY_TOLERANCE:g}); nothing was written')

    correlation = None
    if quantize is not None:
        onnx_bytes, correlation = quantize(onnx_bytes)
    proto = onnx.load_from_string(onnx_bytes)
    set_metadata(proto, dict(
        metadata or {}, scope='detector' if tensor_mode else 'backbone',
        input_size=[height, width], output_groups=groups,
        dynamic_batch=dynamic, dynamic_spatial=dynamic_spatial,
        int8=quantize is not None))
    onnx.checker.check_model(proto)
    data = proto.SerializeToString()
    os.makedirs(osp.dirname(osp.abspath(out)), exist_ok=True)
    with atomic_open(out, 'wb') as f:
        f.write(data)
    return ExportResult(
        path=out, scope='detector' if tensor_mode else 'backbone',
        input_size=(height, width), opset=opset, dynamic_batch=dynamic,
        dynamic_spatial=dynamic_spatial, output_names=names,
        num_bytes=len(data), max_abs_diff=max_abs_diff,
        int8=quantize is not None, int8_correlation=correlation,
        notes=notes)


def _spatial_export_holds(onnx_bytes: bytes, model: nn.Module,
                          inputs: torch.Tensor) -> bool:
    """Whether a dynamic-size export reproduces PyTorch on ``inputs``."""
    if not _runs_at(model, inputs):
        return False
    try:
        # A failure here is an answer, not an error to log.
        session = create_session(onnx_bytes, log_severity=4)
        return max_abs_difference(session, model,
                                  inputs) <= PARITY_TOLERANCE
    except Exception:  # onnxruntime raises its own exception types
        return False


def _head_output_names(detector: nn.Module) -> List[str]:
    """The leading arguments of the head's ``predict_by_feat``: the names of
    what its ``forward`` returns (``cls_scores``, ``bbox_preds`` ...)."""
    names = []
    signature = inspect.signature(detector.bbox_head.predict_by_feat)
    for name in signature.parameters:
        if name == 'batch_img_metas':
            break
        names.append(name)
    return names


def load_weights(detector: nn.Module, checkpoint: str, config: str) -> None:
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint file {checkpoint!r} not found')
    try:
        load_checked_weights(detector, checkpoint)
    except Exception as error:
        raise ValueError(
            f'cannot load checkpoint {checkpoint!r} into the model of '
            f'{config!r}: {error}') from error


def export_onnx(config: str,
                checkpoint: str,
                out: str,
                input_size: Optional[Sequence[int]] = None,
                scope: str = 'detector',
                dynamic: bool = False,
                opset: int = DEFAULT_OPSET,
                verify: bool = False,
                int8: bool = False,
                calib_images: Optional[str] = None,
                calib_count: int = 100,
                cfg_options: Optional[dict] = None) -> ExportResult:
    """Export a config's detector (tensor mode) or backbone with trained
    weights to ONNX; optionally quantise it to int8.

    Args:
        config (str): mmdet config file.
        checkpoint (str): Checkpoint of that config's detector.
        out (str): ONNX file to write (atomically); its folder must exist.
        input_size (Sequence[int], optional): (H, W). Default: the config's
            test size (see :func:`~sapool_mmdet.analysis.infer_input_size`).
        scope (str): 'detector' (backbone, neck and head, raw head outputs)
            or 'backbone'. Default: 'detector'.
        dynamic (bool): See :func:`export_module`. Default: False.
        opset (int): ONNX opset, 14 to 20. Default: 17.
        verify (bool): Parity check of the float32 export (max abs
            difference <= 1e-4). Default: False.
        int8 (bool): Write the statically quantised model (QDQ, per-channel
            int8 weights) calibrated on ``calib_images``. Default: False.
        calib_images (str, optional): Folder of calibration images, run
            through the config's test pipeline. Required with ``int8``.
        calib_count (int): Calibration images used (the first in name
            order). Default: 100.
        cfg_options (dict, optional): Config overrides, as mmdet's
            ``--cfg-options``.

    Returns:
        ExportResult: What was written.
    """
    import_onnx()
    if scope not in SCOPES:
        raise ValueError(f'scope must be one of {SCOPES}, got {scope!r}')
    check_output_path(out)
    _check_opset(opset)
    cfg = load_config(config, cfg_options)
    if int8 and not calib_images:
        raise ValueError('int8 quantisation needs calibration images: pass '
                         'a folder of images (--calib-images DIR)')
    size = (check_input_size(list(input_size), cfg, repr(config))
            if input_size is not None else infer_input_size(cfg))
    divisor = input_size_divisor(cfg)
    if not osp.isfile(checkpoint):
        raise FileNotFoundError(f'checkpoint file {checkpoint!r} not found')
    detector = build_from_config(cfg, 'detector')
    if scope == 'detector':
        from mmdet.models.detectors import SingleStageDetector
        if not isinstance(detector, SingleStageDetector):
            raise ValueError(
                f'--scope detector exports single-stage detectors (SSD, '
                f'YOLOv3, RetinaNet...: one dense head whose raw outputs '
                f'predict_by_feat decodes); {type(detector).__name__} runs '
                f'proposal NMS between its stages. Export its backbone with '
                f'--scope backbone')
    check_exportable(detector.backbone if scope == 'backbone' else detector)
    load_weights(detector, checkpoint, config)

    quantize = None
    if int8:
        from .quantize import load_calibration_inputs, quantize_int8
        calibration = load_calibration_inputs(cfg, calib_images, calib_count,
                                              size)

        def quantize(float_bytes: bytes):
            return quantize_int8(float_bytes, calibration)

    metadata = dict(config=osp.basename(config),
                    checkpoint=osp.basename(checkpoint), opset=opset)
    if scope == 'detector':
        return export_module(
            detector, out, size, tensor_mode=True,
            group_names=_head_output_names(detector), dynamic=dynamic,
            opset=opset, verify=verify, metadata=metadata, quantize=quantize,
            size_divisor=divisor)
    return export_module(detector.backbone, out, size, dynamic=dynamic,
                         opset=opset, verify=verify, metadata=metadata,
                         quantize=quantize, size_divisor=divisor)
