"""Hooks that every runner gets on ``import sapool_mmdet`` (see
:mod:`sapool_mmdet.engine.dist`); a config may also list them in
``custom_hooks``."""
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.runner import Runner

from ..evaluation import DrivingCocoMetric

__all__ = ['MetricWorkDirHook', 'WorldSizeCheckHook']


def _loop_evaluator(loop):
    return getattr(loop, 'evaluator', None)


@HOOKS.register_module()
class MetricWorkDirHook(Hook):
    """Give every :class:`DrivingCocoMetric` of the validation and test
    evaluators the runner's work dir, where it writes its report (unless it
    has an explicit ``report_dir``)."""

    priority = 'VERY_HIGH'

    @staticmethod
    def _set_work_dir(evaluator, work_dir: str) -> None:
        for metric in getattr(evaluator, 'metrics', ()):
            if isinstance(metric, DrivingCocoMetric):
                metric.work_dir = work_dir

    def before_val(self, runner: Runner) -> None:
        self._set_work_dir(_loop_evaluator(runner.val_loop), runner.work_dir)

    def before_test(self, runner: Runner) -> None:
        self._set_work_dir(_loop_evaluator(runner.test_loop), runner.work_dir)


@HOOKS.register_module()
class WorldSizeCheckHook(Hook):
    """Stop a distributed run that has more processes than images in the
    split it is about to run on.

    mmengine's ``DefaultSampler`` pads every process's share to the same
    length by repeating images, so with more processes than images some
    would train or evaluate only on repeats. Every process computes the
    same lengths and stops at the same point, so none waits for another.
    """

    priority = 'VERY_HIGH'

    @staticmethod
    def _check(dataloader, split: str, world_size: int) -> None:
        if world_size <= 1 or dataloader is None:
            return
        size = len(dataloader.dataset)
        if size < world_size:
            raise ValueError(
                f'{world_size} processes, but the {split} set has only '
                f'{size} image{"s" if size != 1 else ""} (after filtering): '
                f'each process needs at least one image of its own. Launch '
                f'at most {size} processes (NUM_PROCS of tools/dist_train.sh '
                f'and dist_test.sh, --nproc_per_node x --nnodes of torchrun, '
                f'GPUS of the Slurm scripts) or use a larger {split} set.')

    def before_train(self, runner: Runner) -> None:
        self._check(runner.train_dataloader, 'training', runner.world_size)

    def before_val(self, runner: Runner) -> None:
        self._check(
            getattr(runner.val_loop, 'dataloader', None), 'validation',
            runner.world_size)

    def before_test(self, runner: Runner) -> None:
        self._check(
            getattr(runner.test_loop, 'dataloader', None), 'test',
            runner.world_size)
