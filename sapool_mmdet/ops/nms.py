"""Non-maximum suppression in plain PyTorch: mmcv's ``nms`` kernel
(``mmcv/ops/csrc/pytorch/cpu/nms.cpp``) without a compiler."""
import numpy as np
import torch
from torch import Tensor

__all__ = ['nms']

# IoU rows computed at once; bounds the float scratch to 1024 x N values.
_ROW_BLOCK = 1024


def nms(boxes: Tensor, scores: Tensor, iou_threshold: float,
        offset: int = 0) -> Tensor:
    """Greedy NMS with mmcv's arithmetic: boxes are visited by descending
    score (ties in the order ``torch.sort`` gives, as in mmcv) and a box is dropped when its IoU
    with a kept one is strictly greater than ``iou_threshold``.

    IoU follows mmcv: ``w = max(0, min(x2) - max(x1) + offset)``, likewise
    ``h``, ``iou = w*h / (area_i + area_j - w*h)`` with
    ``area = (x2 - x1 + offset) * (y2 - y1 + offset)``, in float32 whatever
    the input dtype (the compiled CPU kernel takes float32 only).

    Args:
        boxes (Tensor): (N, 4) boxes as (x1, y1, x2, y2), any float dtype.
        scores (Tensor): (N,) scores.
        iou_threshold (float): Drop boxes whose IoU exceeds this.
        offset (int): 0, or 1 for the legacy pixel convention in which a
            box's width is x2 - x1 + 1. Default: 0.

    Returns:
        Tensor: int64 indices into ``boxes`` of the kept boxes, highest
        score first; empty when N is 0.

    Raises:
        ValueError: if the shapes do not match or ``offset`` is not 0/1.
    """
    if boxes.dim() != 2 or boxes.size(1) != 4:
        raise ValueError(f'nms expects boxes of shape (N, 4), got '
                         f'{tuple(boxes.shape)}')
    if scores.shape != boxes.shape[:1]:
        raise ValueError(f'nms expects one score per box: boxes '
                         f'{tuple(boxes.shape)}, scores {tuple(scores.shape)}')
    if offset not in (0, 1):
        raise ValueError(f'nms offset must be 0 or 1, got {offset!r}')
    if boxes.size(0) == 0:
        return boxes.new_empty(0, dtype=torch.long)
    # torch's default (unstable) sort, as mmcv's kernel calls it, so that
    # boxes with equal scores are visited in the same order as there
    order = scores.sort(descending=True).indices
    x1, y1, x2, y2 = boxes.float()[order].unbind(dim=1)
    areas = (x2 - x1 + offset) * (y2 - y1 + offset)
    # suppresses[i][j - start]: box i (in score order) suppresses box j;
    # only j >= start (the row block's first box) is ever needed
    suppresses = []
    for start in range(0, len(order), _ROW_BLOCK):
        rows, cols = slice(start, start + _ROW_BLOCK), slice(start, None)
        w = torch.minimum(x2[rows, None], x2[cols])
        w = w.sub_(torch.maximum(x1[rows, None], x1[cols])).add_(offset)
        h = torch.minimum(y2[rows, None], y2[cols])
        h = h.sub_(torch.maximum(y1[rows, None], y1[cols])).add_(offset)
        inter = w.clamp_(min=0).mul_(h.clamp_(min=0))
        union = (areas[rows, None] + areas[cols]).sub_(inter)
        suppresses.append((inter.div_(union) > iou_threshold).cpu().numpy())
    # The greedy pass is sequential by nature; it runs over booleans only.
    removed = np.zeros(len(order), dtype=bool)
    kept = []
    for i in range(len(order)):
        if not removed[i]:
            kept.append(i)
            start = i - i % _ROW_BLOCK
            removed[start:] |= suppresses[i // _ROW_BLOCK][i - start]
    return order[torch.as_tensor(kept, device=order.device)]
