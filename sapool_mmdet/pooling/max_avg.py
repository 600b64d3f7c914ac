"""Max and average pooling with window = stride = s."""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .builder import POOLING, check_positive_int

__all__ = ['MaxPool', 'AvgPool']


@POOLING.register_module()
class MaxPool(nn.Module):
    """Max pooling over s x s windows with stride s; edge windows cover the
    pixels that exist, so the output is (N, C, ceil(H/s), ceil(W/s)).

    Args:
        in_channels (int): Channels C (unused; part of the pooling contract).
        stride (int): Window and stride s.
    """

    def __init__(self, in_channels: int, stride: int) -> None:
        super().__init__()
        check_positive_int('in_channels', in_channels)
        self.stride = check_positive_int('stride', stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, self.stride, self.stride, ceil_mode=True)


@POOLING.register_module()
class AvgPool(nn.Module):
    """Average pooling over s x s windows with stride s; edge windows average
    the pixels that exist, so the output is (N, C, ceil(H/s), ceil(W/s)).

    Args:
        in_channels (int): Channels C (unused; part of the pooling contract).
        stride (int): Window and stride s.
    """

    def __init__(self, in_channels: int, stride: int) -> None:
        super().__init__()
        check_positive_int('in_channels', in_channels)
        self.stride = check_positive_int('stride', stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.stride, self.stride, ceil_mode=True)
