"""Channel groups of a backbone: the unit that channel pruning removes.

A channel of an activation map lives in several tensors: the filter of
the convolution that produces it and the norm after it, the filter of every
depthwise convolution it passes through (a depthwise conv maps channel c to
channel c only), the last convolution of every residual block that adds to
it, every channel-wise pooling it passes through, and the input slice
``theta[:, c]`` of every convolution that reads it. A
:class:`ChannelGroup` names all of them, so that pruning channel c zeroes it
everywhere and compaction removes it everywhere, and the outputs stay those
of the full-width network.

The groups are traced once per backbone type (:func:`mobilenet_v2_groups`,
:func:`resnet_groups`) by walking the modules in execution order. A group is
named after its first producing convolution (``'conv1'``,
``'layer2.0.expand_conv'``, ...) and marked ``before_pool`` when that
convolution runs before the backbone's first pooling layer: the maps Chen et
al. (WACV 2023, Sec. 4.2) prune.
"""
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule
from torch.nn.modules.batchnorm import _BatchNorm

from ..pooling import (AvgPool, DeformNLPool, LIPPool, MaxPool, MixNLPool,
                       NLPool, SoftPool)

__all__ = ['ConvUnit', 'ChannelGroup', 'mobilenet_v2_groups',
           'resnet_groups', 'channel_importance', 'group_importance',
           'narrow_groups_', 'select_groups', 'apply_pruned_widths',
           'SUPPORTED_POOLS']


@dataclass
class ConvUnit:
    """A convolution and the norm right after it (names relative to the
    backbone; ``norm`` is None when the conv has none)."""
    conv: str
    norm: Optional[str] = None


@dataclass
class ChannelGroup:
    """The tensors that hold one channel index of one activation map.

    Attributes:
        name (str): The first producing convolution; what the pruning hook's
            ``layers`` and the backbones' ``pruned_channels`` name.
        channels (int): Channels of the map.
        producers (list[ConvUnit]): Convs (and norms) whose output channel c
            is channel c of the map: the producing conv, the last conv of
            every residual block that adds to the map, and every depthwise
            conv the map passes through.
        consumers (list[str]): Dense convs that read the map (their input
            slice ``theta[:, c]`` is the paper's theta_l^{:,c,:,:}).
        poolings (list[str]): Channel-wise pooling layers the map passes
            through.
        before_pool (bool): The first producer runs before the backbone's
            first pooling layer.
        unsupported (str): Why the group cannot be pruned ('' if it can).
    """
    name: str
    channels: int
    producers: List[ConvUnit] = field(default_factory=list)
    consumers: List[str] = field(default_factory=list)
    poolings: List[str] = field(default_factory=list)
    before_pool: bool = False
    unsupported: str = ''


#: Pooling layers whose output channel c depends on input channel c alone
#: and is zero when it is zero, and whose parameters :func:`_narrow_pool_`
#: knows how to narrow. Parameter-free ones need nothing.
_PARAMETER_FREE_POOLS = (nn.MaxPool2d, nn.AvgPool2d, MaxPool, AvgPool,
                         SoftPool)
_NARROWABLE_POOLS = (NLPool, LIPPool) + _PARAMETER_FREE_POOLS
SUPPORTED_POOLS = ('NLPool', 'MixNLPool', 'LIPPool', 'SoftPool', 'MaxPool',
                   'AvgPool', 'nn.MaxPool2d', 'nn.AvgPool2d')


class _Tracer:
    """Follows the running activation map through a backbone, block by
    block, and records which tensors hold its channels."""

    def __init__(self, backbone: nn.Module) -> None:
        self.modules = dict(backbone.named_modules())
        self.groups: List[ChannelGroup] = []
        self.current: Optional[ChannelGroup] = None
        self.pool_seen = False

    def conv(self, conv: str, norm: Optional[str] = None,
             name: Optional[str] = None) -> None:
        """A dense conv reads the current map and starts a new one, named
        ``name`` (default: the conv's name)."""
        module = self.modules[conv]
        self._consume(conv)
        self.current = ChannelGroup(name or conv, module.out_channels,
                                    [ConvUnit(conv, norm)],
                                    before_pool=not self.pool_seen)
        self._check_norm(norm)
        self.groups.append(self.current)

    def depthwise(self, conv: str, norm: Optional[str] = None) -> None:
        """A depthwise conv: channel c of its output is channel c of its
        input passed through, so both maps are one group."""
        module = self.modules[conv]
        if not module.groups == module.in_channels == module.out_channels:
            raise TypeError(f'{conv} is not a depthwise conv (groups = in = '
                            f'out channels)')
        self.current.producers.append(ConvUnit(conv, norm))
        self._check_norm(norm)

    def add_to(self, group: ChannelGroup, conv: str,
               norm: Optional[str] = None) -> None:
        """A dense conv reads the current map and its output is added to
        ``group``'s map (a residual block), which runs on."""
        self._consume(conv)
        self.current = group
        group.producers.append(ConvUnit(conv, norm))
        self._check_norm(norm)

    def pool(self, name: str) -> None:
        module = self.modules[name]
        self.pool_seen = True
        if self.current is None:
            return
        self.current.poolings.append(name)
        if (not isinstance(module, _NARROWABLE_POOLS)
                or isinstance(module, DeformNLPool)):
            self._unsupported(
                f'it passes through {name} ({type(module).__name__}); '
                f'pruning supports the pooling types {SUPPORTED_POOLS}')

    def opaque(self, name: str, reason: str) -> None:
        """A block the tracer cannot see into: its input map cannot be
        pruned and its output map is not listed."""
        if self.current is not None:
            self._unsupported(f'{name} reads it and {reason}')
        self.current = ChannelGroup(name, 0, unsupported=reason)

    def output(self) -> None:
        """The current map is a backbone output: its width is the neck's."""
        if self.current is not None:
            self._unsupported('it is a backbone output (the neck reads all '
                              'its channels)')

    def _consume(self, conv: str) -> None:
        module = self.modules[conv]
        if type(module) is not nn.Conv2d:
            raise TypeError(
                f'channel pruning needs plain nn.Conv2d layers; {conv} is a '
                f'{type(module).__name__}')
        if self.current is None:
            return
        if module.groups != 1:
            self._unsupported(f'{conv} reads it with groups={module.groups}')
        self.current.consumers.append(conv)

    def _check_norm(self, norm: Optional[str]) -> None:
        if norm is not None and not isinstance(self.modules[norm],
                                               _BatchNorm):
            kind = type(self.modules[norm]).__name__
            self._unsupported(f'{norm} is a {kind}; pruning narrows batch '
                              f'norms only')

    def _unsupported(self, reason: str) -> None:
        if not self.current.unsupported:
            self.current.unsupported = reason


def _conv_module_unit(prefix: str, module: ConvModule) -> ConvUnit:
    return ConvUnit(f'{prefix}.conv',
                    f'{prefix}.{module.norm_name}' if module.with_norm
                    else None)


def _trace_stage_children(tracer: _Tracer, stage_name: str,
                          stage: nn.Module, trace_block) -> None:
    for child_name, child in stage.named_children():
        name = f'{stage_name}.{child_name}'
        if child_name == 'pool':
            tracer.pool(name)
        else:
            trace_block(tracer, name, child)


def mobilenet_v2_groups(backbone: nn.Module) -> List[ChannelGroup]:
    """The channel groups of an :class:`NLPoolMobileNetV2`, in execution
    order; see :class:`ChannelGroup`."""
    tracer = _Tracer(backbone)
    tracer.conv(*_mnv2_unit('conv1', backbone.conv1), name='conv1')
    if getattr(backbone, 'stem_pool', None) is not None:
        tracer.pool('stem_pool')

    def trace_block(tracer: _Tracer, name: str, block: nn.Module) -> None:
        if getattr(block, 'with_se', False):
            tracer.opaque(name, 'has a squeeze-excitation layer, which '
                          'channel pruning does not handle')
            return
        block_input = tracer.current
        if block.with_expand_conv:
            tracer.conv(*_mnv2_unit(f'{name}.expand_conv', block.expand_conv),
                        name=f'{name}.expand_conv')
        tracer.depthwise(*_mnv2_unit(f'{name}.depthwise_conv',
                                     block.depthwise_conv))
        linear = _mnv2_unit(f'{name}.linear_conv', block.linear_conv)
        if block.with_res_shortcut:
            tracer.add_to(block_input, *linear)
        else:
            tracer.conv(*linear, name=f'{name}.linear_conv')

    for i, layer_name in enumerate(backbone.layers):
        layer = getattr(backbone, layer_name)
        if isinstance(layer, ConvModule):  # the last 1x1 conv, 'conv2'
            tracer.conv(*_mnv2_unit(layer_name, layer), name=layer_name)
        else:
            _trace_stage_children(tracer, layer_name, layer, trace_block)
        if i in backbone.out_indices:
            tracer.output()
    return tracer.groups


def _mnv2_unit(prefix: str, module: ConvModule) -> tuple:
    unit = _conv_module_unit(prefix, module)
    return unit.conv, unit.norm


def resnet_groups(backbone: nn.Module) -> List[ChannelGroup]:
    """The channel groups of an :class:`NLPoolResNet` (BasicBlock or
    Bottleneck), in execution order; see :class:`ChannelGroup`."""
    tracer = _Tracer(backbone)
    if backbone.deep_stem:
        for i, module in enumerate(backbone.stem):
            if isinstance(module, nn.Conv2d):
                tracer.conv(f'stem.{i}', f'stem.{i + 1}')
    else:
        tracer.conv('conv1', backbone.norm1_name)
    if getattr(backbone, 'stem_pool', None) is not None:
        tracer.pool('stem_pool')
    else:
        tracer.pool('maxpool')

    def trace_block(tracer: _Tracer, name: str, block: nn.Module) -> None:
        if getattr(block, 'with_dcn', False) or getattr(
                block, 'with_plugins', False):
            tracer.opaque(name, 'has deformable convs or plugins, which '
                          'channel pruning does not handle')
            return
        block_input = tracer.current
        depth = 3 if hasattr(block, 'conv3') else 2
        for k in range(1, depth):
            tracer.conv(f'{name}.conv{k}',
                        f'{name}.{getattr(block, f"norm{k}_name")}')
        last = (f'{name}.conv{depth}',
                f'{name}.{getattr(block, f"norm{depth}_name")}')
        if block.downsample is None:
            tracer.add_to(block_input, *last)
            return
        # The shortcut's conv reads the block input and starts the new map;
        # the residual branch's last conv adds to it.
        residual_input = tracer.current
        tracer.current = block_input
        convs = [i for i, m in enumerate(block.downsample)
                 if isinstance(m, nn.Conv2d)]
        for i in range(len(block.downsample)):
            if i not in convs and not isinstance(block.downsample[i],
                                                 (nn.Conv2d, _BatchNorm)):
                tracer.pool(f'{name}.downsample.{i}')
        conv = convs[0]
        tracer.conv(f'{name}.downsample.{conv}',
                    f'{name}.downsample.{conv + 1}')
        shortcut = tracer.current
        tracer.current = residual_input
        tracer.add_to(shortcut, *last)

    for i, layer_name in enumerate(backbone.res_layers):
        _trace_stage_children(tracer, layer_name,
                              getattr(backbone, layer_name), trace_block)
        if i in backbone.out_indices:
            tracer.output()
    return tracer.groups


def select_groups(groups: Sequence[ChannelGroup],
                  layers: Optional[Sequence[str]] = None
                  ) -> List[ChannelGroup]:
    """The groups named in ``layers``, or, with None, every prunable group
    whose first producer runs before the first pooling layer.

    Raises:
        ValueError: for a name that is not a group, a group that cannot be
            pruned, or no prunable group at all.
    """
    prunable = [g for g in groups if not g.unsupported]
    if layers is None:
        chosen = [g for g in prunable if g.before_pool]
        if not chosen:
            raise ValueError(
                'no prunable activation map runs before the first pooling '
                'layer of this backbone; name the maps to prune with '
                f'layers=[...], valid: {[g.name for g in prunable]}')
        return chosen
    if isinstance(layers, str) or not isinstance(layers, (list, tuple)):
        raise ValueError(f'layers must be None or a list of convolution '
                         f'names, got {layers!r}')
    by_name = {g.name: g for g in groups}
    chosen = []
    for name in layers:
        group = by_name.get(name)
        if group is None:
            raise ValueError(
                f'layers: {name!r} is not a convolution that produces a '
                f'prunable activation map of this backbone; valid names: '
                f'{[g.name for g in prunable]}')
        if group.unsupported:
            raise ValueError(f'layers: the map of {name!r} cannot be pruned: '
                             f'{group.unsupported}')
        if group not in chosen:
            chosen.append(group)
    if not chosen:
        raise ValueError('layers is empty; give at least one of '
                         f'{[g.name for g in prunable]}')
    return chosen


def channel_importance(weight: torch.Tensor) -> torch.Tensor:
    """O^c = ||theta[:, c, :, :]||_F^2 for every input channel c of a
    (M, N, h, w) weight (Chen et al., WACV 2023, Sec. 4.2)."""
    return weight.detach().pow(2).sum(dim=(0, 2, 3))


def group_importance(group: ChannelGroup,
                     modules: Dict[str, nn.Module]) -> torch.Tensor:
    """The importance of each channel of a group's map: the squared
    Frobenius norm of its sub-matrix in every conv that reads the map (the
    readers' weights stacked along M: for one reader, exactly
    :func:`channel_importance`)."""
    importance = torch.zeros(group.channels)
    for name in group.consumers:
        importance += channel_importance(modules[name].weight).cpu()
    return importance


def _narrow_conv_(conv: nn.Conv2d, out_index: Optional[torch.Tensor],
                  in_index: Optional[torch.Tensor]) -> None:
    weight = conv.weight.data
    if out_index is not None:
        weight = weight.index_select(0, out_index.to(weight.device))
        if conv.bias is not None:
            conv.bias = nn.Parameter(
                conv.bias.data.index_select(0, out_index.to(weight.device)))
        conv.out_channels = len(out_index)
        if conv.groups > 1:  # depthwise: one input per output channel
            conv.groups = conv.in_channels = len(out_index)
    if in_index is not None:
        weight = weight.index_select(1, in_index.to(weight.device))
        conv.in_channels = len(in_index)
    conv.weight = nn.Parameter(weight.contiguous())


def _narrow_norm_(norm: _BatchNorm, index: torch.Tensor) -> None:
    index = index.to(norm.running_mean.device
                     if norm.running_mean is not None else 'cpu')
    if norm.affine:
        norm.weight = nn.Parameter(norm.weight.data.index_select(0, index))
        norm.bias = nn.Parameter(norm.bias.data.index_select(0, index))
    if norm.running_mean is not None:
        norm.running_mean = norm.running_mean.index_select(0, index)
        norm.running_var = norm.running_var.index_select(0, index)
    norm.num_features = len(index)


def _narrow_pool_(pool: nn.Module, index: torch.Tensor) -> None:
    """Keep the channels ``index`` of a channel-wise pooling layer."""
    if isinstance(pool, _PARAMETER_FREE_POOLS):
        return
    if isinstance(pool, NLPool):
        _narrow_conv_(pool.embed.conv, None, index)
        _narrow_conv_(pool.restore_conv, index, None)
        if isinstance(pool.restore_norm, _BatchNorm):
            _narrow_norm_(pool.restore_norm, index)
    if isinstance(pool, (LIPPool, MixNLPool)):
        local = pool.logit if isinstance(pool, LIPPool) else pool.local_logit
        _narrow_conv_(local.conv, index, index)
        if local.with_norm:
            _narrow_norm_(local.norm, index)
    pool.in_channels = len(index)


def narrow_groups_(backbone: nn.Module, groups: Sequence[ChannelGroup],
                   kept: Dict[str, torch.Tensor]) -> None:
    """Physically keep only the channels ``kept[group.name]`` (sorted
    indices) of each named group, in place: narrower producers, norms,
    depthwise convs, poolings and consumer input slices.

    Args:
        backbone (nn.Module): The backbone the groups were traced from.
        groups (sequence of ChannelGroup): Its groups (every one that
            ``kept`` names must be there).
        kept (dict): Group name -> 1-D LongTensor of the channels to keep.
    """
    modules = dict(backbone.named_modules())
    by_name = {g.name: g for g in groups}
    out_index: Dict[str, torch.Tensor] = {}
    in_index: Dict[str, torch.Tensor] = {}
    for name, index in kept.items():
        group = by_name[name]
        if group.unsupported:
            raise ValueError(f'the map of {name!r} cannot be narrowed: '
                             f'{group.unsupported}')
        index = torch.as_tensor(index, dtype=torch.long)
        for unit in group.producers:
            out_index[unit.conv] = index
            if unit.norm is not None:
                _narrow_norm_(modules[unit.norm], index)
        for conv in group.consumers:
            in_index[conv] = index
        for pool in group.poolings:
            _narrow_pool_(modules[pool], index)
    for conv in set(out_index) | set(in_index):
        _narrow_conv_(modules[conv], out_index.get(conv),
                      in_index.get(conv))


def apply_pruned_widths(backbone: nn.Module,
                        widths: Optional[Dict[str, int]]) -> None:
    """Narrow a freshly built backbone to the widths of a compacted one: the
    map of group ``name`` keeps ``widths[name]`` channels (the backbones'
    ``pruned_channels`` argument, written by ``tools/compact_pruned.py``).

    Raises:
        ValueError: for an unknown group name or a width outside
            [1, channels].
    """
    if not widths:
        return
    if not isinstance(widths, dict):
        raise ValueError(f'pruned_channels must be a dict of convolution '
                         f'name -> channels kept, got {widths!r}')
    groups = backbone.channel_groups()
    by_name = {g.name: g for g in groups}
    kept = {}
    for name, width in widths.items():
        group = by_name.get(name)
        if group is None or group.unsupported:
            raise ValueError(
                f'pruned_channels: {name!r} is not a convolution that '
                f'produces a prunable activation map of this backbone; '
                f'valid names: '
                f'{[g.name for g in groups if not g.unsupported]}')
        if (isinstance(width, bool) or not isinstance(width, int)
                or not 1 <= width <= group.channels):
            raise ValueError(
                f'pruned_channels[{name!r}] must be an integer in '
                f'[1, {group.channels}] (the channels of that map), got '
                f'{width!r}')
        kept[name] = torch.arange(width)
    narrow_groups_(backbone, groups, kept)
