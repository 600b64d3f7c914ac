"""The strided-convolution baseline of the paper's Table 1."""
from typing import Optional

import torch
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule

from .builder import POOLING, check_positive_int

__all__ = ['ConvPool']


@POOLING.register_module()
class ConvPool(BaseModule):
    """Strided convolution + norm + activation as a pooling layer: the
    'Strided Conv.' baseline of Chen et al. (WACV 2023), Table 1 (3x3).

    With padding k // 2 and stride s, the output is (N, C, ceil(H/s),
    ceil(W/s)) for odd kernels.

    Args:
        in_channels (int): Channels C of input and output.
        stride (int): Stride s.
        kernel_size (int): Odd kernel size. Default: 3.
        groups (int): Conv groups; ``in_channels`` for a depthwise conv as
            in MobileNetV2. Default: 1.
        norm_cfg (dict): Norm config. Default: dict(type='BN').
        act_cfg (dict): Activation config. Default: dict(type='ReLU').
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self, in_channels: int, stride: int, kernel_size: int = 3,
                 groups: int = 1, norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        check_positive_int('in_channels', in_channels)
        check_positive_int('stride', stride)
        check_positive_int('kernel_size', kernel_size)
        check_positive_int('groups', groups)
        if kernel_size % 2 == 0:
            raise ValueError(
                f'kernel_size must be odd so that the output is '
                f'ceil(H/stride), got {kernel_size}')
        if in_channels % groups:
            raise ValueError(f'groups={groups} must divide '
                             f'in_channels={in_channels}')
        self.conv = ConvModule(in_channels, in_channels, kernel_size,
                               stride=stride, padding=kernel_size // 2,
                               groups=groups, norm_cfg=norm_cfg,
                               act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
