"""Gaussian-based pooling (Kobayashi, NeurIPS 2019)."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule

from .builder import POOLING, check_choice, check_positive_int
from .weighted_average import autocast_off, upcast, window_broadcast

__all__ = ['GaussianPool']

NOISE_SHAPES = ('pixel', 'channel')


@POOLING.register_module()
class GaussianPool(BaseModule):
    """Gaussian-based pooling: Kobayashi, "Gaussian-Based Pooling for
    Convolutional Neural Networks", NeurIPS 2019 (the input-dependent,
    'iSP-Gaussian' form).

    Each window X is modelled as a Gaussian with its mean mu_X and standard
    deviation sigma_X, and pooled to a sample from its upper part:

        Y = mu_X + softplus(eta) * sigma_X,   eta ~ N(mu_0(x), sigma_0(x))

    where mu_0 and sigma_0 (per sample and channel) come from the globally
    averaged input through a small bottleneck:
    z = act(norm(conv1x1(GAP(x)))), mu_0 = norm(conv1x1(z)),
    sigma_0 = sigmoid(norm(conv1x1(z))). In training eta is sampled (the
    stochastic pooling that regularises); in eval eta = mu_0, so the layer is
    deterministic. softplus keeps the multiple non-negative, so Y >= mu_X;
    unlike a weighted average, Y may exceed the window's maximum.

    sigma_X is the population standard deviation of the pixels the window
    covers (edge windows of non-divisible sizes cover fewer), computed as
    sqrt(max(mean((x - mu_X)^2), eps)) so single-pixel windows have a finite
    gradient.

    Mixed precision: the window statistics, the noise and the output
    mu_X + softplus(eta) * sigma_X are computed in float32 (float16 squares
    overflow once |x - mu_X| > 256); the bottleneck convs run in the
    autocast dtype. The output has the input's dtype.

    With BN in the bottleneck, training needs more than one sample per batch
    (BN normalises over the batch of 1 x 1 maps); use GN or SyncBN otherwise.

    Args:
        in_channels (int): Channels C of input and output.
        stride (int): Window size and stride s.
        hidden_channels (int, optional): Bottleneck width; None uses
            max(1, C // 2). Default: None.
        noise (str): 'pixel' draws eta per output pixel, 'channel' one eta
            per sample and channel. Default: 'pixel'.
        eps (float): Floor of the window variance. Default: 1e-6.
        norm_cfg (dict, optional): Norm of the bottleneck layers.
            Default: dict(type='BN').
        act_cfg (dict, optional): Activation of the bottleneck.
            Default: dict(type='ReLU').
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 stride: int,
                 hidden_channels: Optional[int] = None,
                 noise: str = 'pixel',
                 eps: float = 1e-6,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        check_positive_int('in_channels', in_channels)
        self.stride = check_positive_int('stride', stride)
        if hidden_channels is None:
            hidden_channels = max(1, in_channels // 2)
        check_positive_int('hidden_channels', hidden_channels)
        self.noise = check_choice('noise', noise, NOISE_SHAPES)
        if not isinstance(eps, (int, float)) or eps <= 0:
            raise ValueError(f'eps must be a number > 0, got {eps!r}')
        self.eps = eps
        self.bottleneck = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            ConvModule(in_channels, hidden_channels, 1, norm_cfg=norm_cfg,
                       act_cfg=act_cfg))
        self.to_mean = ConvModule(hidden_channels, in_channels, 1,
                                  norm_cfg=norm_cfg, act_cfg=None)
        self.to_std = ConvModule(hidden_channels, in_channels, 1,
                                 norm_cfg=norm_cfg,
                                 act_cfg=dict(type='Sigmoid'))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        hidden = self.bottleneck(x)
        eta = upcast(self.to_mean(hidden))
        eta_std = upcast(self.to_std(hidden)) if self.training else None
        with autocast_off(x):
            values = upcast(x)
            window_mean = F.avg_pool2d(values, s, s, ceil_mode=True)
            centred = values - window_broadcast(window_mean, s, x.shape[-2:])
            window_var = F.avg_pool2d(centred.square(), s, s, ceil_mode=True)
            window_std = window_var.clamp(min=self.eps).sqrt()
            if eta_std is not None:
                noise_shape = (window_mean.shape if self.noise == 'pixel'
                               else eta.shape)
                noise = torch.randn(noise_shape, dtype=window_mean.dtype,
                                    device=x.device)
                eta = eta + eta_std * noise
            pooled = window_mean + F.softplus(eta) * window_std
        return pooled.to(x.dtype)
