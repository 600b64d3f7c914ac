"""Learned mixtures of max and average pooling (Yu et al.; Lee et al.)."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.model import BaseModule

from .builder import POOLING, check_choice, check_positive_int
from .weighted_average import autocast_off, upcast

__all__ = ['MixedPool']

MIX_MODES = ('mixed', 'gated')


@POOLING.register_module()
class MixedPool(BaseModule):
    """Mixed max-average pooling: Yu, Wang, Chen and Wei, "Mixed Pooling for
    Convolutional Neural Networks", RSKT 2014, with the learned proportion
    and the gate of Lee, Gallagher and Tu, "Generalizing Pooling Functions in
    Convolutional Neural Networks: Mixed, Gated, and Tree", AISTATS 2016.

        y = lambda * max_window(x) + (1 - lambda) * mean_window(x)

    Yu et al. mix the two poolings with a proportion drawn at random;
    following Lee et al., lambda is learned so the layer is deterministic:

    - 'mixed' (Lee et al.'s mixed max-average pooling): lambda =
      sigmoid(a), one learned a per layer (or per channel);
    - 'gated' (Lee et al.'s gated max-average pooling): lambda =
      sigmoid(omega . x_window), a learned s x s gating mask omega applied
      to each window's values, so the mix depends on the window's content.
      Pixels past the bottom/right edge count as zeros in the gate.

    a and omega start at zero: an even mix, lambda = 0.5. The max and the
    mean of an edge window cover the pixels that exist. The layer has no
    norm or activation.

    Mixed precision: the gate's s x s conv and lambda run in float32 (the
    gate is a sum of s^2 unnormalised products, and autocast would round
    lambda to the reduced dtype); max, mean and the output keep the input's
    dtype.

    Args:
        in_channels (int): Channels C of input and output.
        stride (int): Window size and stride s.
        mode (str): 'mixed' or 'gated'. Default: 'mixed'.
        per_channel (bool): One a (or omega) per channel instead of one per
            layer. Default: False.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self, in_channels: int, stride: int, mode: str = 'mixed',
                 per_channel: bool = False,
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = check_positive_int('in_channels', in_channels)
        self.stride = check_positive_int('stride', stride)
        self.mode = check_choice('mode', mode, MIX_MODES)
        channels = in_channels if per_channel else 1
        if mode == 'mixed':
            self.mix_logit = nn.Parameter(torch.zeros(1, channels, 1, 1))
        else:
            self.gate_mask = nn.Parameter(
                torch.zeros(channels, 1, stride, stride))

    def mixing_proportion(self, x: torch.Tensor) -> torch.Tensor:
        """Return lambda, broadcastable to the pooled output."""
        if self.mode == 'mixed':
            return upcast(self.mix_logit).sigmoid()
        s = self.stride
        height, width = x.shape[-2:]
        with autocast_off(x):
            padded = F.pad(upcast(x), (0, -width % s, 0, -height % s))
            mask = upcast(self.gate_mask).expand(self.in_channels, 1, s, s)
            return F.conv2d(padded, mask, stride=s,
                            groups=self.in_channels).sigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        proportion = self.mixing_proportion(x)
        window_max = F.max_pool2d(x, s, s, ceil_mode=True)
        window_mean = F.avg_pool2d(x, s, s, ceil_mode=True)
        return (proportion * window_max +
                (1 - proportion) * window_mean).to(x.dtype)
