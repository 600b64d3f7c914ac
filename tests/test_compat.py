"""The stack fixes applied on ``import sapool_mmdet``."""
import io
import pickle

import numpy as np
import pytest
import torch
from mmdet.models.dense_heads import SSDHead
from mmengine.config import ConfigDict
from mmengine.logging import HistoryBuffer, MessageHub

import sapool_mmdet  # noqa: F401


def test_message_hub_round_trips_with_weights_only():
    hub = MessageHub('compat-test')
    for value in (1.0, 2.5, 4.0):
        hub.update_scalar('train/loss', value)
    hub.update_info('iter', 7)
    buffer = io.BytesIO()
    torch.save({'message_hub': hub.state_dict(),
                'array': np.arange(3, dtype=np.float32),
                'scalar': np.float64(0.25)}, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    history = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(history, HistoryBuffer)
    assert history.mean() == pytest.approx(2.5)
    assert history.statistics('max') == 4.0
    assert loaded['scalar'] == 0.25 and loaded['array'].tolist() == [0, 1, 2]


class _GetattrPayload:
    """Pickles as getattr(HistoryBuffer, '__init__'): an attribute lookup
    on an allow-listed class that is not one of its statistics methods."""

    def __reduce__(self):
        return getattr, (HistoryBuffer, '__init__')


def test_other_getattr_calls_are_refused():
    buffer = io.BytesIO()
    torch.save({'x': _GetattrPayload()}, buffer)
    buffer.seek(0)
    with pytest.raises(pickle.UnpicklingError, match='only HistoryBuffer'):
        torch.load(buffer, weights_only=True)


def test_ssd_head_predicts():
    """mmdet 3.3.0 raises "'SSDHead' object has no attribute 'loss_cls'"."""
    torch.manual_seed(0)
    head = SSDHead(
        num_classes=2, in_channels=(4, 4, 4, 4, 4, 4),
        anchor_generator=dict(
            type='SSDAnchorGenerator', scale_major=False, input_size=300,
            basesize_ratio_range=(0.15, 0.9),
            strides=[8, 16, 32, 64, 100, 300],
            ratios=([2], [2, 3], [2, 3], [2, 3], [2], [2])),
        test_cfg=ConfigDict(
            nms_pre=100, nms=dict(type='nms', iou_threshold=0.45),
            min_bbox_size=0, score_thr=0.02, max_per_img=10))
    feats = [torch.randn(1, 4, s, s) for s in (38, 19, 10, 5, 3, 1)]
    results = head.predict_by_feat(
        *head(feats), batch_img_metas=[dict(img_shape=(300, 300))],
        rescale=False)
    assert len(results) == 1 and len(results[0].bboxes) <= 10
    assert results[0].scores.max() <= 1


def test_status_says_what_was_applied():
    from sapool_mmdet.compat import COMPAT_STATUS, apply_compat_fixes
    assert set(COMPAT_STATUS) == {'ssd_head_predict',
                                  'checkpoint_safe_globals',
                                  'unreadable_images'}
    assert all(s.startswith(('applied:', 'skipped:'))
               for s in COMPAT_STATUS.values())
    assert COMPAT_STATUS['checkpoint_safe_globals'].startswith('applied:')
    assert apply_compat_fixes() == COMPAT_STATUS  # idempotent


def test_torch_without_add_safe_globals_is_skipped(monkeypatch):
    """torch < 2.4 has no add_safe_globals (and loads with
    weights_only=False by default): nothing to allow-list."""
    from types import SimpleNamespace

    from sapool_mmdet.compat import _allow_mmengine_checkpoint_types
    status = _allow_mmengine_checkpoint_types(serialization=SimpleNamespace())
    assert status.startswith('skipped:') and 'add_safe_globals' in status


def test_ssd_fix_is_skipped_where_mmdet_has_loss_cls(monkeypatch):
    from sapool_mmdet.compat import _fix_ssd_head_predict
    sentinel = object()
    monkeypatch.setattr(SSDHead, 'loss_cls', sentinel)
    assert _fix_ssd_head_predict().startswith('skipped:')
    assert SSDHead.loss_cls is sentinel


def _numpy_like(core_name: str):
    """A stand-in numpy whose multiarray module lives under ``core_name``
    ('core' as in numpy 1, '_core' as in numpy 2)."""
    from types import SimpleNamespace
    multiarray = np.core.multiarray if hasattr(np, 'core') else \
        np._core.multiarray
    return SimpleNamespace(**{core_name: SimpleNamespace(
        multiarray=multiarray)}, dtype=np.dtype, ndarray=np.ndarray)


@pytest.mark.parametrize('core_name', ['core', '_core'])
def test_numpy_globals_under_both_module_names(core_name):
    """A checkpoint written under numpy 1 names numpy.core.multiarray, one
    written under numpy 2 numpy._core.multiarray: both names are allowed."""
    from sapool_mmdet.compat import checkpoint_safe_globals
    safe = checkpoint_safe_globals(_numpy_like(core_name))
    names = {entry[1] if isinstance(entry, tuple) else
             f'{entry.__module__}.{entry.__qualname__}' for entry in safe}
    for package in ('numpy.core', 'numpy._core'):
        assert f'{package}.multiarray._reconstruct' in names
        assert f'{package}.multiarray.scalar' in names
    assert 'builtins.getattr' in names


def test_checkpoint_naming_the_other_numpy_module_loads():
    """Rewrite a pickle's numpy module name to the other numpy's and load
    it with weights_only=True."""
    buffer = io.BytesIO()
    torch.save({'array': np.arange(4, dtype=np.int64)}, buffer)
    data = buffer.getvalue()
    ours = np.ndarray.__reduce__(np.zeros(1))[0].__module__  # numpy.core...
    other = ('numpy._core.multiarray' if ours == 'numpy.core.multiarray'
             else 'numpy.core.multiarray')
    import zipfile
    source = zipfile.ZipFile(io.BytesIO(data))
    rewritten = io.BytesIO()
    with zipfile.ZipFile(rewritten, 'w') as target:
        for item in source.infolist():
            payload = source.read(item)
            if item.filename.endswith('data.pkl'):
                assert ours.encode() in payload
                payload = payload.replace(ours.encode(), other.encode())
            target.writestr(item, payload)
    rewritten.seek(0)
    loaded = torch.load(rewritten, weights_only=True)
    assert loaded['array'].tolist() == [0, 1, 2, 3]
