"""The weighted window average of eq. 5, shared by every weighted pooling,
and the float32 helpers the pooling methods use under mixed precision."""
import contextlib
from typing import ContextManager, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule

from .builder import check_positive_int

__all__ = ['REDUCED_PRECISION', 'upcast', 'autocast_off',
           'weighted_window_average', 'pooled_size', 'window_broadcast',
           'WeightedPool']

#: The floating-point types that ``torch.autocast`` computes in.
REDUCED_PRECISION = (torch.float16, torch.bfloat16)


def upcast(tensor: torch.Tensor) -> torch.Tensor:
    """float16/bfloat16 -> float32; any other dtype (float32, float64) is
    returned unchanged, so double-precision checks stay double."""
    return tensor.float() if tensor.dtype in REDUCED_PRECISION else tensor


def autocast_off(tensor: torch.Tensor) -> ContextManager:
    """A context in which ``torch.autocast`` is disabled on ``tensor``'s
    device, so the operators inside run in the dtype of their inputs.

    Devices that autocast does not know (e.g. 'meta') get a no-op context.
    """
    device_type = tensor.device.type
    available = getattr(torch.amp, 'is_autocast_available', None)
    if available is not None and not available(device_type):
        return contextlib.nullcontext()
    return torch.autocast(device_type, enabled=False)


def pooled_size(size: int, stride: int) -> int:
    """Output length of a window = stride = s pooling: ceil(size / s)."""
    return -(-size // stride)


def window_broadcast(pooled: torch.Tensor, stride: int,
                     size: Tuple[int, int]) -> torch.Tensor:
    """Give every pixel the value of the s x s window it belongs to.

    The inverse layout of a window = stride = s pooling: (N, C, ceil(H/s),
    ceil(W/s)) -> (N, C, H, W), edge windows cropped to the pixels that exist.

    Args:
        pooled (Tensor): One value per window, (N, C, ceil(H/s), ceil(W/s)).
        stride (int): Window size and stride s.
        size (tuple[int, int]): (H, W) of the pixel grid.

    Returns:
        Tensor: (N, C, H, W).
    """
    expanded = pooled.repeat_interleave(stride, dim=2).repeat_interleave(
        stride, dim=3)
    return expanded[..., :size[0], :size[1]]


def weighted_window_average(x: torch.Tensor, weights: torch.Tensor,
                            stride: int,
                            window_norm: bool = True) -> torch.Tensor:
    """Eq. 5 of Chen et al. (WACV 2023) with kernel = stride = s.

    O = sum_window(pi * x) / sum_window(pi) over each s x s window. Windows
    that run past the bottom/right edge (H or W not a multiple of s) cover
    only the pixels that exist, so the output is (N, C, ceil(H/s), ceil(W/s)).

    Args:
        x (Tensor): Input, (N, C, H, W).
        weights (Tensor): Non-negative pooling weights pi(x), broadcastable
            to ``x``.
        stride (int): Window size and stride s.
        window_norm (bool): Divide by the window's weight sum (eq. 5).
            False gives the official code's 'nowin' variant: the plain mean
            of pi * x over the window's pixels. Default: True.

    Mixed precision: the products and window sums run in float32 (with
    autocast off) whatever the dtypes of ``x`` and ``weights``: in float16,
    pi * x overflows once |x| > 65504 / max(pi) (about 24000 for NLPool's
    weights, which reach e), and a window sum rounds each term to 11 bits.
    The result is returned in ``x``'s dtype, like every stock layer; with
    ``window_norm`` it is a convex combination of the window's values, so
    it cannot leave their range.

    Returns:
        Tensor: (N, C, ceil(H/s), ceil(W/s)), dtype of ``x``.
    """
    if stride == 1 and window_norm:
        return x
    with autocast_off(x):
        values, weights = upcast(x), upcast(weights)
        if stride == 1:
            return (values * weights).to(x.dtype)
        numerator = F.avg_pool2d(values * weights, stride, stride,
                                 ceil_mode=True)
        if window_norm:
            # Both averages share the window's divisor, so their ratio is
            # the ratio of window sums that eq. 5 asks for.
            numerator = numerator / F.avg_pool2d(weights, stride, stride,
                                                 ceil_mode=True)
    return numerator.to(x.dtype)


class WeightedPool(BaseModule):
    """Base of every pooling that computes weights pi(x) and applies eq. 5.

    Subclasses implement :meth:`pooling_weights`; the visualisation tools
    read the weight map through that same method.

    Args:
        in_channels (int): Channels C of the input and output.
        stride (int): Window size and stride s.
        window_norm (bool): See :func:`weighted_window_average`.
            Default: True.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self, in_channels: int, stride: int,
                 window_norm: bool = True,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = check_positive_int('in_channels', in_channels)
        self.stride = check_positive_int('stride', stride)
        self.window_norm = bool(window_norm)

    def pooling_weights(self, x: torch.Tensor) -> torch.Tensor:
        """Return pi(x), non-negative, broadcastable to ``x``."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return weighted_window_average(x, self.pooling_weights(x),
                                       self.stride, self.window_norm)
