"""The training-loop side of channel pruning (Chen et al., WACV 2023,
Sec. 4.2, 'Ours+CP'): a hook that drives
:class:`sapool_mmdet.pruning.ChannelPruner` through mmengine's runner.

The algorithm itself (masks, importance, allocation, the schedule) lives
in :mod:`sapool_mmdet.pruning`; its names are re-exported here so that
``from sapool_mmdet.engine.pruning import ChannelPruner`` keeps working.
"""
import time
from typing import Optional, Sequence

import torch
import torch.nn as nn
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ..pruning.pruner import ChannelPruner, allocate, cosine_prune_rate

__all__ = ['ChannelPruner', 'ChannelPruningHook', 'allocate',
           'cosine_prune_rate']


@HOOKS.register_module()
class ChannelPruningHook(Hook):
    """Channel pruning of the first stage, trained jointly with the pooling:
    Chen et al., "Self-Attentive Pooling for Efficient Deep Learning", WACV
    2023, Sec. 4.2 ('Ours+CP').

    The unit pruned is one channel of an activation map that the backbone
    computes before its first pooling layer (all such maps by default). The
    importance of channel c of the map read by layer l is
    O_l^c = ||theta_l[:, c, :, :]||_F^2. Before the first iteration every
    map is pruned to ``sparsity`` (lowest O_l^c first); then every
    ``interval`` iterations each map prunes a fraction p_i of its unpruned
    channels, with p_i decaying from ``prune_rate`` to 0 along a cosine
    over the training, and the same number of zero channels is regrown,
    split over the maps by their normalised momentum (see
    :meth:`ChannelPruner.update`). The total pruned count is always
    round(sparsity * channels). After every optimizer step the pruned
    channels are set to exactly zero in every tensor that holds them,
    optimizer state included. The masks are saved in the checkpoint
    (key ``'channel_pruning'``) and restored by ``--resume``;
    ``tools/compact_pruned.py`` then removes the pruned channels.

    Args:
        sparsity (float): Fraction of the channels pruned, in (0, 1).
            Default: 0.5 (the paper's 2x).
        interval (int): Iterations between prune-and-regrow steps, >= 1.
            Default: 100.
        prune_rate (float): The initial p_i, in [0, 1); 0 keeps the initial
            choice of channels fixed. Default: 0.3.
        layers (list[str], optional): The maps to prune, by the name (in
            the backbone) of the conv that produces each; None: every map
            before the first pooling layer. Default: None.
        seed (int): Seed for the choice among zero channels to regrow.
            Default: 0.
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self,
                 sparsity: float = 0.5,
                 interval: int = 100,
                 prune_rate: float = 0.3,
                 layers: Optional[Sequence[str]] = None,
                 seed: int = 0) -> None:
        if (isinstance(sparsity, bool)
                or not isinstance(sparsity, (int, float))
                or not 0 < sparsity < 1):
            raise ValueError(f'sparsity must be a number in (0, 1) (0.5 '
                             f'prunes half the channels: 2x), got '
                             f'{sparsity!r}')
        if (isinstance(interval, bool) or not isinstance(interval, int)
                or interval < 1):
            raise ValueError(f'interval must be an integer >= 1 (iterations '
                             f'between prune-and-regrow steps), got '
                             f'{interval!r}')
        if (isinstance(prune_rate, bool)
                or not isinstance(prune_rate, (int, float))
                or not 0 <= prune_rate < 1):
            raise ValueError(f'prune_rate must be a number in [0, 1), got '
                             f'{prune_rate!r}')
        if layers is not None and (isinstance(layers, str) or not all(
                isinstance(name, str) for name in layers)):
            raise ValueError(f'layers must be None or a list of convolution '
                             f'names, got {layers!r}')
        self.sparsity = float(sparsity)
        self.interval = interval
        self.prune_rate = float(prune_rate)
        self.layers = None if layers is None else list(layers)
        self.seed = seed
        self.pruner: Optional[ChannelPruner] = None
        self.seconds = 0.0
        self.iterations = 0

    @staticmethod
    def _backbone(runner) -> nn.Module:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if not hasattr(model, 'backbone'):
            raise TypeError(f'ChannelPruningHook prunes a detector\'s '
                            f'backbone; {type(model).__name__} has none')
        return model.backbone

    @staticmethod
    def _optimizer(runner) -> Optional[torch.optim.Optimizer]:
        wrapper = getattr(runner, 'optim_wrapper', None)
        return getattr(wrapper, 'optimizer', None)

    def before_run(self, runner) -> None:
        # Before the checkpoint is loaded and before the first iteration:
        # bad layer names fail here.
        self.pruner = ChannelPruner(self._backbone(runner), self.sparsity,
                                    self.layers, self.seed)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if 'channel_pruning' in checkpoint and self.pruner is not None:
            self.pruner.load_state_dict(checkpoint['channel_pruning'])
            runner.logger.info('channel pruning: masks restored from the '
                               'checkpoint')

    def before_train(self, runner) -> None:
        if self.pruner.masks is None:
            self.pruner.prune_initial()
        self.pruner.apply(self._optimizer(runner))
        total = sum(g.channels for g in self.pruner.groups)
        runner.logger.info(
            f'channel pruning: {self.pruner.target} of {total} channels '
            f'pruned (sparsity {self.sparsity}); pruned per map: '
            f'{self.pruner.pruned_counts()}')

    def after_train_iter(self, runner, batch_idx: int,
                         data_batch=None, outputs=None) -> None:
        start = time.perf_counter()
        done = runner.iter + 1
        optimizer = self._optimizer(runner)
        if done % self.interval == 0 and done < runner.max_iters:
            rate = cosine_prune_rate(self.prune_rate, done / runner.max_iters)
            pruned, regrown = self.pruner.update(rate, optimizer)
            runner.logger.info(
                f'channel pruning at iter {done}: rate {rate:.4f}, '
                f'{pruned} pruned, {regrown} regrown; pruned per map '
                f'{self.pruner.pruned_counts()}')
        else:
            self.pruner.apply(optimizer)
        self.seconds += time.perf_counter() - start
        self.iterations += 1

    def after_train(self, runner) -> None:
        if self.iterations:
            runner.logger.info(
                f'channel pruning: {1000 * self.seconds / self.iterations:.2f}'
                f' ms per iteration in the hook over {self.iterations} '
                f'iterations')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self.pruner is not None and self.pruner.masks is not None:
            checkpoint['channel_pruning'] = self.pruner.state_dict()
