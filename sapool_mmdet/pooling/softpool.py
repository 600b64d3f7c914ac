"""SoftPool: the exponentially weighted window average (Stergiou et al.)."""
from typing import Optional

import torch
import torch.nn.functional as F

from .builder import POOLING
from .weighted_average import WeightedPool, window_broadcast

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

    Args:
        in_channels (int): Channels C of input and output.
        stride (int): Window size and stride s.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self, in_channels: int, stride: int,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(in_channels, stride, init_cfg=init_cfg)

    def pooling_weights(self, x: torch.Tensor) -> torch.Tensor:
        window_max = F.max_pool2d(x.detach(), self.stride, self.stride,
                                  ceil_mode=True)
        return (x - window_broadcast(window_max, self.stride,
                                     x.shape[-2:])).exp()
