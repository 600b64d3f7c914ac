"""Where a pooling layer sits inside a backbone stage.

Shared by every pooled backbone. A stage is an ``nn.Sequential`` of blocks
named '0', '1', ...; the pooling module is added under the name 'pool', so
the stock blocks keep their state-dict keys in every position:

- 'pre': pool the stage's input, then every block at stride 1 on the
  reduced map. The resolution schedule of the stock backbone: the fair
  drop-in comparison.
- 'inner': the paper's inner-stage pooling (Sec. 5, Fig. 3): "the
  activation is down-sampled after the first block of each stage": the first
  block runs at stride 1 on the incoming map, its output is pooled, the
  other blocks run on the reduced map.
- 'outer': the paper's outer-stage pooling: "down-sampled by the pooling
  layer after each stage": all blocks run on the incoming map and the
  stage's output is pooled, as the official ResNet code does.
"""
from collections import OrderedDict
from typing import List, Optional, Sequence, Tuple, Union

import torch.nn as nn
from mmengine.model import Sequential

from ..pooling import POOLING, build_pooling
from ..pooling.builder import (check_choice, check_positive_int,
                               with_defaults)

__all__ = ['POOL_POSITIONS', 'assemble_stage', 'pool_channels',
           'expand_stage_pooling', 'check_strides', 'split_stem_pooling',
           'PoolingTrainMixin']

POOL_POSITIONS = ('pre', 'inner', 'outer')


def check_strides(strides: Sequence[int], num_stages: int) -> tuple:
    """Validate one stride per stage and return them as a tuple."""
    if not isinstance(strides, (list, tuple)) or len(strides) != num_stages:
        raise ValueError(f'strides must be a sequence of {num_stages} '
                         f'integers (one per stage), got {strides!r}')
    for i, s in enumerate(strides):
        check_positive_int(f'strides[{i}]', s)
    return tuple(strides)


def expand_stage_pooling(pooling: Union[None, dict, Sequence],
                         strides: Sequence[int]) -> List[Optional[dict]]:
    """Expand the backbone's ``pooling`` argument to one entry per stage.

    Args:
        pooling: None (every stage keeps its stock strided conv), one dict
            (used by every stage whose stride is > 1) or a list with one
            entry per stage (None keeps the stock strided conv).
        strides: The stage strides.

    Returns:
        list: One pooling dict or None per stage; None for stride-1 stages.
    """
    if pooling is None:
        return [None] * len(strides)
    if isinstance(pooling, dict):
        _check_pool_cfg(pooling, 'pooling')
        return [dict(pooling) if s > 1 else None for s in strides]
    if not isinstance(pooling, (list, tuple)) or len(pooling) != len(strides):
        raise ValueError(
            f'pooling must be None, a dict, or a list of {len(strides)} '
            f'entries (one per stage, None for the stock strided conv); got '
            f'{pooling!r}')
    stages = []
    for i, (cfg, s) in enumerate(zip(pooling, strides)):
        if cfg is not None:
            _check_pool_cfg(cfg, f'pooling[{i}]')
            if s == 1:
                raise ValueError(
                    f'pooling[{i}] is {cfg!r} but strides[{i}] is 1: a '
                    f'stride-1 stage has no down-sampling to replace; set '
                    f'pooling[{i}] to None or strides[{i}] > 1')
        stages.append(dict(cfg) if cfg is not None else None)
    return stages


def _check_pool_cfg(cfg, name: str) -> None:
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise ValueError(f'{name} must be a dict with a "type" key, one of '
                         f'{sorted(POOLING.module_dict)}; got {cfg!r}')
    if 'stride' in cfg or 'in_channels' in cfg:
        raise ValueError(f'{name} must not set stride or in_channels: the '
                         f'backbone sets them from strides and the stage '
                         f'widths; got {cfg!r}')


def split_stem_pooling(stem_pooling: Optional[dict],
                       default_stride: int) -> tuple:
    """Return (pooling dict without 'stride', stride) for ``stem_pooling``."""
    if stem_pooling is None:
        return None, None
    if not isinstance(stem_pooling, dict) or 'type' not in stem_pooling:
        raise ValueError(
            f'stem_pooling must be None or a dict with a "type" key, one of '
            f'{sorted(POOLING.module_dict)}, and optionally "stride" '
            f'(default {default_stride}); got {stem_pooling!r}')
    cfg = dict(stem_pooling)
    stride = check_positive_int('stem_pooling stride',
                                cfg.pop('stride', default_stride))
    return cfg, stride


def pool_channels(position: str, in_channels: int, out_channels: int) -> int:
    """Channels the pooling sees: the stage's input for 'pre', else output."""
    check_choice('pool_position', position, POOL_POSITIONS)
    return in_channels if position == 'pre' else out_channels


def assemble_stage(blocks: Sequence[nn.Module], pool: nn.Module,
                   position: str) -> nn.Sequential:
    """Return a Sequential with the blocks under '0', '1', ... and ``pool``
    under 'pool', placed as ``position`` says.

    It is mmengine's ``Sequential``, so ``init_weights`` still reaches the
    blocks and the pooling and applies their own ``init_cfg`` (e.g. ResNet's
    zero-initialised last norm of each residual block).
    """
    check_choice('pool_position', position, POOL_POSITIONS)
    named = [(str(i), block) for i, block in enumerate(blocks)]
    insert_at = {'pre': 0, 'inner': 1, 'outer': len(named)}[position]
    named.insert(insert_at, ('pool', pool))
    return Sequential(OrderedDict(named))


class PoolingTrainMixin:
    """What a pooled backbone does with its pooling layers under mmdet's
    training recipes (``frozen_stages``, ``norm_eval``).

    The pooling layers are new: an ImageNet checkpoint has no weights and no
    norm statistics for them. So, unless the backbone's ``freeze_pooling``
    is True, ``frozen_stages`` freezes only the stock layers of a stage
    (never the pooling it gained, nor the stem pooling) and ``norm_eval``
    leaves the pooling norms in training mode. With ``freeze_pooling=True``
    a pooling layer is treated like the stock layers of its stage (the
    stem pooling as part of the stem, stage 0).

    The backbone sets ``freeze_pooling`` and ``stem_pool``, lists its
    stage names in ``stage_names`` and builds every pooling layer with
    :meth:`build_pooling_layer`.
    """

    freeze_pooling: bool = False

    def build_pooling_layer(self, cfg: dict, channels: int,
                            stride: int) -> nn.Module:
        """Build a pooling layer with the backbone's ``norm_cfg`` (e.g.
        SyncBN) unless ``cfg`` sets its own."""
        return build_pooling(with_defaults(cfg, norm_cfg=self.norm_cfg),
                             channels, stride)

    @property
    def stage_names(self) -> List[str]:
        raise NotImplementedError

    def pooling_layers(self) -> List[Tuple[int, nn.Module]]:
        """(stage, module) of every pooling layer: stage 0 is the stem,
        stage i the i-th stage (``frozen_stages`` counts the same way)."""
        layers = []
        if getattr(self, 'stem_pool', None) is not None:
            layers.append((0, self.stem_pool))
        for i, name in enumerate(self.stage_names, start=1):
            pool = getattr(getattr(self, name), 'pool', None)
            if pool is not None:
                layers.append((i, pool))
        return layers

    def _freeze_stages(self) -> None:
        super()._freeze_stages()
        for stage, pool in self.pooling_layers():
            if stage > self.frozen_stages:
                continue
            if self.freeze_pooling:
                pool.eval()
            for param in pool.parameters():
                param.requires_grad = not self.freeze_pooling

    def train(self, mode: bool = True):
        # mmdet's MobileNetV2.train returns None; nn.Module returns self.
        super().train(mode)
        if mode and not self.freeze_pooling:
            for _, pool in self.pooling_layers():
                pool.train(True)
        return self
