"""Hooks that every runner gets on ``import sapool_mmdet`` (see
:mod:`sapool_mmdet.engine.dist`); a config may also list them in
``custom_hooks``."""
from typing import Dict, Sequence

import torch.nn as nn
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop, Runner

from ..datasets.coco_checks import label_count_error
from ..evaluation import DrivingCocoMetric

__all__ = ['MetricWorkDirHook', 'WorldSizeCheckHook', 'ClassCountCheckHook',
           'RunConfigError']


class RunConfigError(ValueError):
    """A run whose model, datasets and launch do not fit together, found
    by a hook before the first iteration; the tools print it in one line
    (:func:`~sapool_mmdet.engine.cli.run_cli`)."""


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
            raise RunConfigError(
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


def head_num_classes(model: nn.Module) -> Dict[str, int]:
    """The class count of each box head of a detector.

    Args:
        model (nn.Module): The detector (or its wrapper).

    Returns:
        dict[str, int]: ``num_classes`` of each outermost module under a
        ``bbox_head`` (e.g. ``bbox_head``, ``roi_head.bbox_head``,
        ``roi_head.bbox_head.0`` of a cascade), by module name.
    """
    if is_model_wrapper(model):
        model = model.module
    found: Dict[str, int] = {}
    for name, module in model.named_modules():
        if 'bbox_head' not in name.split('.') or \
                any(name.startswith(f'{head}.') for head in found):
            continue
        num_classes = getattr(module, 'num_classes', None)
        if isinstance(num_classes, int):
            found[name] = num_classes
    return found


@HOOKS.register_module()
class ClassCountCheckHook(Hook):
    """Stop a run, before it trains or tests, whose detector head has
    another number of classes than its datasets (e.g. a head left at the 80
    COCO classes on the eight driving classes): its labels would index
    classes the dataset does not have. The message is the one
    ``tools/eval_driving.py`` gives for such labels.

    A test (or validation-only) run also stops when the checkpoint was
    trained with the dataset's classes in another order: every label
    would be read as another class. (Training may load weights of other
    classes on purpose, to fine-tune them.)"""

    priority = 'VERY_HIGH'

    @staticmethod
    def _check(model: nn.Module, classes: Sequence[str], split: str) -> None:
        for name, num_classes in head_num_classes(model).items():
            if num_classes != len(classes):
                raise RunConfigError(label_count_error(
                    f"the model's {name} has {num_classes} classes (the "
                    f'{split} dataset has {len(classes)})', num_classes,
                    classes))

    def before_run(self, runner: Runner) -> None:
        # only the loops this run has built (train() builds the training
        # and validation loops, test() the test loop); touching the
        # others would build them
        for split, loop in (('training', runner._train_loop),
                            ('validation', runner._val_loop),
                            ('test', runner._test_loop)):
            if not isinstance(loop, BaseLoop):
                continue
            dataset = getattr(getattr(loop, 'dataloader', None), 'dataset',
                              None)
            classes = getattr(dataset, 'metainfo', {}).get('classes')
            if classes:
                self._check(runner.model, classes, split)

    def after_load_checkpoint(self, runner: Runner, checkpoint: dict) -> None:
        if isinstance(runner._train_loop, BaseLoop):
            return
        trained = checkpoint.get('meta', {}).get('dataset_meta', {}).get(
            'classes')
        if not trained:
            return
        trained = tuple(trained)
        for split, loop in (('validation', runner._val_loop),
                            ('test', runner._test_loop)):
            dataset = getattr(getattr(loop, 'dataloader', None), 'dataset',
                              None) if isinstance(loop, BaseLoop) else None
            classes = tuple(getattr(dataset, 'metainfo', {}).get('classes')
                            or ())
            if classes and classes != trained and \
                    sorted(classes) == sorted(trained):
                raise RunConfigError(
                    f'the checkpoint was trained with the classes {trained} '
                    f'in this label order, the {split} dataset lists '
                    f'{classes}: every label would be read as another '
                    f'class. List the classes in the order the model was '
                    f'trained with (the dataset\'s metainfo=dict('
                    f'classes=...))')
