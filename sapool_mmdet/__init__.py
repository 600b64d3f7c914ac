"""sapool_mmdet: self-attentive (non-local) pooling for mmdetection 3.x.

Importing the package registers the pooling methods (in ``POOLING``) and
the backbones, the driving dataset, its metric and our hooks (in mmdet's
registries), applies the fixes in :mod:`sapool_mmdet.compat`, makes
mmengine's launcher work on CPU-only machines too
(:mod:`sapool_mmdet.engine.dist`) and makes runs survive a kill: atomic
checkpoints and result files, resume from the newest good checkpoint,
refused mismatched weights, one run per work dir
(:mod:`sapool_mmdet.engine.durable`), so
``custom_imports = dict(imports=['sapool_mmdet'], allow_failed_imports=False)``
is all an mmdet config needs.
"""
from .compat import apply_compat_fixes

apply_compat_fixes()

from . import backbones, datasets, evaluation, pooling  # noqa: E402,F401
from .engine import (apply_distributed_fixes,  # noqa: E402
                     apply_durability_fixes)

apply_distributed_fixes()
apply_durability_fixes()

__version__ = '0.1.0'
