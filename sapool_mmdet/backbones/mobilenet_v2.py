"""MobileNetV2 whose down-sampling stages use any registered pooling."""
from typing import Dict, List, Optional, Sequence, Union

import torch
from mmdet.models.backbones import MobileNetV2
from mmdet.registry import MODELS

from ..pooling.builder import check_choice
from ..pruning.groups import (ChannelGroup, apply_pruned_widths,
                              mobilenet_v2_groups)
from .pooled_stage import (POOL_POSITIONS, PoolingTrainMixin, assemble_stage,
                           check_strides, expand_stage_pooling, pool_channels,
                           split_stem_pooling)

__all__ = ['NLPoolMobileNetV2']


@MODELS.register_module()
class NLPoolMobileNetV2(PoolingTrainMixin, MobileNetV2):
    """mmdet's MobileNetV2 with a pooling layer in any down-sampling stage
    (Chen et al., WACV 2023, Sec. 5).

    With ``pooling=None`` and the default ``strides`` it is mmdet's
    ``MobileNetV2``: the same modules and state-dict keys, so a stock
    checkpoint loads into every pooled variant with only the pooling modules
    missing. A pooled stage keeps its blocks under the stock names
    (``layerK.0``, ``layerK.1``, ...) and adds ``layerK.pool``; its blocks
    run at stride 1 and the pooling does the down-sampling.

    Args:
        strides (Sequence[int]): One stride per inverted-residual stage.
            The first is the paper's s1 in {1, 2, 4}.
            Default: (1, 2, 2, 2, 1, 2, 1), the stock schedule.
        pooling (dict | list | None): None keeps every stock strided
            depthwise conv; one pooling dict is used by every stage whose
            stride is > 1; a list of 7 gives one entry per stage (None keeps
            the stock strided conv). ``stride`` and ``in_channels`` come from
            the backbone. Default: None.
        pool_position (str): 'pre', 'inner' or 'outer'; see
            :mod:`sapool_mmdet.backbones.pooled_stage`. Default: 'pre'.
        stem_pooling (dict, optional): A pooling dict (with an optional
            ``stride``, default 2) that takes over the stem conv's
            down-sampling: the stem conv runs at stride 1 and this pooling
            follows it (the official code's 'prepool'). Default: None.
        freeze_pooling (bool): Treat the pooling layers like the stock
            layers under ``frozen_stages`` and ``norm_eval``. By default
            they are new layers and always train: ``frozen_stages`` never
            freezes them and ``norm_eval`` leaves their norms in training
            mode. See :class:`~.pooled_stage.PoolingTrainMixin`.
            Default: False.
        pruned_channels (dict, optional): Channels kept in the activation
            maps of a channel-pruned network, by the name of the conv that
            produces the map (see :meth:`channel_groups`); every module
            that holds those channels is built that narrow. Written by
            ``tools/compact_pruned.py``. Default: None (full width).
        **kwargs: Every argument of mmdet's ``MobileNetV2`` (widen_factor,
            out_indices, frozen_stages, conv_cfg, norm_cfg, act_cfg,
            norm_eval, with_cp, pretrained, init_cfg). The pooling layers
            use the backbone's ``norm_cfg`` (e.g. SyncBN) unless their dict
            sets its own.
    """

    def __init__(self,
                 strides: Sequence[int] = (1, 2, 2, 2, 1, 2, 1),
                 pooling: Union[None, dict, Sequence] = None,
                 pool_position: str = 'pre',
                 stem_pooling: Optional[dict] = None,
                 freeze_pooling: bool = False,
                 pruned_channels: Optional[Dict[str, int]] = None,
                 **kwargs) -> None:
        self.freeze_pooling = bool(freeze_pooling)
        num_stages = len(MobileNetV2.arch_settings)
        strides = check_strides(strides, num_stages)
        # MobileNetV2.__init__ calls make_layer once per stage; these
        # attributes tell that override what each stage gets.
        self.arch_settings = [[t, c, n, s] for (t, c, n, _), s in zip(
            MobileNetV2.arch_settings, strides)]
        self.strides = strides
        self.stage_pooling = expand_stage_pooling(pooling, strides)
        self.pool_position = check_choice('pool_position', pool_position,
                                          POOL_POSITIONS)
        stem_cfg, stem_stride = split_stem_pooling(stem_pooling, 2)
        super().__init__(**kwargs)
        if stem_cfg is not None:
            self.conv1.conv.stride = (1, 1)
            self.stem_pool = self.build_pooling_layer(
                stem_cfg, self.conv1.out_channels, stem_stride)
        else:
            self.stem_pool = None
        self.pruned_channels = pruned_channels
        apply_pruned_widths(self, pruned_channels)

    def channel_groups(self) -> List[ChannelGroup]:
        """The activation maps channel pruning can narrow, in execution
        order (see :mod:`sapool_mmdet.pruning.groups`)."""
        return mobilenet_v2_groups(self)

    def make_layer(self, out_channels: int, num_blocks: int, stride: int,
                   expand_ratio: int) -> torch.nn.Sequential:
        pool_cfg = self.stage_pooling[len(self.layers)]
        if pool_cfg is None:
            return super().make_layer(out_channels, num_blocks, stride,
                                      expand_ratio)
        channels = pool_channels(self.pool_position, self.in_channels,
                                 out_channels)
        pool = self.build_pooling_layer(pool_cfg, channels, stride)
        stage = super().make_layer(out_channels, num_blocks, 1, expand_ratio)
        return assemble_stage(list(stage), pool, self.pool_position)

    @property
    def stage_names(self) -> list:
        return self.layers

    def forward(self, x: torch.Tensor) -> tuple:
        x = self.conv1(x)
        if self.stem_pool is not None:
            x = self.stem_pool(x)
        outs = []
        for i, layer_name in enumerate(self.layers):
            x = getattr(self, layer_name)(x)
            if i in self.out_indices:
                outs.append(x)
        return tuple(outs)
