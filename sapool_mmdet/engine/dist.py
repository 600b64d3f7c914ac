"""Distributed training and testing through mmengine's launcher, on GPUs
(nccl) and on machines without CUDA (gloo).

mmengine 0.10.7 assumes one CUDA device per process: its ``init_dist``
pins every process with ``torch.cuda.set_device(LOCAL_RANK)`` (which raises
on a CPU build of torch) and ``Runner.wrap_model`` gives DDP
``device_ids=[LOCAL_RANK]`` (which DDP refuses for a module on the CPU).
:func:`apply_distributed_fixes`, called on ``import sapool_mmdet``, keeps
mmengine's launcher and DDP and changes only what a machine without CUDA
needs, so ``--launcher pytorch`` / ``slurm`` work with no config change:

1. mmengine's ``init_dist`` first checks that the launcher's environment
   variables are set (a clear error instead of ``KeyError: 'RANK'``). Where
   mmengine would run on the CPU, the default backend 'nccl' becomes
   'gloo' and the ``torch.cuda.set_device`` call is skipped. A port that is
   already in use is reported as such. On a GPU machine mmengine's own code
   runs unchanged.
2. ``Runner.wrap_model`` builds the same ``MMDistributedDataParallel``
   through ``model_wrapper_cfg``, with ``device_ids=None`` for a CPU model
   (what DDP asks for there); explicit ``model_wrapper_cfg`` entries win.
3. ``Runner.register_hooks`` adds to every runner that does not list them
   already: :class:`~.hooks.MetricWorkDirHook` (the metric report goes to
   the runner's work dir), :class:`~.hooks.WorldSizeCheckHook` (no more
   processes than images) and mmengine's ``SyncBuffersHook``, which
   averages the BatchNorm statistics of all processes after every training
   epoch, so every process evaluates, and the checkpoint holds, the same
   model (DDP keeps only the parameters in step; mmcv 1.x's evaluation hook
   did the same with ``broadcast_bn_buffer``). In a single process only
   the first has work to do.
"""
import functools
import os
from contextlib import contextmanager
from typing import Callable, Dict, Iterator, Mapping, Optional, Tuple

import mmengine.dist
import mmengine.dist.utils
import mmengine.runner.runner
import torch
from mmengine.device import get_device
from mmengine.hooks import SyncBuffersHook
from mmengine.logging import print_log
from mmengine.registry import MODEL_WRAPPERS
from mmengine.runner import Runner
from torch.nn.parallel import DistributedDataParallel

from .hooks import (ClassCountCheckHook, MetricWorkDirHook,
                    WorldSizeCheckHook)

__all__ = [
    'DistributedSetupError', 'LAUNCHER_ENV', 'apply_distributed_fixes',
    'check_launcher_env', 'cpu_model_wrapper_cfg', 'init_dist'
]

# The environment variables each launcher sets and mmengine's init reads.
LAUNCHER_ENV: Dict[str, Tuple[str, ...]] = {
    'pytorch': ('RANK', 'LOCAL_RANK', 'WORLD_SIZE', 'MASTER_ADDR',
                'MASTER_PORT'),
    'slurm': ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST'),
    'mpi': ('OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_LOCAL_RANK',
            'OMPI_COMM_WORLD_SIZE', 'MASTER_ADDR'),
}
HOW_TO_LAUNCH = {
    'pytorch': ('start the processes with a launcher, e.g. `bash '
                'tools/dist_train.sh CONFIG NUM_PROCS` or `torchrun '
                '--nproc_per_node=NUM_PROCS tools/train.py CONFIG --launcher '
                'pytorch`'),
    'slurm': ('start it under Slurm, e.g. `bash tools/slurm_train.sh '
              'PARTITION JOB_NAME CONFIG WORK_DIR`'),
    'mpi': 'start it with mpirun and set MASTER_ADDR',
}
AUTO_HOOKS = (MetricWorkDirHook, WorldSizeCheckHook, ClassCountCheckHook,
              SyncBuffersHook)
_PATCHED = '_sapool_mmdet_distributed'


class DistributedSetupError(RuntimeError):
    """The distributed environment cannot be set up as launched; the
    message says why and what to do."""


def check_launcher_env(launcher: str,
                       environ: Optional[Mapping[str, str]] = None) -> None:
    """Check that ``launcher`` left the variables mmengine's init reads.

    Args:
        launcher (str): 'none', 'pytorch', 'slurm' or 'mpi'.
        environ (Mapping[str, str], optional): The environment.
            Defaults to None: ``os.environ``.

    Raises:
        DistributedSetupError: A variable is missing, or RANK / WORLD_SIZE
            are not integers with 0 <= RANK < WORLD_SIZE.
    """
    if launcher == 'none':
        return
    if launcher not in LAUNCHER_ENV:
        raise DistributedSetupError(
            f'unknown launcher {launcher!r}; choose from '
            f"{['none', *LAUNCHER_ENV]}")
    environ = os.environ if environ is None else environ
    missing = [name for name in LAUNCHER_ENV[launcher] if name not in environ]
    if missing:
        raise DistributedSetupError(
            f'--launcher {launcher} runs one process of a distributed job, '
            f'but {", ".join(missing)} (set by the launcher) '
            f'{"is" if len(missing) == 1 else "are"} not set. To run '
            f'distributed, {HOW_TO_LAUNCH[launcher]}; to run one process, '
            f'leave out --launcher.')
    if launcher == 'pytorch':
        try:
            rank, world_size = (int(environ['RANK']),
                                int(environ['WORLD_SIZE']))
        except ValueError:
            raise DistributedSetupError(
                f'RANK and WORLD_SIZE must be integers, got '
                f"RANK={environ['RANK']!r}, "
                f"WORLD_SIZE={environ['WORLD_SIZE']!r}") from None
        if not 0 <= rank < world_size:
            raise DistributedSetupError(
                f'RANK must be in [0, WORLD_SIZE), got RANK={rank}, '
                f'WORLD_SIZE={world_size}')


def _runs_on_cpu() -> bool:
    """Whether mmengine puts the model on the CPU (no CUDA, NPU, MLU, MUSA
    or MPS device)."""
    return get_device() == 'cpu'


@contextmanager
def _without_cuda_set_device() -> Iterator[None]:
    """Skip ``torch.cuda.set_device`` inside the block: mmengine's launcher
    functions pin the process to a GPU, which a CPU process has none of."""
    set_device = torch.cuda.set_device
    torch.cuda.set_device = lambda device: None
    try:
        yield
    finally:
        torch.cuda.set_device = set_device


def _port_in_use_message(error: Exception) -> Optional[str]:
    if 'EADDRINUSE' not in str(error) and 'address already in use' \
            not in str(error):
        return None
    address = (f"{os.environ.get('MASTER_ADDR', '?')}:"
               f"{os.environ.get('MASTER_PORT', '?')}")
    return (f'cannot open the rendezvous port {address}: it is already in '
            f'use (another distributed job?). Choose a free port: '
            f'MASTER_PORT for torchrun / manual launches, PORT for '
            f'tools/dist_train.sh, dist_test.sh and the Slurm scripts.')


def _wrap_init_dist(original: Callable) -> Callable:

    @functools.wraps(original)
    def init_dist(launcher: str,
                  backend: str = 'nccl',
                  init_backend: str = 'torch',
                  **kwargs) -> None:
        """mmengine's ``init_dist`` that also runs without CUDA; see
        :mod:`sapool_mmdet.engine.dist`."""
        check_launcher_env(launcher)
        on_cpu = _runs_on_cpu()
        if on_cpu and backend == 'nccl':
            print_log(
                'no CUDA device: the processes communicate with gloo '
                'instead of nccl', logger='current')
            backend = 'gloo'
        try:
            if on_cpu:
                with _without_cuda_set_device():
                    original(launcher, backend, init_backend, **kwargs)
            else:
                original(launcher, backend, init_backend, **kwargs)
        except RuntimeError as error:
            message = _port_in_use_message(error)
            if message is None:
                raise
            raise DistributedSetupError(message) from error

    setattr(init_dist, _PATCHED, True)
    return init_dist


def cpu_model_wrapper_cfg(model_wrapper_cfg: Optional[dict],
                          find_unused_parameters: bool = False) -> dict:
    """The ``model_wrapper_cfg`` that wraps a CPU model the way mmengine's
    runner wraps a GPU model, without device ids.

    Args:
        model_wrapper_cfg (dict, optional): The config's own
            ``model_wrapper_cfg``; its entries are kept.
        find_unused_parameters (bool): The config's
            ``find_unused_parameters``, used when ``model_wrapper_cfg`` is
            None (as mmengine does). Defaults to False.

    Returns:
        dict: A new config; ``device_ids=None`` unless it names them, when
        the wrapper is a ``DistributedDataParallel``.
    """
    if model_wrapper_cfg is None:
        cfg = dict(
            type='MMDistributedDataParallel',
            broadcast_buffers=False,
            find_unused_parameters=find_unused_parameters)
    else:
        cfg = dict(model_wrapper_cfg)
        cfg.setdefault('type', 'MMDistributedDataParallel')
    wrapper = MODEL_WRAPPERS.get(cfg['type'])
    if isinstance(wrapper, type) and issubclass(wrapper,
                                                DistributedDataParallel):
        cfg.setdefault('device_ids', None)
    return cfg


def _wrap_wrap_model(original: Callable) -> Callable:

    @functools.wraps(original)
    def wrap_model(self: Runner, model_wrapper_cfg: Optional[dict],
                   model: torch.nn.Module) -> torch.nn.Module:
        if self.distributed and _runs_on_cpu():
            model_wrapper_cfg = cpu_model_wrapper_cfg(
                model_wrapper_cfg,
                self.cfg.get('find_unused_parameters', False))
        return original(self, model_wrapper_cfg, model)

    setattr(wrap_model, _PATCHED, True)
    return wrap_model


def _wrap_register_hooks(original: Callable) -> Callable:

    @functools.wraps(original)
    def register_hooks(self: Runner, default_hooks=None,
                       custom_hooks=None) -> None:
        original(self, default_hooks, custom_hooks)
        for hook_type in AUTO_HOOKS:
            if not any(isinstance(hook, hook_type) for hook in self.hooks):
                self.register_hook(hook_type())

    setattr(register_hooks, _PATCHED, True)
    return register_hooks


def apply_distributed_fixes() -> None:
    """Apply the changes listed in :mod:`sapool_mmdet.engine.dist`; safe to
    call more than once."""
    init_dist = mmengine.dist.utils.init_dist
    if not getattr(init_dist, _PATCHED, False):
        init_dist = _wrap_init_dist(init_dist)
        # the runner and mmengine.dist hold their own references
        for module in (mmengine.dist.utils, mmengine.dist,
                       mmengine.runner.runner):
            module.init_dist = init_dist
    if not getattr(Runner.wrap_model, _PATCHED, False):
        Runner.wrap_model = _wrap_wrap_model(Runner.wrap_model)
    if not getattr(Runner.register_hooks, _PATCHED, False):
        Runner.register_hooks = _wrap_register_hooks(Runner.register_hooks)


def init_dist(launcher: str, backend: str = 'nccl', **kwargs) -> None:
    """mmengine's ``init_dist`` with the fixes applied (see the module
    docstring).

    Args:
        launcher (str): 'pytorch', 'slurm' or 'mpi'.
        backend (str): 'nccl' (default; 'gloo' without CUDA), 'gloo' or
            'mpi'.
        **kwargs: Passed on to mmengine's ``init_dist`` (e.g. ``timeout``
            in seconds).

    Raises:
        DistributedSetupError: The launcher's environment is incomplete or
            the rendezvous port is in use.
    """
    apply_distributed_fixes()
    mmengine.dist.utils.init_dist(launcher, backend, **kwargs)
