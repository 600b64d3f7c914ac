"""A direct, unoptimised transcription of NLPool as the official code runs it.

Used by the tests and by ``tools/benchmark_nlpool.py`` as the baseline that
:class:`~sapool_mmdet.pooling.NLPool` must match value for value. It follows
the official implementation step by step: ``nn.MultiheadAttention`` called
with its defaults (so it materialises and returns the (L, L) attention
weights), the restoration conv applied after upsampling to full resolution,
and separate average pools for the numerator and denominator of eq. 5.
Sizes must be multiples of the patch size and the stride, as there.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .self_attentive import NLPool

__all__ = ['NLPoolReference']


class NLPoolReference(nn.Module):
    """Slow transcription of eq. 4, MSA, restoration and eq. 5 that copies
    its weights from an :class:`NLPool` (``pos_embed`` must be 'learned'
    or None; norms must be BatchNorm).

    Args:
        pool (NLPool): The module whose weights and settings to use.
    """

    def __init__(self, pool: NLPool) -> None:
        super().__init__()
        self.stride = pool.stride
        self.patch_size = pool.patch_size
        self.upsample = pool.upsample
        self.window_norm = pool.window_norm
        self.use_sigmoid = pool.use_sigmoid
        self.use_exp = pool.use_exp
        self.pos_embed = pool.pos_embed
        dim = pool.embed_dim
        self.embed_conv = nn.Conv2d(pool.in_channels, dim, pool.patch_size,
                                    stride=pool.patch_size,
                                    bias=pool.embed.conv.bias is not None)
        self.embed_conv.load_state_dict(pool.embed.conv.state_dict())
        self.embed_norm = (pool.embed.bn if pool.embed.with_norm else
                           nn.Identity())
        self.attention = nn.MultiheadAttention(dim, pool.num_heads,
                                               batch_first=True)
        self.attention.in_proj_weight.data.copy_(
            pool.attention.in_proj.weight)
        self.attention.in_proj_bias.data.copy_(pool.attention.in_proj.bias)
        self.attention.out_proj.load_state_dict(
            pool.attention.out_proj.state_dict())
        self.restore_conv = pool.restore_conv
        self.restore_norm = pool.restore_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p, s = self.patch_size, self.stride
        if h % p or w % p or h % s or w % s:
            raise ValueError('the transcription needs H and W divisible by '
                             'the patch size and the stride')
        tokens = F.relu(self.embed_norm(self.embed_conv(x)))
        if self.pos_embed is not None:
            tokens = tokens + self.pos_embed(tokens)
        sequence = tokens.flatten(2).transpose(1, 2)
        attended, _ = self.attention(sequence, sequence, sequence)
        attended = attended.transpose(1, 2).reshape(n, -1, h // p, w // p)
        if self.upsample == 'bilinear':
            attended = F.interpolate(attended, size=(h, w), mode='bilinear',
                                     align_corners=False)
        else:
            attended = F.interpolate(attended, size=(h, w), mode='nearest')
        weights = self.restore_norm(self.restore_conv(attended))
        if self.use_sigmoid:
            weights = torch.sigmoid(weights)
        if self.use_exp:
            weights = torch.exp(weights)
        numerator = F.avg_pool2d(x * weights, s, s)
        if not self.window_norm:
            return numerator
        return numerator / F.avg_pool2d(weights, s, s)
