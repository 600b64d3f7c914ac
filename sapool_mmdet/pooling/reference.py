"""A direct, unoptimised transcription of the authors' NLPool module.

The computation of ``NLP_BASE`` (``base/models/utils/pool_models/nlp.py``)
inside ``Pool2d`` (``pool_models/common.py``) of the authors' code, with
its DETR-style row/column positional encoding
(``pool_models/position_encoding.py``, ``PositionEmbeddingLearned``)
written out here rather than taken from this package:

1. conv with kernel = stride = patch size, BN, ReLU;
2. plus ``concat(col_embed[j], row_embed[i])`` at token (i, j);
3. ``nn.MultiheadAttention`` called with its defaults (so it materialises
   and returns the (L, L) attention weights);
4. upsampling of the attended tokens to full resolution, then the 1x1
   restoration conv, BN, sigmoid, exp, all at full resolution;
5. separate average pools for the numerator and denominator of eq. 5
   (``win_norm``), or the numerator alone ('nowin').

It copies its weights from an :class:`~sapool_mmdet.pooling.NLPool`, and
serves the tests and ``tools/benchmark_nlpool.py`` as the baseline that
NLPool must match value for value. With ``pos_embed='rowcol'``,
``upsample='nearest'`` and ``embed_width='per_head'`` the NLPool is the
authors' module, and this is a transcription of that module as a whole.
The authors' code has no other positional encoding: for NLPool's own
'learned' and 'sine' encodings (and 'bilinear' upsampling, the paper's) the
transcription calls NLPool's encoding module, so only the rest of the
pipeline is checked against the authors' order of operations. Sizes must
be multiples of the patch size and the stride, as there.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from .positional import RowColPositionalEncoding
from .self_attentive import NLPool

__all__ = ['NLPoolReference', 'rowcol_encoding']


def rowcol_encoding(row_table: torch.Tensor, col_table: torch.Tensor,
                    height: int, width: int) -> torch.Tensor:
    """The authors' learned row/column encoding, token by token.

    Args:
        row_table (Tensor): (max_len, D/2) row embeddings.
        col_table (Tensor): (max_len, D/2) column embeddings.
        height (int): Token rows h.
        width (int): Token columns w.

    Returns:
        Tensor: (1, D, h, w); channels [0, D/2) hold the column embedding
        of the token's column, [D/2, D) the row embedding of its row.
    """
    tokens = [[torch.cat([col_table[j], row_table[i]])
               for j in range(width)] for i in range(height)]
    grid = torch.stack([torch.stack(row) for row in tokens])  # (h, w, D)
    return grid.permute(2, 0, 1).unsqueeze(0)


class NLPoolReference(nn.Module):
    """Slow transcription of the authors' NLPool that copies its weights
    from an :class:`NLPool` (norms must be BatchNorm).

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

    def positional_encoding(self, tokens: torch.Tensor) -> torch.Tensor:
        if isinstance(self.pos_embed, RowColPositionalEncoding):
            return rowcol_encoding(self.pos_embed.row_embed.weight,
                                   self.pos_embed.col_embed.weight,
                                   *tokens.shape[-2:])
        return self.pos_embed(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        p, s = self.patch_size, self.stride
        if h % p or w % p or h % s or w % s:
            raise ValueError('the transcription needs H and W divisible by '
                             'the patch size and the stride')
        tokens = F.relu(self.embed_norm(self.embed_conv(x)))
        if self.pos_embed is not None:
            tokens = tokens + self.positional_encoding(tokens)
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
