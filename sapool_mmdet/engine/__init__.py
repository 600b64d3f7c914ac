"""Training and testing entry points, and distributed runs through
mmengine's launcher on GPUs and on CPUs."""
from .dist import (DistributedSetupError, apply_distributed_fixes,
                   check_launcher_env, init_dist)
from .hooks import MetricWorkDirHook, WorldSizeCheckHook
from .launch import mmdet_tool_path, run_mmdet_tool

__all__ = [
    'DistributedSetupError', 'MetricWorkDirHook', 'WorldSizeCheckHook',
    'apply_distributed_fixes', 'check_launcher_env', 'init_dist',
    'mmdet_tool_path', 'run_mmdet_tool'
]
