"""Pooling methods, all built through :func:`build_pooling`."""
from .builder import POOLING, build_pooling
from .gaussian import GaussianPool
from .lip import LIPPool
from .max_avg import AvgPool, MaxPool
from .mixed import MixedPool
from .nlpool_variants import DeformMixNLPool, DeformNLPool, MixNLPool
from .rnnpool import RNNPool
from .self_attentive import NLPool
from .self_attn_pool import SelfAttnPool
from .softpool import SoftPool
from .strided_conv import ConvPool
from .subspace_attention import SubspaceAttnPool
from .weighted_average import WeightedPool, weighted_window_average

__all__ = [
    'POOLING', 'build_pooling', 'weighted_window_average', 'WeightedPool',
    'NLPool', 'MaxPool', 'AvgPool', 'ConvPool', 'LIPPool', 'GaussianPool',
    'SoftPool', 'MixedPool', 'RNNPool', 'SubspaceAttnPool', 'DeformNLPool',
    'MixNLPool', 'DeformMixNLPool', 'SelfAttnPool'
]
