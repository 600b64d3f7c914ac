"""Runs that lose nothing when they are killed.

mmengine 0.10.7 writes files in place (a kill leaves a truncated
checkpoint or results pickle under its final name), removes the oldest
checkpoint *before* writing the new one, rewrites ``last_checkpoint`` in
place, resumes only from the file that pointer names, loads checkpoints
that do not fit the model with a warning per tensor, and lets two runs
share a work dir. :func:`apply_durability_fixes`, called on
``import sapool_mmdet`` (so our tools, ``mim train`` and configs with
``custom_imports`` all get it), changes this:

1. ``LocalBackend.put`` / ``put_text`` (what mmengine's
   ``save_checkpoint`` and ``mmengine.dump`` write local files with: the
   checkpoints, ``tools/test.py --out`` results, metric outputs) write to
   a temporary name in the same folder, fsync and rename
   (:func:`~sapool_mmdet.fileio.atomic_open`). The free space is checked
   against the exact size first, so a full disk is reported before a byte
   is written and before anything is removed. ``Runner.dump_config`` goes
   the same way.
2. ``CheckpointHook`` writes the new checkpoint, then replaces
   ``last_checkpoint`` atomically, and only then removes the checkpoints
   beyond ``max_keep_ckpts``. The checkpoints it keeps are the same, and
   ``keep_ckpt_ids`` in the message hub reads as before.
3. ``Runner.load_or_resume``: ``resume=True`` without a file (``--resume``)
   takes the newest checkpoint in the work dir (and the folder the
   pointer names) that loads and holds training state, logging which it
   took and what it skipped and why (a missing, empty or dangling pointer;
   a truncated or weights-only checkpoint). ``--resume CKPT`` with a
   checkpoint that is unreadable or holds no training state stops with a
   message saying so.
4. ``Runner.load_checkpoint`` refuses weights that do not fit the model
   (:func:`sapool_mmdet.checkpoint.check_weights_fit`) unless the config
   sets ``allow_partial_checkpoint = True`` (``--allow-partial`` of our
   tools) or the caller asks for ``strict`` loading, which mmengine checks
   itself.
5. ``Runner.setup_env`` locks the work dir for the run
   (:mod:`.workdir_lock`; process 0 of a distributed run), removes the
   temporary files an earlier killed run left there, and gives the run a
   log folder of its own when another run of the same second has one
   (``20261129_101500_1``).
"""
import errno
import functools
import os
import os.path as osp
from typing import Callable, List, Optional, Tuple

import torch
from mmengine.dist import broadcast, is_main_process
from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner
from mmengine.runner.checkpoint import (_load_checkpoint,
                                        _load_checkpoint_to_model)
from mmengine.utils import mkdir_or_exist

from ..checkpoint import (ALLOW_PARTIAL_KEY, CheckpointError,
                          check_weights_fit, checkpoint_state_dict,
                          read_checkpoint, training_state_problem)
from ..fileio import (atomic_open, atomic_write_bytes,
                      remove_stale_temporaries)
from .workdir_lock import WorkDirBusyError, hold_work_dir, lock_holder

__all__ = [
    'POINTER_NAME', 'apply_durability_fixes', 'choose_resume_checkpoint',
    'resume_problem'
]

POINTER_NAME = 'last_checkpoint'
_PATCHED = '_sapool_mmdet_durable'
_BUSY = -1


def _mark(function: Callable) -> Callable:
    setattr(function, _PATCHED, True)
    return function


# 1. atomic local writes -------------------------------------------------


def _atomic_put(self: LocalBackend, obj: bytes, filepath) -> None:
    """``LocalBackend.put`` through a temporary file (see module doc)."""
    filepath = str(filepath)
    mkdir_or_exist(osp.dirname(filepath))
    atomic_write_bytes(filepath, obj)


def _atomic_put_text(self: LocalBackend,
                     obj: str,
                     filepath,
                     encoding: str = 'utf-8') -> None:
    """``LocalBackend.put_text`` through a temporary file."""
    filepath = str(filepath)
    mkdir_or_exist(osp.dirname(filepath))
    size = len(obj.encode(encoding))
    with atomic_open(filepath, 'w', expected_size=size,
                     encoding=encoding) as f:
        f.write(obj)


def _wrap_dump_config(original: Callable) -> Callable:

    @functools.wraps(original)
    def dump_config(self: Runner) -> None:
        if not is_main_process():
            return
        name = osp.basename(self.cfg.filename) \
            if self.cfg.filename is not None else f'{self.timestamp}.py'
        if not name.endswith('.py'):
            # mmengine.dump: LocalBackend.put_text, atomic since fix 1
            return original(self)
        with atomic_open(osp.join(self.work_dir, name), 'w',
                         encoding='utf-8') as f:
            f.write(self.cfg.pretty_text)

    return _mark(dump_config)


# 2. checkpoint order ----------------------------------------------------


def _save_checkpoint_with_step(self: CheckpointHook, runner: Runner,
                               step: int, meta: dict) -> None:
    """mmengine's ``CheckpointHook._save_checkpoint_with_step`` with the
    old checkpoints removed after the new one and the pointer are in
    place."""
    outdated: List[int] = []
    if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                        and self.keep_ckpt_ids[-1] == step):
        if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
            outdated.append(self.keep_ckpt_ids.popleft())
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids',
                                       list(self.keep_ckpt_ids))

    ckpt_filename = self.filename_tmpl.format(step)
    self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
    runner.message_hub.update_info('last_ckpt', self.last_ckpt)
    try:
        runner.save_checkpoint(
            self.out_dir,
            ckpt_filename,
            self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta,
            by_epoch=self.by_epoch,
            backend_args=self.backend_args,
            **self.args)
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        kept = [self.filename_tmpl.format(s)
                for s in [*outdated, *self.keep_ckpt_ids] if s != step]
        raise OSError(
            errno.ENOSPC,
            f'{error.strerror}. The checkpoints already written '
            f'({", ".join(kept) or "none"}) are kept until a new one is '
            f'complete, so the disk must hold one more: free space, lower '
            f'max_keep_ckpts or write checkpoints elsewhere '
            f'(default_hooks.checkpoint.out_dir)', error.filename) from error

    if not is_main_process():
        return
    with atomic_open(osp.join(runner.work_dir, POINTER_NAME), 'w',
                     encoding='utf-8') as f:
        f.write(self.last_ckpt)
    for old_step in outdated:
        path = self.file_backend.join_path(self.out_dir,
                                           self.filename_tmpl.format(old_step))
        if self.file_backend.isfile(path):
            self.file_backend.remove(path)
        elif self.file_backend.isdir(path):
            # checkpoints saved by deepspeed are directories
            self.file_backend.rmtree(path)


def _wrap_checkpoint_before_train(original: Callable) -> Callable:

    @functools.wraps(original)
    def before_train(self: CheckpointHook, runner: Runner) -> None:
        original(self, runner)
        if is_main_process() and isinstance(self.file_backend, LocalBackend):
            _log_removed(remove_stale_temporaries(self.out_dir))

    return _mark(before_train)


# 3. resume from the newest good checkpoint ------------------------------


def resume_problem(filename: str) -> Optional[str]:
    """Why ``filename`` cannot be resumed from, or None when it can.

    The file is opened memory-mapped, so this reads little more than its
    index: truncation and missing training state are found, flipped bits
    inside tensors are not.
    """
    try:
        checkpoint = read_checkpoint(filename, mmap=True)
    except CheckpointError as error:
        return str(error)
    problem = training_state_problem(checkpoint)
    return None if problem is None else f'{filename!r}: {problem}'


def _checkpoint_files(folder: str) -> List[str]:
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return [
        osp.join(folder, name) for name in names
        if name.endswith('.pth') and not name.startswith('.')
        and osp.isfile(osp.join(folder, name))
    ]


def choose_resume_checkpoint(
        work_dir: str) -> Tuple[Optional[str], List[str]]:
    """The checkpoint ``--resume`` continues from.

    The candidates are the ``.pth`` files in ``work_dir`` and in the folder
    ``last_checkpoint`` names, newest first (by modification time; the file
    the pointer names first among equals). The first that loads and holds
    training state (see :func:`resume_problem`) wins.

    Args:
        work_dir (str): The run's work dir.

    Returns:
        tuple: (the checkpoint or None when none qualifies, the reasons
        for what was passed over: the pointer and each skipped file).
    """
    skipped = []
    pointer = osp.join(work_dir, POINTER_NAME)
    named = None
    if not osp.isfile(pointer):
        skipped.append(f'{pointer} is missing')
    else:
        try:
            with open(pointer, encoding='utf-8') as f:
                named = f.read().strip() or None
        except (OSError, UnicodeDecodeError) as error:
            skipped.append(f'{pointer} cannot be read: {error}')
        else:
            if named is None:
                skipped.append(f'{pointer} is empty')
            elif not osp.isfile(named):
                skipped.append(f'{pointer} names {named!r}, which does not '
                               f'exist')
                named = None
    folders = {osp.abspath(work_dir)}
    if named is not None:
        folders.add(osp.dirname(osp.abspath(named)))
    candidates = {osp.abspath(p) for d in folders for p in
                  _checkpoint_files(d)}
    named_abs = osp.abspath(named) if named is not None else None
    order = sorted(
        candidates,
        key=lambda p: (os.stat(p).st_mtime_ns, p == named_abs),
        reverse=True)
    for path in order:
        problem = resume_problem(path)
        if problem is None:
            return path, skipped
        skipped.append(problem)
    return None, skipped


def _wrap_load_or_resume(original: Callable) -> Callable:

    @functools.wraps(original)
    def load_or_resume(self: Runner) -> None:
        if self._has_loaded or not self._resume:
            return original(self)
        if self._load_from is not None:
            # a URL or model-zoo name is mmengine's to fetch and check
            if '://' not in self._load_from:
                problem = resume_problem(self._load_from)
                if problem is not None:
                    raise CheckpointError(f'cannot resume: {problem}')
            return original(self)
        chosen, skipped = choose_resume_checkpoint(self.work_dir)
        if chosen is None and skipped == [
                f'{osp.join(self.work_dir, POINTER_NAME)} is missing']:
            self.logger.info(f'resume: no checkpoint in {self.work_dir} '
                             f'yet; training starts from the beginning')
            return None
        for reason in skipped:
            self.logger.warning(f'resume: skipped {reason}')
        if chosen is None:
            self.logger.warning(
                f'resume: no checkpoint in {self.work_dir} holds training '
                f'state that can be read; training starts from the '
                f'beginning')
            return None
        self.logger.info(f'resume: continuing from {chosen}')
        self.resume(chosen)
        self._has_loaded = True

    return _mark(load_or_resume)


# 4. weights that do not fit ---------------------------------------------


def _wrap_load_checkpoint(original: Callable) -> Callable:

    @functools.wraps(original)
    def load_checkpoint(self: Runner,
                        filename: str,
                        map_location='cpu',
                        strict: bool = False,
                        revise_keys: list = [(r'^module.', '')]):
        if osp.isfile(filename):
            checkpoint = read_checkpoint(filename, map_location=map_location)
        else:  # URLs and model-zoo names: mmengine's loaders
            checkpoint = _load_checkpoint(filename, map_location=map_location)
        self.call_hook('after_load_checkpoint', checkpoint=checkpoint)
        model = self.model.module if is_model_wrapper(self.model) \
            else self.model
        if not strict:
            check_weights_fit(
                model, checkpoint_state_dict(checkpoint, revise_keys),
                filename, bool(self.cfg.get(ALLOW_PARTIAL_KEY, False)))
        checkpoint = _load_checkpoint_to_model(
            model, checkpoint, strict, revise_keys=revise_keys)
        self._has_loaded = True
        self.logger.info(f'Load checkpoint from {filename}')
        return checkpoint

    return _mark(load_checkpoint)


# 5. one run per work dir ------------------------------------------------


def _log_removed(paths: List[str]) -> None:
    for path in paths:
        print_log(f'removed {path}, left by a run killed while writing',
                  logger='current')


def _free_log_suffix(work_dir: str, timestamp: str) -> int:
    suffix = 0
    while osp.exists(
            osp.join(work_dir,
                     timestamp if suffix == 0 else f'{timestamp}_{suffix}')):
        suffix += 1
    return suffix


def _wrap_setup_env(original: Callable) -> Callable:

    @functools.wraps(original)
    def setup_env(self: Runner, env_cfg: dict) -> None:
        original(self, env_cfg)
        suffix = 0
        busy = None
        if self.rank == 0:
            try:
                hold_work_dir(self.work_dir)
            except WorkDirBusyError as error:
                busy, suffix = error, _BUSY
            else:
                _log_removed(remove_stale_temporaries(self.work_dir))
                suffix = _free_log_suffix(self.work_dir, self._timestamp)
        if self.distributed:
            shared = torch.tensor(suffix, dtype=torch.int64)
            broadcast(shared)
            suffix = int(shared.item())
        if suffix == _BUSY:
            if busy is not None:
                raise busy
            raise WorkDirBusyError(
                f'work dir {self.work_dir!r} is in use by another run '
                f'({lock_holder(self.work_dir)})')
        if suffix:
            self._timestamp = f'{self._timestamp}_{suffix}'

    return _mark(setup_env)


def apply_durability_fixes() -> None:
    """Apply the changes listed in :mod:`sapool_mmdet.engine.durable`;
    safe to call more than once."""
    if getattr(LocalBackend.put, _PATCHED, False):
        return
    LocalBackend.put = _mark(_atomic_put)
    LocalBackend.put_text = _mark(_atomic_put_text)
    CheckpointHook._save_checkpoint_with_step = _mark(
        _save_checkpoint_with_step)
    CheckpointHook.before_train = _wrap_checkpoint_before_train(
        CheckpointHook.before_train)
    Runner.dump_config = _wrap_dump_config(Runner.dump_config)
    Runner.load_or_resume = _wrap_load_or_resume(Runner.load_or_resume)
    Runner.load_checkpoint = _wrap_load_checkpoint(Runner.load_checkpoint)
    Runner.setup_env = _wrap_setup_env(Runner.setup_env)
