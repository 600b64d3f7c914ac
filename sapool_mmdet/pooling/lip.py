"""Local importance pooling (Gao et al., ICCV 2019)."""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule

from .builder import POOLING, check_positive_int
from .weighted_average import WeightedPool, upcast

__all__ = ['build_importance_logit', 'LIPPool']


def build_importance_logit(in_channels: int, kernel_size: int = 1,
                           norm_cfg: Optional[dict] = dict(type='BN'),
                           act_cfg: Optional[dict] = dict(type='Sigmoid')
                           ) -> nn.Module:
    """The local importance logit G(x) of LIP: conv + norm + gate, C -> C.

    Shared by :class:`LIPPool` and the local branch of our mixed variant
    :class:`~.nlpool_variants.MixNLPool`.

    Args:
        in_channels (int): Channels C of input and logit.
        kernel_size (int): Odd conv kernel; 1 in Chen et al.'s Table 1.
            Default: 1.
        norm_cfg (dict, optional): Norm after the conv. Default: BN.
        act_cfg (dict, optional): The gate bounding the logit.
            Default: Sigmoid.

    Returns:
        nn.Module: maps (N, C, H, W) to logits of the same shape.
    """
    check_positive_int('kernel_size', kernel_size)
    if kernel_size % 2 == 0:
        raise ValueError(f'kernel_size must be odd so that the logit map '
                         f'keeps the input size, got {kernel_size}')
    return ConvModule(in_channels, in_channels, kernel_size,
                      padding=kernel_size // 2, norm_cfg=norm_cfg,
                      act_cfg=act_cfg)


@POOLING.register_module()
class LIPPool(WeightedPool):
    """Local importance pooling: Gao, Wang and Wu, "LIP: Local
    Importance-based Pooling", ICCV 2019.

    pi(x) = exp(G(x)),  G(x) = gate(norm(conv(x))),
    and the output is the weighted window average of Chen et al. (WACV 2023),
    eq. 5, with kernel = stride = s, which is LIP's operator
    sum(exp(G) * x) / sum(exp(G)) over each window.

    The defaults are the setting the self-attentive pooling paper compares
    with (its Table 1: a 1x1 logit conv) and its official code (BN, sigmoid
    gate). LIP's own SimplifiedLIP uses a 3x3 conv, instance norm and
    12 * sigmoid; ``kernel_size=3`` and ``norm_cfg=dict(type='IN',
    affine=True)`` come close. The importance of a pixel depends only on the
    conv's k x k neighbourhood: the pooling is local.

    Mixed precision: the logit's conv and norm run in the autocast dtype,
    exp in float32: LIP's own 12 * sigmoid gate reaches exp(12) = 162755,
    past float16's largest value (65504).

    Args:
        in_channels (int): Channels C of input and output.
        stride (int): Window size and stride s.
        kernel_size (int): Odd kernel of the logit conv. Default: 1.
        norm_cfg (dict, optional): Norm of the logit. Default: dict(type='BN').
        act_cfg (dict, optional): Gate of the logit.
            Default: dict(type='Sigmoid').
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 stride: int,
                 kernel_size: int = 1,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='Sigmoid'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(in_channels, stride, init_cfg=init_cfg)
        self.logit = build_importance_logit(in_channels, kernel_size,
                                            norm_cfg, act_cfg)

    def pooling_weights(self, x: torch.Tensor) -> torch.Tensor:
        return upcast(self.logit(x)).exp()
