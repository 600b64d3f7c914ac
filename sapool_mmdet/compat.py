"""Fixes for known incompatibilities in the pinned stack.

Applied once, when ``sapool_mmdet`` is imported.

1. mmdet 3.3.0's ``BaseDenseHead._predict_by_feat_single`` reads
   ``self.loss_cls.custom_cls_channels``, but ``SSDHead`` computes its
   classification loss inline and never creates ``loss_cls``, so every SSD
   predict raises AttributeError (open-mmlab/mmdetection#11063, #11780).
   SSD has no custom-channel loss, so ``loss_cls = None`` gives the
   intended branch (softmax scores).
2. torch >= 2.6 loads checkpoints with ``weights_only=True``, which rejects
   the non-tensor objects mmengine 0.10.x stores in a checkpoint
   (``HistoryBuffer`` and numpy arrays/scalars in the message hub), so
   ``--resume`` and ``tools/test.py CKPT`` fail. We allow-list exactly those
   types; ``weights_only`` stays on, so loading a stranger's checkpoint still
   cannot run code. A ``HistoryBuffer`` also pickles its statistics methods
   as ``getattr(HistoryBuffer, 'mean')``; allow-listing the builtin
   ``getattr`` would open attribute access on anything, so the name
   ``builtins.getattr`` is mapped to :func:`history_buffer_statistic`,
   which resolves those methods and refuses everything else.
"""
import pickle

import numpy as np
import torch
from mmdet.models.dense_heads import SSDHead
from mmengine.logging import HistoryBuffer

__all__ = ['apply_compat_fixes', 'CHECKPOINT_SAFE_GLOBALS',
           'history_buffer_statistic']

HISTORY_BUFFER_STATISTICS = ('min', 'max', 'current', 'mean')


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


def _numpy_checkpoint_types() -> list:
    """numpy objects that pickle into mmengine checkpoints."""
    reconstruct = np.core.multiarray._reconstruct
    scalar = np.core.multiarray.scalar
    dtype_classes = [type(np.dtype(t)) for t in (
        np.float64, np.float32, np.float16, np.int64, np.int32, np.int16,
        np.int8, np.uint8, np.bool_)]
    return [reconstruct, scalar, np.ndarray, np.dtype, *dtype_classes]


CHECKPOINT_SAFE_GLOBALS = [
    HistoryBuffer, *_numpy_checkpoint_types(),
    (history_buffer_statistic, 'builtins.getattr')
]


def _fix_ssd_head_predict() -> None:
    if not hasattr(SSDHead, 'loss_cls'):
        SSDHead.loss_cls = None


def _allow_mmengine_checkpoint_types() -> None:
    torch.serialization.add_safe_globals(CHECKPOINT_SAFE_GLOBALS)


def apply_compat_fixes() -> None:
    """Apply every fix; safe to call more than once."""
    _fix_ssd_head_predict()
    _allow_mmengine_checkpoint_types()
