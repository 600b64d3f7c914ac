"""Which implementation runs mmcv's ops: compiled mmcv, torchvision or the
plain PyTorch of this package.

mmcv's Python op modules (``mmcv/ops/nms.py``, ``roi_align.py``,
``modulated_deform_conv.py``) keep the argument handling, batching and
autograd wiring, and call the compiled extension through a module global,
``ext_module`` (``mmcv.utils.ext_loader.load_ext('_ext', ...)``). An
mmcv without compiled ops (mmcv-lite) has no ``mmcv._ext``, so
``import mmcv.ops`` - and with it ``import mmdet.models`` - fails. We
provide an extension object, :class:`OpsExtension`, with the five kernels
our detectors need (``nms``, ``roi_align_forward/backward``,
``modulated_deform_conv_forward/backward``) in mmcv's calling convention.
Without compiled ops it is registered as ``mmcv._ext`` before ``mmcv.ops``
is imported, so every mmcv op module imports; any other op raises, when it
is called, an error naming it and how to get mmcv's compiled ops. With
compiled ops, nothing changes unless another backend is asked for; then it
replaces ``ext_module`` in the three op modules, the other ops keep
mmcv's kernels.

The backend is chosen once, when :mod:`sapool_mmdet` is imported, from the
environment variable ``SAPOOL_MMCV_OPS`` (``mmcv``, ``torchvision``,
``pytorch`` or unset for automatic) and can be switched later with
:func:`set_mmcv_ops_backend`.
"""
import importlib
import importlib.util
import importlib.machinery
import os
import sys
import types
from contextlib import contextmanager
from typing import Callable, Iterator, Optional

import torch

from .deform_conv import modulated_deform_conv2d
from .nms import nms
from .roi_align import roi_align, roi_align_max_backward

__all__ = [
    'BACKENDS', 'ENV_VAR', 'OpsExtension', 'compiled_mmcv_ext',
    'torchvision_ops_error', 'resolve_backend', 'require_mmcv',
    'install_mmcv_ops',
    'set_mmcv_ops_backend', 'get_mmcv_ops_backend', 'mmcv_ops_backend'
]

ENV_VAR = 'SAPOOL_MMCV_OPS'
BACKENDS = ('mmcv', 'torchvision', 'pytorch')
# the mmcv.ops modules whose ``ext_module`` a backend provides
OP_MODULES = ('mmcv.ops.nms', 'mmcv.ops.roi_align',
              'mmcv.ops.modulated_deform_conv')
HOW_TO_GET_COMPILED_OPS = (
    'mmcv with compiled ops: `make install MMCV=full` in a sapool-mmdet '
    'checkout, or `MMCV_WITH_OPS=1 pip install --no-build-isolation '
    '"mmcv>=2.0.0rc4,<2.2.0"` (builds from source; needs a C++ compiler), '
    'see docs/installation.md')

_state = dict(backend=None, compiled=None, compiled_checked=False)


def compiled_mmcv_ext() -> Optional[types.ModuleType]:
    """mmcv's compiled extension, or None where mmcv has none (mmcv-lite)
    or it does not load (built for another torch)."""
    if not _state['compiled_checked']:
        _state['compiled_checked'] = True
        existing = sys.modules.get('mmcv._ext')
        if isinstance(existing, OpsExtension):
            _state['compiled'] = existing.fallback
        elif importlib.util.find_spec('mmcv') is not None:
            try:
                _state['compiled'] = importlib.import_module('mmcv._ext')
            except ImportError:
                _state['compiled'] = None
    return _state['compiled']


def torchvision_ops_error() -> Optional[str]:
    """None where ``torchvision.ops`` imports and its compiled ops run,
    else why not (e.g. a torchvision wheel built for another torch)."""
    try:
        import torchvision.ops
        torchvision.ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5)
    except Exception as error:  # any failure means: do not use it
        return f'{type(error).__name__}: {error}'
    return None


def resolve_backend(requested: Optional[str] = None) -> str:
    """The backend to use: ``requested`` (or ``$SAPOOL_MMCV_OPS``) when
    given, else compiled mmcv where present, else torchvision where its ops
    load, else plain PyTorch.

    Raises:
        ValueError: for an unknown name.
        RuntimeError: when the requested backend is not available here.
    """
    if requested is None:
        requested = os.environ.get(ENV_VAR, '').strip().lower() or None
    if requested is None or requested == 'auto':
        if compiled_mmcv_ext() is not None:
            return 'mmcv'
        return 'torchvision' if torchvision_ops_error() is None \
            else 'pytorch'
    if requested not in BACKENDS:
        raise ValueError(f'{ENV_VAR}={requested!r} is not a backend for '
                         f"mmcv's ops; valid: {', '.join(BACKENDS)} "
                         '(or unset/auto)')
    if requested == 'mmcv' and compiled_mmcv_ext() is None:
        raise RuntimeError(
            f"{ENV_VAR}=mmcv asks for mmcv's compiled ops, but this mmcv has "
            f'none (mmcv-lite, or built for another torch). Install '
            f'{HOW_TO_GET_COMPILED_OPS}; or use {ENV_VAR}=pytorch')
    if requested == 'torchvision':
        error = torchvision_ops_error()
        if error is not None:
            raise RuntimeError(
                f'{ENV_VAR}=torchvision, but torchvision.ops does not load '
                f'here ({error}). Install the torchvision release built '
                f'for this torch, or use {ENV_VAR}=pytorch')
    return requested


class OpsExtension(types.ModuleType):
    """Stands in for ``mmcv._ext``: the kernels of mmcv's NMS, RoIAlign and
    modulated deformable convolution, in the compiled extension's calling
    convention (outputs written into tensors the caller allocated), run on
    torchvision or plain PyTorch.

    Args:
        backend (str): 'torchvision' or 'pytorch'.
        fallback (module, optional): mmcv's compiled extension, which runs
            every other op; None (mmcv-lite) makes other ops raise when
            called. Default: None.
    """

    def __init__(self, backend: str, fallback=None):
        super().__init__('mmcv._ext', 'mmcv ops on ' + backend)
        if backend not in ('torchvision', 'pytorch'):
            raise ValueError(f"OpsExtension backend must be 'torchvision' "
                             f"or 'pytorch', got {backend!r}")
        self.backend = backend
        self.fallback = fallback
        self.__spec__ = importlib.machinery.ModuleSpec('mmcv._ext', None)

    def __getattr__(self, name: str) -> Callable:
        if name.startswith('__'):
            raise AttributeError(name)
        if self.fallback is not None:
            return getattr(self.fallback, name)

        def unavailable(*args, **kwargs):
            raise NotImplementedError(
                f"mmcv op '{name}' needs mmcv's compiled ops, which this "
                f'environment does not have; sapool_mmdet runs only nms, '
                f'roi_align and modulated_deform_conv on {self.backend}. '
                f'For every op install {HOW_TO_GET_COMPILED_OPS}')

        unavailable.__name__ = name
        return unavailable

    def _refuse(self, what: str) -> None:
        raise NotImplementedError(
            f'{what} is not available in the torchvision backend of '
            f"mmcv's ops; set {ENV_VAR}=pytorch (plain PyTorch) or install "
            f'{HOW_TO_GET_COMPILED_OPS}')

    def nms(self, boxes, scores, iou_threshold: float, offset: int = 0):
        if self.backend == 'torchvision':
            if offset != 0:
                self._refuse(f'nms with offset={offset}')
            import torchvision.ops
            return torchvision.ops.nms(boxes, scores.to(boxes.dtype),
                                       iou_threshold)
        return nms(boxes, scores, iou_threshold, offset)

    def roi_align_forward(self, input, rois, output, argmax_y, argmax_x, *,
                          aligned_height, aligned_width, spatial_scale,
                          sampling_ratio, pool_mode, aligned):
        size = (aligned_height, aligned_width)
        if self.backend == 'torchvision':
            if pool_mode == 0:
                self._refuse("RoIAlign pool_mode='max'")
            import torchvision.ops
            output.copy_(torchvision.ops.roi_align(
                input, rois.to(input.dtype), size, spatial_scale,
                sampling_ratio, aligned))
            return
        result, best_y, best_x = roi_align(
            input, rois, size, spatial_scale, sampling_ratio,
            'max' if pool_mode == 0 else 'avg', aligned)
        output.copy_(result)
        if pool_mode == 0:
            argmax_y.copy_(best_y)
            argmax_x.copy_(best_x)

    def roi_align_backward(self, grad_output, rois, argmax_y, argmax_x,
                           grad_input, *, aligned_height, aligned_width,
                           spatial_scale, sampling_ratio, pool_mode, aligned):
        if pool_mode == 0:
            grad_input.copy_(roi_align_max_backward(
                grad_output, rois, argmax_y, argmax_x, grad_input.shape))
            return
        size = (aligned_height, aligned_width)
        # RoIAlign is linear in its input: the gradient is the same at any
        # input, and mmcv keeps only the input's shape for the backward.
        probe = grad_input.new_zeros(grad_input.shape, requires_grad=True)
        with torch.enable_grad():
            if self.backend == 'torchvision':
                import torchvision.ops
                output = torchvision.ops.roi_align(
                    probe, rois.to(probe.dtype), size, spatial_scale,
                    sampling_ratio, aligned)
            else:
                output = roi_align(probe, rois, size, spatial_scale,
                                   sampling_ratio, 'avg', aligned)[0]
            if not output.requires_grad:  # no RoI samples the map
                grad_input.zero_()
                return
            grad, = torch.autograd.grad(output, probe, grad_output)
        grad_input.copy_(grad)

    def _deform_conv(self, input, weight, bias, offset, mask, stride,
                     padding, dilation, group, deformable_group):
        if self.backend == 'torchvision':
            import torchvision.ops
            return torchvision.ops.deform_conv2d(
                input, offset, weight, bias, stride=stride, padding=padding,
                dilation=dilation, mask=mask)
        return modulated_deform_conv2d(input, offset, mask, weight, bias,
                                       stride, padding, dilation, group,
                                       deformable_group)

    def modulated_deform_conv_forward(
            self, input, weight, bias, ones, offset, mask, output, columns,
            *, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
            dilation_h, dilation_w, group, deformable_group, with_bias):
        output.copy_(self._deform_conv(
            input, weight, bias if with_bias else None, offset, mask,
            (stride_h, stride_w), (pad_h, pad_w), (dilation_h, dilation_w),
            group, deformable_group))

    def modulated_deform_conv_backward(
            self, input, weight, bias, ones, offset, mask, columns,
            grad_input, grad_weight, grad_bias, grad_offset, grad_mask,
            grad_output, *, kernel_h, kernel_w, stride_h, stride_w, pad_h,
            pad_w, dilation_h, dilation_w, group, deformable_group,
            with_bias):
        leaves = [t.detach().requires_grad_()
                  for t in (input, weight, offset, mask)]
        targets = [grad_input, grad_weight, grad_offset, grad_mask]
        if with_bias:
            leaves.append(bias.detach().requires_grad_())
            targets.append(grad_bias)
        with torch.enable_grad():
            output = self._deform_conv(
                leaves[0], leaves[1], leaves[4] if with_bias else None,
                leaves[2], leaves[3], (stride_h, stride_w), (pad_h, pad_w),
                (dilation_h, dilation_w), group, deformable_group)
            grads = torch.autograd.grad(output, leaves, grad_output)
        for target, grad in zip(targets, grads):
            target.copy_(grad)


def require_mmcv() -> None:
    """Raise a clear error where no mmcv (neither mmcv nor mmcv-lite) is
    installed.

    Raises:
        ImportError: naming both ways to install one.
    """
    if importlib.util.find_spec('mmcv') is None:
        raise ImportError(
            'sapool_mmdet needs mmcv 2.x (>=2.0.0rc4, <2.2.0), which is not '
            'installed. Without a compiler: `pip install "mmcv-lite==2.1.0"` '
            '(or `pip install -e ".[lite]"` in a sapool-mmdet checkout); '
            'the ops our detectors need then run on torchvision or plain '
            'PyTorch. With every compiled op: ' + HOW_TO_GET_COMPILED_OPS)


def install_mmcv_ops() -> str:
    """Make ``mmcv.ops`` importable and its NMS, RoIAlign and modulated
    deformable convolution run on the backend :func:`resolve_backend`
    picks. Called when :mod:`sapool_mmdet` is imported; a second call
    changes nothing.

    Returns:
        str: the backend now in use.

    Raises:
        ImportError: where no mmcv is installed at all.
        ValueError, RuntimeError: as :func:`resolve_backend`.
    """
    if _state['backend'] is not None:
        return _state['backend']
    require_mmcv()
    backend = resolve_backend()
    if compiled_mmcv_ext() is None and 'mmcv._ext' not in sys.modules:
        import mmcv
        extension = OpsExtension(backend)
        sys.modules['mmcv._ext'] = extension
        mmcv._ext = extension
    set_mmcv_ops_backend(backend)
    return backend


def set_mmcv_ops_backend(backend: str) -> str:
    """Switch the backend of mmcv's NMS, RoIAlign and modulated deformable
    convolution (e.g. to compare them, as the parity tests do).

    Args:
        backend (str): 'mmcv', 'torchvision' or 'pytorch'.

    Returns:
        str: the backend used before (None before the first install).

    Raises:
        ValueError, RuntimeError: as :func:`resolve_backend`.
    """
    backend = resolve_backend(backend)
    compiled = compiled_mmcv_ext()
    extension = compiled if backend == 'mmcv' else \
        OpsExtension(backend, fallback=compiled)
    for name in OP_MODULES:
        importlib.import_module(name).ext_module = extension
    previous, _state['backend'] = _state['backend'], backend
    return previous


def get_mmcv_ops_backend() -> Optional[str]:
    """The backend in use: 'mmcv', 'torchvision' or 'pytorch'."""
    return _state['backend']


@contextmanager
def mmcv_ops_backend(backend: str) -> Iterator[str]:
    """Run the ``with`` block on ``backend``, then switch back."""
    previous = set_mmcv_ops_backend(backend)
    try:
        yield backend
    finally:
        set_mmcv_ops_backend(previous)
