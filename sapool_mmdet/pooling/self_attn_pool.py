"""Plain self-attention before a strided conv: the 'SelfAttn' row of
Table 7 in Chen et al. (WACV 2023)."""
from typing import Optional

import torch
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule

from .builder import POOLING, check_choice, check_positive_int
from .self_attentive import (POS_EMBEDS, MultiHeadSelfAttention,
                             build_positional_encoding, embedding_width)

__all__ = ['SelfAttnPool']


@POOLING.register_module()
class SelfAttnPool(BaseModule):
    """Self-attention followed by a strided conv, the 'SelfAttn' baseline
    of the ablation (Table 7) in Chen et al., "Self-Attentive Pooling for
    Efficient Deep Learning", WACV 2023: "SelfAttn directly uses the
    multi-head self-attention module before each strided convolution layer
    without spatial-channel restoration and weighted pooling".

    It follows the authors' ``attn_pool.py``:

    1. embedding: 1x1 conv, C -> D channels, norm, ReLU (no patches: every
       pixel is a token);
    2. a positional encoding added to the tokens;
    3. multi-head self-attention over all H * W tokens (at full
       resolution, through ``scaled_dot_product_attention``, so the
       (HW, HW) attention matrix is never stored);
    4. down-sampling: conv with kernel = stride = s, D -> C channels, norm,
       ReLU.

    The output is these features themselves, not a weighted average of the
    input: unlike :class:`~.self_attentive.NLPool` there are no pooling
    weights and no eq. 5.

    H and W need not be multiples of s: the attended map is zero-padded at
    the bottom and right to the next multiple, so the output is
    (N, C, ceil(H/s), ceil(W/s)) like every registered pooling; on
    multiples of s it is exactly the authors' computation.

    Args:
        in_channels (int): Channels C of input and output.
        stride (int): Kernel and stride s of the down-sampling conv.
        embed_ratio (float): D is about eps_r * C, see ``embed_width``.
            Default: 1.0.
        num_heads (int): m. Default: 2.
        pos_embed (str | None): 'rowcol' (the authors' learned row and
            column tables; at most 256 rows and columns of pixels),
            'learned', 'sine' or None. Default: 'rowcol'.
        pos_grid_size (int): Side of the 'learned' table. Default: 16.
        embed_width (str): 'per_head' (the authors' rule,
            D = max(1, round(eps_r * C / m)) * m) or 'total'
            (D = round(eps_r * C), which m must divide).
            Default: 'per_head'.
        norm_cfg (dict): Norm after both convs. Default: dict(type='BN').
        act_cfg (dict): Activation after both convs. Default: ReLU.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 stride: int,
                 embed_ratio: float = 1.0,
                 num_heads: int = 2,
                 pos_embed: Optional[str] = 'rowcol',
                 pos_grid_size: int = 16,
                 embed_width: str = 'per_head',
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        self.in_channels = check_positive_int('in_channels', in_channels)
        self.stride = check_positive_int('stride', stride)
        check_choice('pos_embed', pos_embed, POS_EMBEDS)
        self.embed_dim = embedding_width(in_channels, embed_ratio, num_heads,
                                         embed_width)
        self.num_heads = num_heads
        self.embed = ConvModule(in_channels, self.embed_dim, 1,
                                norm_cfg=norm_cfg, act_cfg=act_cfg)
        self.pos_embed = build_positional_encoding(pos_embed, self.embed_dim,
                                                   pos_grid_size)
        self.attention = MultiHeadSelfAttention(self.embed_dim, num_heads)
        self.reduce = ConvModule(self.embed_dim, in_channels, stride,
                                 stride=stride, norm_cfg=norm_cfg,
                                 act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.embed(x)
        if self.pos_embed is not None:
            tokens = tokens + self.pos_embed(tokens)
        n, dim, height, width = tokens.shape
        attended = self.attention(tokens.flatten(2).transpose(1, 2))
        attended = attended.transpose(1, 2).reshape(n, dim, height, width)
        s = self.stride
        pad_h, pad_w = -height % s, -width % s
        if pad_h or pad_w:
            attended = F.pad(attended, (0, pad_w, 0, pad_h))
        return self.reduce(attended)
