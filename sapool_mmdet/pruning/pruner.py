"""The channel-pruning algorithm of Chen et al., WACV 2023, Sec. 4.2
('Ours+CP'), with the sparse-learning procedure it cites (Kundu et al.,
DNR, ASP-DAC 2021): prune and regrow channels during training, so that the
pruned network needs no separate fine-tuning.

This module holds the state and the arithmetic (masks, importance,
allocation, the cosine schedule); the training loop drives it through
:class:`sapool_mmdet.engine.ChannelPruningHook`.
"""
import math
from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn

from .groups import ChannelGroup, group_importance, select_groups

__all__ = ['ChannelPruner', 'allocate', 'cosine_prune_rate']


def allocate(total: int, weights: Sequence[float],
             caps: Sequence[int]) -> List[int]:
    """Split ``total`` into integers proportional to ``weights``, none above
    its cap; the parts always sum to ``total``.

    Shares are rounded down, the units left over go to the largest
    remainders, and what a capped part cannot take goes to the others in
    proportion to their weights (all weights zero: equal weights).

    Raises:
        ValueError: if the caps sum to less than ``total``.
    """
    if total > sum(caps):
        raise ValueError(f'cannot place {total} channels in parts that hold '
                         f'{sum(caps)}')
    parts = [0] * len(caps)
    remaining = total
    while remaining > 0:
        open_parts = [i for i, cap in enumerate(caps) if parts[i] < cap]
        mass = sum(max(weights[i], 0.0) for i in open_parts)
        shares = {i: remaining * (max(weights[i], 0.0) / mass if mass > 0
                                  else 1.0 / len(open_parts))
                  for i in open_parts}
        given = 0
        for i in open_parts:
            take = min(int(shares[i]), caps[i] - parts[i], remaining - given)
            parts[i] += take
            given += take
        by_remainder = sorted(open_parts,
                              key=lambda i: (-(shares[i] - int(shares[i])), i))
        for i in by_remainder:
            if given == remaining:
                break
            if parts[i] < caps[i]:
                parts[i] += 1
                given += 1
        remaining -= given
    return parts


def cosine_prune_rate(initial: float, progress: float) -> float:
    """p_i = initial * (1 + cos(pi * progress)) / 2: decays from
    ``initial`` at the start of training to 0 at its end."""
    progress = min(max(progress, 0.0), 1.0)
    return initial * 0.5 * (1.0 + math.cos(math.pi * progress))


class ChannelPruner:
    """The pruning state of one backbone: which channels of which activation
    maps are pruned, and the operations of Sec. 4.2 on it.

    Args:
        backbone (nn.Module): An ``NLPoolMobileNetV2`` or ``NLPoolResNet``
            (anything with ``channel_groups()``).
        sparsity (float): Fraction of the selected maps' channels pruned,
            in (0, 1); 0.5 is the paper's 2x.
        layers (list[str], optional): The maps to prune, by the name of the
            conv that produces each; None: every map before the first
            pooling layer.
        seed (int): Seed of the choice among zero channels to regrow.
    """

    def __init__(self, backbone: nn.Module, sparsity: float,
                 layers: Optional[Sequence[str]] = None,
                 seed: int = 0) -> None:
        if not hasattr(backbone, 'channel_groups'):
            raise TypeError(
                f'channel pruning needs a backbone that lists its channel '
                f'groups (NLPoolMobileNetV2, NLPoolResNet); got '
                f'{type(backbone).__name__}')
        self.groups: List[ChannelGroup] = select_groups(
            backbone.channel_groups(), layers)
        self.modules: Dict[str, nn.Module] = dict(backbone.named_modules())
        self.sparsity = sparsity
        channels = [g.channels for g in self.groups]
        self.target = round(sparsity * sum(channels))
        most = sum(c - 1 for c in channels)
        if not 1 <= self.target <= most:
            raise ValueError(
                f'sparsity={sparsity} prunes {self.target} of the '
                f'{sum(channels)} channels of {self.names}; it must prune at '
                f'least 1 and at most {most} (one channel kept per map)')
        self.generator = torch.Generator().manual_seed(seed)
        self.masks: Optional[Dict[str, torch.Tensor]] = None

    @property
    def names(self) -> List[str]:
        return [g.name for g in self.groups]

    def pruned_counts(self) -> Dict[str, int]:
        """Pruned channels per map."""
        return {name: int(mask.sum()) for name, mask in self.masks.items()}

    def importance(self, group: ChannelGroup) -> torch.Tensor:
        """O_l^c of every channel of a map (see ``group_importance``)."""
        return group_importance(group, self.modules)

    # What holds a channel: (module, parameter name, channel dim).
    def _tensors(self, group: ChannelGroup) -> List[Tuple[nn.Module, str,
                                                          int]]:
        tensors = []
        for unit in group.producers:
            tensors += [(self.modules[unit.conv], 'weight', 0),
                        (self.modules[unit.conv], 'bias', 0)]
            if unit.norm is not None:
                tensors += [(self.modules[unit.norm], 'weight', 0),
                            (self.modules[unit.norm], 'bias', 0)]
        tensors += [(self.modules[c], 'weight', 1) for c in group.consumers]
        return [(m, n, d) for m, n, d in tensors
                if getattr(m, n, None) is not None]

    @torch.no_grad()
    def prune_initial(self) -> None:
        """Prune every map to the same fraction (the total is the target),
        the lowest-importance channels first."""
        counts = allocate(self.target, [g.channels for g in self.groups],
                          [g.channels - 1 for g in self.groups])
        self.masks = {}
        for group, count in zip(self.groups, counts):
            mask = torch.zeros(group.channels, dtype=torch.bool)
            mask[self._lowest(group, ~mask, count)] = True
            self.masks[group.name] = mask

    def _lowest(self, group: ChannelGroup, candidates: torch.Tensor,
                count: int) -> torch.Tensor:
        index = candidates.nonzero().flatten()
        order = torch.sort(self.importance(group)[index], stable=True)[1]
        return index[order[:count]]

    @torch.no_grad()
    def update(self, rate: float,
               optimizer: Optional[torch.optim.Optimizer] = None
               ) -> Tuple[int, int]:
        """One prune-and-regrow step of Sec. 4.2.

        Each map loses round(rate * its unpruned channels) channels of
        lowest O_l^c (keeping at least one); as many zero channels are then
        regrown, split over the maps in proportion to each map's normalised
        momentum (the mean |momentum| of its unpruned input slices), so
        that the total pruned count stays the target. Regrown channels get
        a fresh producer filter (Kaiming, fan-out) and norm (weight 1, bias
        0); their input slices stay zero, so the network's function is
        unchanged by the step and gradients reach them.

        Returns:
            tuple[int, int]: Channels pruned and regrown (equal).
        """
        just_pruned = {}
        for group in self.groups:
            mask = self.masks[group.name]
            active = int((~mask).sum())
            count = min(round(rate * active), active - 1)
            index = self._lowest(group, ~mask, count)
            just_pruned[group.name] = index
            mask[index] = True
        total = sum(len(i) for i in just_pruned.values())
        self.apply(optimizer)
        if total == 0:
            return 0, 0
        momentum = [self._momentum(g, optimizer) for g in self.groups]
        caps = [int(self.masks[g.name].sum()) for g in self.groups]
        regrow = allocate(total, momentum, caps)
        for group, count in zip(self.groups, regrow):
            if count:
                self._regrow(group, just_pruned[group.name], count)
        # A fresh filter of one map is also a reader of another (a 1x1
        # projection reads one pruned map and produces the next).
        self.apply(optimizer)
        return total, sum(regrow)

    def _momentum(self, group: ChannelGroup,
                  optimizer: Optional[torch.optim.Optimizer]) -> float:
        """Mean |momentum| of the unpruned input slices of a map's readers;
        1.0 where the optimizer keeps no momentum."""
        active = (~self.masks[group.name]).nonzero().flatten()
        values = []
        for conv in group.consumers:
            buffer = _momentum_buffer(optimizer, self.modules[conv].weight)
            if buffer is None:
                return 1.0
            values.append(buffer.index_select(1, active.to(
                buffer.device)).abs().flatten())
        return float(torch.cat(values).mean()) if values else 1.0

    def _regrow(self, group: ChannelGroup, just_pruned: torch.Tensor,
                count: int) -> None:
        mask = self.masks[group.name]
        zero = mask.nonzero().flatten()
        fresh = zero[~torch.isin(zero, just_pruned)]
        fresh = fresh[torch.randperm(len(fresh), generator=self.generator)]
        chosen = torch.cat([fresh, just_pruned])[:count]
        mask[chosen] = False
        for unit in group.producers:
            conv = self.modules[unit.conv]
            rows = conv.weight[chosen]
            # Kaiming's fan-out: the outputs each input value reaches.
            fan_out = conv.out_channels // conv.groups * rows[0, 0].numel()
            std = math.sqrt(2.0 / fan_out)
            conv.weight[chosen] = (torch.randn(
                rows.shape, generator=self.generator) * std).to(rows)
            if conv.bias is not None:
                conv.bias[chosen] = 0
            if unit.norm is not None:
                norm = self.modules[unit.norm]
                if norm.affine:
                    norm.weight[chosen] = 1
                    norm.bias[chosen] = 0
                if norm.running_mean is not None:
                    norm.running_mean[chosen] = 0
                    norm.running_var[chosen] = 1

    @torch.no_grad()
    def apply(self, optimizer: Optional[torch.optim.Optimizer] = None
              ) -> None:
        """Zero every pruned channel wherever it could leak: producing
        filters and their biases, norm weights and biases, depthwise
        filters, readers' input slices, and the optimizer's state (momentum,
        Adam moments) of all of them."""
        for group in self.groups:
            index = self.masks[group.name].nonzero().flatten()
            if not len(index):
                continue
            for module, name, dim in self._tensors(group):
                param = getattr(module, name)
                index_on = index.to(param.device)
                param.index_fill_(dim, index_on, 0)
                state = optimizer.state.get(param, {}) if optimizer else {}
                for value in state.values():
                    if (isinstance(value, torch.Tensor)
                            and value.shape == param.shape):
                        value.index_fill_(dim, index_on, 0)

    def state_dict(self) -> dict:
        """What a checkpoint keeps: the pruned channel indices per map."""
        return dict(
            sparsity=self.sparsity,
            layers=self.names,
            channels={g.name: g.channels for g in self.groups},
            pruned={name: mask.nonzero().flatten().tolist()
                    for name, mask in self.masks.items()},
            generator=self.generator.get_state())

    def load_state_dict(self, state: dict) -> None:
        """Restore the masks of :meth:`state_dict`.

        Raises:
            ValueError: if the checkpoint pruned other maps, other widths or
                another number of channels than this pruner.
        """
        if list(state.get('layers', [])) != self.names:
            raise ValueError(
                f'the checkpoint pruned the maps {state.get("layers")}, this '
                f'run prunes {self.names}; give the hook the same layers')
        masks = {}
        for group in self.groups:
            if state['channels'][group.name] != group.channels:
                raise ValueError(
                    f'the checkpoint\'s map {group.name} has '
                    f'{state["channels"][group.name]} channels, the model '
                    f'{group.channels}')
            mask = torch.zeros(group.channels, dtype=torch.bool)
            mask[torch.as_tensor(state['pruned'][group.name],
                                 dtype=torch.long)] = True
            masks[group.name] = mask
        pruned = sum(int(m.sum()) for m in masks.values())
        if pruned != self.target:
            raise ValueError(
                f'the checkpoint prunes {pruned} channels, sparsity='
                f'{self.sparsity} asks for {self.target}; resume with the '
                f'sparsity it was trained with ({state.get("sparsity")})')
        self.masks = masks
        if 'generator' in state:
            self.generator.set_state(state['generator'])


def _momentum_buffer(optimizer: Optional[torch.optim.Optimizer],
                     param: torch.Tensor) -> Optional[torch.Tensor]:
    if optimizer is None:
        return None
    state = optimizer.state.get(param, {})
    for key in ('momentum_buffer', 'exp_avg'):
        if isinstance(state.get(key), torch.Tensor):
            return state[key]
    return None
