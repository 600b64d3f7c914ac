"""Training and testing entry points, distributed runs through mmengine's
launcher on GPUs and on CPUs, and the channel-pruning hook."""
from .dist import (DistributedSetupError, apply_distributed_fixes,
                   check_launcher_env, init_dist)
from .hooks import MetricWorkDirHook, WorldSizeCheckHook
from .launch import mmdet_tool_path, run_mmdet_tool
from .pruning import ChannelPruningHook

__all__ = [
    'ChannelPruningHook', 'DistributedSetupError', 'MetricWorkDirHook',
    'WorldSizeCheckHook', 'apply_distributed_fixes', 'check_launcher_env',
    'init_dist', 'mmdet_tool_path', 'run_mmdet_tool'
]
