"""Channel pruning of the first stage (Chen et al., WACV 2023, Sec. 4.2):
the channel groups of the backbones (``groups``), the prune-and-regrow
algorithm (``pruner``) and the compaction of pruned models (``compact``,
imported on its own: it builds whole detectors from configs).
The training-time hook over the algorithm is
:class:`sapool_mmdet.engine.ChannelPruningHook`.
"""
from .groups import (SUPPORTED_POOLS, ChannelGroup, ConvUnit,
                     apply_pruned_widths, channel_importance,
                     group_importance, mobilenet_v2_groups, narrow_groups_,
                     resnet_groups, select_groups)
from .pruner import ChannelPruner, allocate, cosine_prune_rate

__all__ = ['ChannelGroup', 'ChannelPruner', 'allocate', 'cosine_prune_rate', 'ConvUnit', 'SUPPORTED_POOLS',
           'apply_pruned_widths', 'channel_importance', 'group_importance',
           'mobilenet_v2_groups', 'narrow_groups_', 'resnet_groups',
           'select_groups']
