"""SoftPool: the exponentially weighted window average (Stergiou et al.)."""
from typing import Optional

import torch
import torch.nn.functional as F

from .builder import POOLING
from .weighted_average import (WeightedPool, autocast_off, upcast,
                               window_broadcast)

__all__ = ['SoftPool']


@POOLING.register_module()
class SoftPool(WeightedPool):
    """SoftPool: Stergiou, Poppe and Kalliatakis, "Refining activation
    downsampling with SoftPool", ICCV 2021.

    a~ = sum_i w_i a_i,  w_i = exp(a_i) / sum_j exp(a_j)  over each window,
    i.e. eq. 5 of Chen et al. (WACV 2023) with pi(x) = exp(x). It has no
    parameters.

    exp(a) overflows float32 past a ~ 88, so the weights are
    exp(a - max_window(a)): a constant per window cancels in the ratio of
    eq. 5, every weight is in (0, 1] and the largest is 1, so the result
    stays finite for any finite input. The window maximum is detached: the
    ratio does not depend on it, so its exact gradient is zero.

    Mixed precision: the weights are computed in float32 (one exp per
    pixel, cheap): rounded to bfloat16, every weight would carry a relative
    error of up to 2^-8, and eq. 5 runs in float32 anyway.

    Args:
        in_channels (int): Channels C of input and output.
        stride (int): Window size and stride s.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self, in_channels: int, stride: int,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(in_channels, stride, init_cfg=init_cfg)

    def pooling_weights(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):
            values = upcast(x)
            window_max = F.max_pool2d(values.detach(), self.stride,
                                      self.stride, ceil_mode=True)
            return (values - window_broadcast(window_max, self.stride,
                                              x.shape[-2:])).exp()
