"""Our NLPool variants after the authors' 'dfmnlp', 'mixp' and 'dfmixp'.

Named after the authors' variants, but simpler: none of them resamples the
weight map with the deformable offsets, and the local branch of the mixed
variants is LIP's 1x1 logit, not the authors' patch-size conv. See each
class for what it computes and how that differs.
"""

import torch
from mmcv.ops import ModulatedDeformConv2dPack

from .builder import POOLING
from .lip import build_importance_logit
from .self_attentive import NLPool
from .weighted_average import autocast_off, upcast

__all__ = ['Float32DeformConv2dPack', 'DeformNLPool', 'MixNLPool',
           'DeformMixNLPool']


class Float32DeformConv2dPack(ModulatedDeformConv2dPack):
    """mmcv's DCNv2 (``ModulatedDeformConv2dPack``, the 'DCNv2' conv layer)
    run in its parameters' dtype with autocast off: mmcv's deformable
    kernels have no bfloat16 version, and in float16 the gradients of the
    sampling offsets overflow for inputs of magnitude ~1000. Same arguments,
    parameters and state-dict keys; the output has the input's dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with autocast_off(x):
            return super().forward(x.to(self.weight.dtype)).to(x.dtype)


@POOLING.register_module()
class DeformNLPool(NLPool):
    """NLPool with a deformable patch embedding: our variant of
    Chen et al., "Self-Attentive Pooling for Efficient Deep Learning",
    WACV 2023 (sec. 4.1, eq. 4 and eq. 5), after the authors' 'dfmnlp'.

    Step 1 of :class:`NLPool` (the patch embedding of eq. 4, kernel = stride
    = ``patch_size``) becomes a modulated deformable conv (DCNv2, mmcv's
    ``ModulatedDeformConv2dPack``): each of its kernel taps samples the
    input at a learned, input-dependent offset, scaled by a learned mask, so
    a token can gather pixels outside its patch. The offsets start at zero
    and the masks at 0.5, so at initialisation the embedding is half the
    plain patch conv (the norm after it removes the scale). The modulated
    form is used because, unlike mmcv's DCN, it has a bias for
    ``use_embed_norm=False``. Everything else, including the zero padding to
    a multiple of ``patch_size`` and hence the token grid, is NLPool's.
    The deformable conv runs in float32 under autocast
    (:class:`Float32DeformConv2dPack`).

    How it differs from the authors' 'dfmnlp': there, the full-resolution
    weight map is also resampled with the negated offsets before eq. 5 (so
    the weights move back to where the embedding sampled), with their own
    deformable conv rather than mmcv's. Here the weight map stays on the
    regular grid, as NLPool's.

    Args:
        See :class:`NLPool`.
    """

    embed_conv_cfg = dict(type=Float32DeformConv2dPack, deform_groups=1)


@POOLING.register_module()
class MixNLPool(NLPool):
    """NLPool weights times local LIP weights: our mixed local/non-local
    variant of Chen et al., "Self-Attentive Pooling for Efficient Deep
    Learning", WACV 2023 (sec. 4.1 and eq. 5), named after the authors'
    'mixp'.

        pi(x) = pi_NL(x) * exp(sigmoid(norm(conv1x1(x))))

    where pi_NL is :class:`NLPool`'s non-local weight map (plain patch
    embedding) and the second factor is LIP's local importance (Gao et
    al., ICCV 2019; see :class:`~.lip.LIPPool`), built with ``norm_cfg``.
    The product goes through eq. 5 like NLPool's weights.

    How it differs from the authors' 'mixp': theirs is deformable (its
    class derives from their 'dfmnlp': offset conv, deformable patch
    embedding, and the non-local weights resampled with the negated
    offsets), and its local branch is a C -> C conv with kernel =
    ``patch_size`` and 'same' padding, then BN and sigmoid. Ours has a plain
    embedding and LIP's 1x1 logit; :class:`DeformMixNLPool` adds the
    deformable embedding.

    Args:
        See :class:`NLPool`; the local branch uses ``norm_cfg``.
    """

    def __init__(self, in_channels: int, stride: int, **kwargs) -> None:
        super().__init__(in_channels, stride, **kwargs)
        self.local_logit = build_importance_logit(in_channels, 1,
                                                  self.norm_cfg)

    def pooling_weights(self, x: torch.Tensor) -> torch.Tensor:
        return super().pooling_weights(x) * upcast(
            self.local_logit(x)).exp()


@POOLING.register_module()
class DeformMixNLPool(DeformNLPool, MixNLPool):
    """Both of our variants together, Chen et al., WACV 2023 (sec. 4.1
    and eq. 5), named after the authors' 'dfmixp'.

    :class:`MixNLPool`'s weights (non-local times local LIP weights) with
    :class:`DeformNLPool`'s deformable patch embedding. The authors'
    'dfmixp' computes the same as their 'mixp' (see :class:`MixNLPool` for
    how that differs from ours: weight resampling with the offsets, a
    patch-size local conv).

    Args:
        See :class:`NLPool`; the local branch uses ``norm_cfg``.
    """
