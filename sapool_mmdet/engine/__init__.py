"""Training and testing entry points."""
from .launch import mmdet_tool_path, run_mmdet_tool
from .pruning import ChannelPruningHook

__all__ = ['mmdet_tool_path', 'run_mmdet_tool', 'ChannelPruningHook']
