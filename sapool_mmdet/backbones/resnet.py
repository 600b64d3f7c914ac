"""ResNet whose down-sampling stages use any registered pooling."""
from typing import Dict, List, Optional, Sequence, Union

import torch
import torch.nn as nn
from mmdet.models.backbones import ResNet
from mmdet.registry import MODELS

from ..pooling.builder import check_choice
from ..pruning.groups import (ChannelGroup, apply_pruned_widths,
                              resnet_groups)
from .pooled_stage import (POOL_POSITIONS, PoolingTrainMixin, assemble_stage,
                           check_strides, expand_stage_pooling, pool_channels,
                           split_stem_pooling)

__all__ = ['NLPoolResNet']


@MODELS.register_module()
class NLPoolResNet(PoolingTrainMixin, ResNet):
    """mmdet's ResNet with a pooling layer in any down-sampling stage
    (Chen et al., WACV 2023, Sec. 5).

    With ``pooling=None``, ``stem_pooling=None`` and the default ``strides``
    it is mmdet's ``ResNet``: the same modules and state-dict keys, so a
    stock (torchvision or mmdet) checkpoint loads into every pooled variant
    with only the pooling modules missing. A pooled stage keeps its residual
    blocks under the stock names (``layerK.0``, ``layerK.1``, ...) and adds
    ``layerK.pool``; its blocks run at stride 1 (the first block keeps its
    1x1 projection shortcut wherever the channels change) and the pooling
    does the down-sampling.

    Args:
        depth (int): 18, 34, 50, 101 or 152.
        strides (Sequence[int]): One stride per stage. The first is the
            paper's s1 in {1, 2, 4}. Default: (1, 2, 2, 2), the stock
            schedule.
        pooling (dict | list | None): None keeps every stock strided conv;
            one pooling dict is used by every stage whose stride is > 1; a
            list with one entry per stage (None keeps the stock strided
            conv). ``stride`` and ``in_channels`` come from the backbone.
            Default: None.
        pool_position (str): 'pre', 'inner' or 'outer'; see
            :mod:`sapool_mmdet.backbones.pooled_stage`. 'outer' is the
            paper's better position for ResNet18 (Table 7) and what the
            official ResNet code does. Default: 'pre'.
        stem_pooling (dict, optional): A pooling dict (with an optional
            ``stride``, default 4) that takes over the stem's down-sampling:
            the stem conv runs at stride 1, the max-pool is removed and this
            pooling follows the stem (the official code's 'prepool').
            Default: None.
        freeze_pooling (bool): Treat the pooling layers like the stock
            layers under ``frozen_stages`` and ``norm_eval``. By default
            they are new layers and always train: ``frozen_stages`` never
            freezes them and ``norm_eval`` leaves their norms in training
            mode. See :class:`~.pooled_stage.PoolingTrainMixin`.
            Default: False.
        num_stages (int): Stages, 1 to 4. Default: 4.
        pruned_channels (dict, optional): Channels kept in the activation
            maps of a channel-pruned network, by the name of the conv that
            produces the map (see :meth:`channel_groups`); every module
            that holds those channels, residual branches included, is built
            that narrow. Written by ``tools/compact_pruned.py``.
            Default: None (full width).
        **kwargs: Every other argument of mmdet's ``ResNet`` (in_channels,
            stem_channels, base_channels, dilations, out_indices, style,
            deep_stem, avg_down, frozen_stages, conv_cfg, norm_cfg,
            norm_eval, dcn, stage_with_dcn, plugins, with_cp,
            zero_init_residual, pretrained, init_cfg). The pooling layers
            use the backbone's ``norm_cfg`` (e.g. SyncBN) unless their dict
            sets its own.
    """

    def __init__(self,
                 depth: int,
                 strides: Sequence[int] = (1, 2, 2, 2),
                 pooling: Union[None, dict, Sequence] = None,
                 pool_position: str = 'pre',
                 stem_pooling: Optional[dict] = None,
                 freeze_pooling: bool = False,
                 num_stages: int = 4,
                 pruned_channels: Optional[Dict[str, int]] = None,
                 **kwargs) -> None:
        strides = check_strides(strides, num_stages)
        self.freeze_pooling = bool(freeze_pooling)
        # ResNet.__init__ calls _make_stem_layer once and make_res_layer once
        # per stage; these attributes tell those overrides what to build.
        self.stage_pooling = expand_stage_pooling(pooling, strides)
        self.pool_position = check_choice('pool_position', pool_position,
                                          POOL_POSITIONS)
        self.stem_pool_cfg, self.stem_pool_stride = split_stem_pooling(
            stem_pooling, 4)
        super().__init__(depth, num_stages=num_stages, strides=strides,
                         **kwargs)
        self.pruned_channels = pruned_channels
        apply_pruned_widths(self, pruned_channels)

    def channel_groups(self) -> List[ChannelGroup]:
        """The activation maps channel pruning can narrow, in execution
        order (see :mod:`sapool_mmdet.pruning.groups`)."""
        return resnet_groups(self)

    def _make_stem_layer(self, in_channels: int, stem_channels: int) -> None:
        super()._make_stem_layer(in_channels, stem_channels)
        if self.stem_pool_cfg is None:
            self.stem_pool = None
            return
        first_conv = self.stem[0] if self.deep_stem else self.conv1
        first_conv.stride = (1, 1)
        del self.maxpool
        self.stem_pool = self.build_pooling_layer(
            self.stem_pool_cfg, stem_channels, self.stem_pool_stride)

    def make_res_layer(self, **kwargs) -> nn.Sequential:
        pool_cfg = self.stage_pooling[len(self.res_layers)]
        if pool_cfg is None:
            return super().make_res_layer(**kwargs)
        channels = pool_channels(self.pool_position, kwargs['inplanes'],
                                 kwargs['planes'] * kwargs['block'].expansion)
        pool = self.build_pooling_layer(pool_cfg, channels, kwargs['stride'])
        stage = super().make_res_layer(**dict(kwargs, stride=1))
        return assemble_stage(list(stage), pool, self.pool_position)

    @property
    def stage_names(self) -> list:
        return self.res_layers

    def forward(self, x: torch.Tensor) -> tuple:
        if self.deep_stem:
            x = self.stem(x)
        else:
            x = self.relu(self.norm1(self.conv1(x)))
        x = self.maxpool(x) if self.stem_pool is None else self.stem_pool(x)
        outs = []
        for i, layer_name in enumerate(self.res_layers):
            x = getattr(self, layer_name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
