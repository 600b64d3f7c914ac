"""Pooling methods, all built through :func:`build_pooling`."""
from .builder import POOLING, build_pooling
from .max_avg import AvgPool, MaxPool
from .self_attentive import NLPool
from .strided_conv import ConvPool
from .weighted_average import WeightedPool, weighted_window_average

__all__ = [
    'POOLING', 'build_pooling', 'weighted_window_average', 'WeightedPool',
    'NLPool', 'MaxPool', 'AvgPool', 'ConvPool'
]
