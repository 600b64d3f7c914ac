"""Fixes for known incompatibilities in the supported stack.

Applied once, when ``sapool_mmdet`` is imported. Each fix checks whether
the environment needs it, so the package works across the ranges it
declares (torch >= 2.0, numpy 1.x and 2.x, mmdet 3.x, mmengine < 1.0);
:data:`COMPAT_STATUS` records, per fix, whether it was applied or skipped
and why (``python -m sapool_mmdet`` prints it).

1. ``ssd_head_predict``: mmdet 3.3.0's
   ``BaseDenseHead._predict_by_feat_single`` reads
   ``self.loss_cls.custom_cls_channels``, but ``SSDHead`` computes its
   classification loss inline and never creates ``loss_cls``, so every SSD
   predict raises AttributeError (open-mmlab/mmdetection#11063, #11780).
   SSD has no custom-channel loss, so ``loss_cls = None`` gives the
   intended branch (softmax scores). Skipped where ``SSDHead`` already has
   the attribute.
2. ``checkpoint_safe_globals``: torch >= 2.6 loads checkpoints with
   ``weights_only=True``, which rejects the non-tensor objects mmengine
   stores in a checkpoint (``HistoryBuffer`` and numpy arrays/scalars in
   the message hub), so ``--resume`` and ``tools/test.py CKPT`` fail. We
   allow-list exactly those types; ``weights_only`` stays on, so loading a
   stranger's checkpoint still cannot run code. A ``HistoryBuffer`` also
   pickles its statistics methods as ``getattr(HistoryBuffer, 'mean')``;
   allow-listing the builtin ``getattr`` would open attribute access on
   anything, so the name ``builtins.getattr`` is mapped to
   :func:`history_buffer_statistic`, which resolves those methods and
   refuses everything else. numpy 2 moved ``numpy.core`` to
   ``numpy._core``; checkpoints written under either name load under
   both. Skipped where torch has no ``add_safe_globals`` (torch < 2.4,
   whose ``torch.load`` defaults to ``weights_only=False`` and needs no
   allow-list).
3. ``unreadable_images``: mmcv's ``LoadImageFromFile`` stops a run on an
   image file that exists but does not decode (empty, truncated, not an
   image) with ``AssertionError: failed to load image: PATH`` or the
   decoder's own error (``cv2.error`` for an empty file), which the tools
   cannot tell from a bug. It raises :class:`UnreadableImageError`
   (an ``OSError``, so the tools end in one line naming the file) instead;
   with the transform's ``ignore_empty=True`` it is skipped, as mmcv skips
   a file that cannot be read.
   Checking every image when the dataset is built would cost a full
   decode of the set; the dataset checks that each file exists.
"""
import logging
import pickle
from typing import Dict, List

import numpy as np
import torch
from mmdet.models.dense_heads import SSDHead
from mmengine.logging import HistoryBuffer, print_log

__all__ = ['apply_compat_fixes', 'checkpoint_safe_globals',
           'history_buffer_statistic', 'UnreadableImageError',
           'COMPAT_STATUS']

HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')

# fix name -> 'applied: ...' or 'skipped: ...', filled by apply_compat_fixes
COMPAT_STATUS: Dict[str, str] = {}


class UnreadableImageError(OSError):
    """An image file of a dataset exists but does not decode."""


def history_buffer_statistic(owner: type, name: str):
    """The only ``getattr`` a checkpoint may call while unpickling:
    ``HistoryBuffer``'s statistics methods."""
    registered = HistoryBuffer._statistics_methods
    if owner is HistoryBuffer and (name in HISTORY_BUFFER_STATISTICS
                                   or name in registered):
        return registered.get(name) or getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({owner!r}, {name!r}); only '
        f'HistoryBuffer statistics methods are allowed')


def _numpy_multiarray(numpy_module=np):
    """numpy's ``multiarray`` module: ``numpy._core`` from numpy 2 on,
    ``numpy.core`` before."""
    core = getattr(numpy_module, '_core', None)
    if core is None or not hasattr(core, 'multiarray'):
        core = numpy_module.core
    return core.multiarray


def checkpoint_safe_globals(numpy_module=np) -> List:
    """What ``torch.load(weights_only=True)`` must allow for an mmengine
    checkpoint: ``HistoryBuffer``, the numpy objects the message hub
    pickles (under both of numpy's module names) and the guarded
    ``getattr``."""
    multiarray = _numpy_multiarray(numpy_module)
    reconstruct, scalar = multiarray._reconstruct, multiarray.scalar
    dtype_classes = [type(numpy_module.dtype(t)) for t in (
        'float64', 'float32', 'float16', 'int64', 'int32', 'int16', 'int8',
        'uint8', 'bool')]
    safe = [HistoryBuffer, reconstruct, scalar, numpy_module.ndarray,
            numpy_module.dtype, *dtype_classes,
            (history_buffer_statistic, 'builtins.getattr')]
    for package in ('numpy.core', 'numpy._core'):
        for obj, name in ((reconstruct, '_reconstruct'), (scalar, 'scalar')):
            qualified = f'{package}.multiarray.{name}'
            if f'{obj.__module__}.{obj.__qualname__}' != qualified:
                safe.append((obj, qualified))
    return safe


def _fix_ssd_head_predict() -> str:
    if hasattr(SSDHead, 'loss_cls'):
        return 'skipped: SSDHead already has loss_cls'
    SSDHead.loss_cls = None
    return 'applied: SSDHead.loss_cls = None (SSD predict works)'


def _explain_unreadable_images() -> str:
    from mmcv.transforms import LoadImageFromFile

    original = LoadImageFromFile.transform
    if getattr(original, 'explains_unreadable_images', False):
        return 'skipped: already applied'

    from mmcv.image import io as image_io
    from PIL import UnidentifiedImageError

    # OpenCV (mmcv's default decoder, imported by mmcv) decodes a bad file
    # to None, on which mmcv asserts, or, for an empty one, raises its
    # cv2.error; Pillow raises UnidentifiedImageError
    decode_errors = (AssertionError, image_io.cv2.error,
                     UnidentifiedImageError)

    def transform(self, results: dict):
        try:
            return original(self, results)
        except decode_errors as error:
            if isinstance(error, AssertionError) and not str(error) \
                    .startswith('failed to load image'):
                raise
            if self.ignore_empty:  # skip it, as for a file that won't read
                return None
            raise UnreadableImageError(
                f'{results["img_path"]}: the image does not decode (an '
                f'empty, truncated or non-image file); replace it, or drop '
                f'its entry from the annotation file') from None

    transform.explains_unreadable_images = True
    LoadImageFromFile.transform = transform
    return ('applied: an image that does not decode stops a run with '
            'UnreadableImageError naming the file')


def _allow_mmengine_checkpoint_types(serialization=torch.serialization,
                                     numpy_module=np) -> str:
    add_safe_globals = getattr(serialization, 'add_safe_globals', None)
    if add_safe_globals is None:
        return (f'skipped: torch {torch.__version__} has no '
                f'add_safe_globals; its torch.load does not default to '
                f'weights_only=True')
    add_safe_globals(checkpoint_safe_globals(numpy_module))
    return ('applied: mmengine checkpoint types allow-listed for '
            'weights_only loading')


def apply_compat_fixes() -> Dict[str, str]:
    """Apply every fix the environment needs; safe to call more than once.

    Returns:
        dict[str, str]: Per fix, 'applied: ...' or 'skipped: ...' and why
        (also kept in :data:`COMPAT_STATUS`).
    """
    if COMPAT_STATUS:
        return dict(COMPAT_STATUS)
    COMPAT_STATUS['ssd_head_predict'] = _fix_ssd_head_predict()
    COMPAT_STATUS['checkpoint_safe_globals'] = \
        _allow_mmengine_checkpoint_types()
    COMPAT_STATUS['unreadable_images'] = _explain_unreadable_images()
    for name, status in COMPAT_STATUS.items():
        print_log(f'sapool_mmdet.compat {name}: {status}', logger='current',
                  level=logging.DEBUG)
    return dict(COMPAT_STATUS)

