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
