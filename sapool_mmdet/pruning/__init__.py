"""Channel pruning of the first stage (Chen et al., WACV 2023, Sec. 4.2):
the channel groups of the backbones and the compaction of pruned models.
The training-time hook is :class:`sapool_mmdet.engine.ChannelPruningHook`.
"""
from .groups import (SUPPORTED_POOLS, ChannelGroup, ConvUnit,
                     apply_pruned_widths, channel_importance,
                     group_importance, mobilenet_v2_groups, narrow_groups_,
                     resnet_groups, select_groups)

__all__ = ['ChannelGroup', 'ConvUnit', 'SUPPORTED_POOLS',
           'apply_pruned_widths', 'channel_importance', 'group_importance',
           'mobilenet_v2_groups', 'narrow_groups_', 'resnet_groups',
           'select_groups']
