"""Training and testing entry points, distributed runs through mmengine's
launcher on GPUs and on CPUs, runs that survive a kill, and the
channel-pruning hook."""
from .cli import describe_error, run_cli
from .dist import (DistributedSetupError, apply_distributed_fixes,
                   check_launcher_env, init_dist)
from .durable import apply_durability_fixes, choose_resume_checkpoint
from .hooks import MetricWorkDirHook, WorldSizeCheckHook
from .launch import mmdet_tool_path, run_mmdet_tool
from .pruning import ChannelPruningHook
from .workdir_lock import WorkDirBusyError, hold_work_dir

__all__ = [
    'ChannelPruningHook', 'DistributedSetupError', 'MetricWorkDirHook',
    'WorkDirBusyError', 'WorldSizeCheckHook', 'apply_distributed_fixes',
    'apply_durability_fixes', 'check_launcher_env',
    'choose_resume_checkpoint', 'describe_error', 'hold_work_dir',
    'init_dist', 'mmdet_tool_path', 'run_cli', 'run_mmdet_tool'
]
