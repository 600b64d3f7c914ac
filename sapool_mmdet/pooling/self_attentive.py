"""Non-local self-attentive pooling (Chen et al., WACV 2023)."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule, build_norm_layer

from .builder import POOLING, check_choice, check_positive_int
from .positional import (LearnedPositionalEncoding, RowColPositionalEncoding,
                         SinePositionalEncoding)
from .weighted_average import WeightedPool, upcast

__all__ = ['MultiHeadSelfAttention', 'NLPool', 'embedding_width',
           'build_positional_encoding']

POS_EMBEDS = ('learned', 'sine', 'rowcol', None)
UPSAMPLE_MODES = ('bilinear', 'nearest')
EMBED_WIDTHS = ('total', 'per_head')
#: Rows and columns of the 'rowcol' tables, as in the authors' code.
ROWCOL_MAX_LEN = 256


def embedding_width(in_channels: int, embed_ratio: float, num_heads: int,
                    rule: str = 'total') -> int:
    """Token channels D of the patch embedding (eps_r * C in the paper).

    Args:
        in_channels (int): Channels C.
        embed_ratio (float): eps_r > 0.
        num_heads (int): Heads m.
        rule (str): 'total': D = round(eps_r * C), which m must divide
            (an error otherwise). 'per_head': the authors' code,
            D = max(1, round(eps_r * C / m)) * m, which m always divides
            (C = 160, m = 64 gives 128). Python's round (half to even)
            in both. Default: 'total'.

    Returns:
        int: D.
    """
    check_positive_int('num_heads', num_heads)
    check_choice('embed_width', rule, EMBED_WIDTHS)
    if (isinstance(embed_ratio, bool)
            or not isinstance(embed_ratio, (int, float)) or embed_ratio <= 0):
        raise ValueError(
            f'embed_ratio must be a number > 0, got {embed_ratio!r}')
    if rule == 'per_head':
        return max(1, round(embed_ratio * in_channels / num_heads)) * num_heads
    embed_dim = round(embed_ratio * in_channels)
    if embed_dim < 1 or embed_dim % num_heads:
        raise ValueError(
            f'the embedding has round(embed_ratio * in_channels) = '
            f'round({embed_ratio} * {in_channels}) = {embed_dim} '
            f'channels, which num_heads={num_heads} must divide; choose '
            f'num_heads among the divisors of {embed_dim}, change '
            f'embed_ratio, or set embed_width=\'per_head\' (the authors\' '
            f'rule: round(embed_ratio * in_channels / num_heads) * num_heads)')
    return embed_dim


def build_positional_encoding(pos_embed: Optional[str], embed_dim: int,
                              grid_size: int = 16) -> Optional[nn.Module]:
    """Build the encoding named by ``pos_embed`` for D = ``embed_dim``.

    Args:
        pos_embed (str | None): 'learned' (a learned ``grid_size`` square
            table resized to the token grid), 'sine' (fixed 2-D sine),
            'rowcol' (learned row and column tables indexed directly, at
            most 256 x 256 tokens: the authors' code) or None.
        embed_dim (int): Token channels D.
        grid_size (int): Side of the 'learned' table. Default: 16.

    Returns:
        nn.Module | None: maps a (N, D, h, w) token map to its (1, D, h, w)
        encoding; None for ``pos_embed=None``.
    """
    check_choice('pos_embed', pos_embed, POS_EMBEDS)
    if pos_embed == 'learned':
        return LearnedPositionalEncoding(
            embed_dim, check_positive_int('pos_grid_size', grid_size))
    if pos_embed == 'sine':
        return SinePositionalEncoding(embed_dim)
    if pos_embed == 'rowcol':
        return RowColPositionalEncoding(embed_dim, ROWCOL_MAX_LEN)
    return None


class MultiHeadSelfAttention(nn.Module):
    """Multi-head self-attention, eqs. 2-3, on (N, L, D) token sequences.

    The same parameters as ``nn.MultiheadAttention`` (a joint q/k/v input
    projection and an output projection), computed with
    ``F.scaled_dot_product_attention`` so the (L, L) attention matrix is
    never stored: the early pooling layers see thousands of tokens.

    Args:
        embed_dim (int): Token channels D.
        num_heads (int): Heads m; must divide D.
    """

    def __init__(self, embed_dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.in_proj = nn.Linear(embed_dim, 3 * embed_dim)
        self.out_proj = nn.Linear(embed_dim, embed_dim)
        nn.init.xavier_uniform_(self.in_proj.weight)
        nn.init.zeros_(self.in_proj.bias)
        nn.init.zeros_(self.out_proj.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        n, length, dim = tokens.shape
        qkv = self.in_proj(tokens).view(n, length, 3, self.num_heads,
                                        dim // self.num_heads)
        query, key, value = qkv.permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(query, key, value)
        return self.out_proj(attended.transpose(1, 2).reshape(n, length, dim))


@POOLING.register_module()
class NLPool(WeightedPool):
    """Non-local self-attentive pooling, section 4.1 of Chen et al.,
    "Self-Attentive Pooling for Efficient Deep Learning", WACV 2023.

    pi(x) = exp(sigmoid(BN(Conv1x1(Up(MSA(PatchEmbed(x) + PE))))))
    and the output is the weighted window average of eq. 5 with
    kernel = stride = s:

    1. patch embedding (eq. 4): conv with kernel = stride = ``patch_size``
       (eps_p) to ``embed_ratio * C`` channels (eps_r), norm (bn1), ReLU;
    2. a positional encoding added to the tokens;
    3. multi-head self-attention with ``num_heads`` (m) heads;
    4. spatial-channel restoration: upsample the token map to (H, W), 1x1
       conv back to C channels, norm (bn2);
    5. sigmoid, then exp;
    6. eq. 5.

    H and W need not be multiples of ``patch_size`` or ``stride``: the
    embedding sees the input zero-padded to a multiple of ``patch_size``,
    the restored map is cropped back to (H, W), and windows at the edge
    average the pixels they cover.

    The 1x1 restoration conv runs before the upsampling: both are linear
    and the interpolation weights of each output pixel sum to one, so the
    order does not change the result, and the conv then costs 1/eps_p^2.

    Args:
        in_channels (int): Channels C.
        stride (int): Pooling window and stride s.
        patch_size (int): eps_p. Default: 2.
        embed_ratio (float): eps_r; tokens have about eps_r * C channels,
            see ``embed_width``. Default: 1.0.
        num_heads (int): m. Default: 2.
        pos_embed (str | None): 'learned' (a learned table resized to the
            token grid), 'sine', 'rowcol' (the authors' code: learned row
            and column tables, D/2 channels each, indexed directly; token
            grids up to 256 x 256 and an even D), or None.
            Default: 'learned'.
        pos_grid_size (int): Side of the 'learned' table. Default: 16.
        upsample (str): 'bilinear' (the paper) or 'nearest' (the official
            code). Default: 'bilinear'.
        norm_cfg (dict): Norm of bn1 and bn2. Default: dict(type='BN').
        act_cfg (dict): Activation of the embedding. Default: ReLU.
        use_embed_norm (bool): Keep bn1 (Table 7 'w/o(bn1)'). Default: True.
        use_restore_norm (bool): Keep bn2 (Table 7 'w/o(bn2)').
            Default: True.
        use_sigmoid (bool): Table 7 'w/o(sigmoid)'. Default: True.
        use_exp (bool): Table 7 'w/o(exp)'. Default: True.
        window_norm (bool): The denominator of eq. 5; False is the official
            code's 'nowin'. Default: True.
        embed_width (str): How D follows from eps_r, C and m: 'total',
            D = round(eps_r * C), which m must divide; or 'per_head', the
            authors' code, D = max(1, round(eps_r * C / m)) * m.
            Default: 'total'.
        init_cfg (dict, optional): mmengine initialisation config.
    """

    #: conv_cfg of the patch-embedding conv (None: a plain conv); the
    #: deformable variant (DeformNLPool) overrides it.
    embed_conv_cfg: Optional[dict] = None

    def __init__(self,
                 in_channels: int,
                 stride: int,
                 patch_size: int = 2,
                 embed_ratio: float = 1.0,
                 num_heads: int = 2,
                 pos_embed: Optional[str] = 'learned',
                 pos_grid_size: int = 16,
                 upsample: str = 'bilinear',
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 use_embed_norm: bool = True,
                 use_restore_norm: bool = True,
                 use_sigmoid: bool = True,
                 use_exp: bool = True,
                 window_norm: bool = True,
                 embed_width: str = 'total',
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(in_channels, stride, window_norm, init_cfg)
        self.patch_size = check_positive_int('patch_size', patch_size)
        check_choice('pos_embed', pos_embed, POS_EMBEDS)
        self.upsample = check_choice('upsample', upsample, UPSAMPLE_MODES)
        embed_dim = embedding_width(in_channels, embed_ratio, num_heads,
                                    embed_width)
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.norm_cfg = norm_cfg
        self.use_sigmoid = bool(use_sigmoid)
        self.use_exp = bool(use_exp)

        self.embed = ConvModule(
            in_channels, embed_dim, patch_size, stride=patch_size,
            conv_cfg=self.embed_conv_cfg,
            norm_cfg=norm_cfg if use_embed_norm else None, act_cfg=act_cfg)
        self.pos_embed = build_positional_encoding(pos_embed, embed_dim,
                                                   pos_grid_size)
        self.attention = MultiHeadSelfAttention(embed_dim, num_heads)
        self.restore_conv = nn.Conv2d(embed_dim, in_channels, 1,
                                      bias=not use_restore_norm)
        self.restore_norm = (build_norm_layer(norm_cfg, in_channels)[1]
                             if use_restore_norm else nn.Identity())

    def pooling_weights(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        p = self.patch_size
        pad_h, pad_w = -height % p, -width % p
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h))
        tokens = self.embed(x)
        if self.pos_embed is not None:
            tokens = tokens + self.pos_embed(tokens)
        n, dim, grid_h, grid_w = tokens.shape
        attended = self.attention(tokens.flatten(2).transpose(1, 2))
        attended = attended.transpose(1, 2).reshape(n, dim, grid_h, grid_w)
        restored = self.restore_conv(attended)
        if p > 1:
            restored = F.interpolate(
                restored, scale_factor=p, mode=self.upsample,
                **({'align_corners': False}
                   if self.upsample == 'bilinear' else {}))
            restored = restored[..., :height, :width]
        # float32 from here on under autocast: exp without the sigmoid
        # overflows float16 past 11, and eq. 5 runs in float32 anyway.
        weights = upcast(self.restore_norm(restored))
        if self.use_sigmoid:
            weights = weights.sigmoid()
        if self.use_exp:
            weights = weights.exp()
        return weights
