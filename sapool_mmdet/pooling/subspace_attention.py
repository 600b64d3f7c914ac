"""Subspace attention pooling: low-rank spatial attention per channel group."""
from typing import Optional

import torch
import torch.nn as nn
from mmcv.cnn import ConvModule, build_norm_layer

from .builder import POOLING, check_positive_int
from .weighted_average import WeightedPool, upcast

__all__ = ['SubspaceAttnPool']


@POOLING.register_module()
class SubspaceAttnPool(WeightedPool):
    """Subspace attention pooling, after the note "Subspace Attention Pooling
    for Compact Neural Networks": per-subspace low-rank spatial attention
    maps used as the weights of eq. 5 of Chen et al. (WACV 2023).

    The C channels are split into g groups (subspaces) x_1..x_g of
    G = C / g channels. With n = 1..g:

    1. squeeze, G_sq: q_n = sum_k a_nk x_n^k + b_n, a learned weighted sum
       of the group's maps (a grouped 1x1 conv, C -> g);
    2. pooled profiles: r_n(i) = mean_j q_n(i, j) (H values) and
       c_n(j) = mean_i q_n(i, j) (W values);
    3. an MLP across the subspaces, applied at every profile position:
       [U; V] = W_2 act(norm(W_1 [r; c])), W_1: g -> hidden,
       W_2: hidden -> g * rank; U_n is H x rank, V_n is W x rank;
    4. the low-rank attention map A_n = U_n V_n^T (H x W, rank <= rank);
    5. pi_n = exp(sigmoid(norm(A_n))), the rectification of NLPool (sec. 4.1,
       step 3), so the weights are positive and bounded;
    6. G_scale: every channel of group n takes pi_n as its weights, and the
       output is eq. 5 with kernel = stride = s.

    Why this follows the note: it splits the maps into g mutually exclusive
    groups, squeezes each by a weighted sum of its maps (G_sq), builds a
    rank-1 (by default) attention map A = U V^T per group, passes the pooled
    features through an MLP that spreads each subspace's spatial information
    to the others, and distributes each group's map over its maps
    (G_scale). The note's U, V in R^(f x 1) span a spatial extent f, so they
    cannot be fixed parameters for inputs of any size; here they are
    computed from the input by the MLP, whose weights are the learned
    attention parameters. The weight of pixel (i, j) depends on its whole
    row and column in every subspace: the pooling is non-local at the cost
    of O((H + W) * g) attention features instead of NLPool's token attention.

    Mixed precision: the convs, the MLP and the attention map run in the
    autocast dtype; the rectification (sigmoid, exp) and eq. 5 in float32.

    Args:
        in_channels (int): Channels C of input and output.
        stride (int): Window size and stride s.
        groups (int): Subspaces g; must divide C. Default: 4.
        rank (int): Rank of each attention map. Default: 1 (the note).
        mlp_ratio (float): Hidden width of the MLP, round(mlp_ratio * g).
            Default: 2.0.
        norm_cfg (dict): Norm of the MLP's hidden layer and of the attention
            maps. Default: dict(type='BN').
        act_cfg (dict): Activation of the MLP. Default: dict(type='ReLU').
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 stride: int,
                 groups: int = 4,
                 rank: int = 1,
                 mlp_ratio: float = 2.0,
                 norm_cfg: dict = dict(type='BN'),
                 act_cfg: dict = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(in_channels, stride, init_cfg=init_cfg)
        self.groups = check_positive_int('groups', groups)
        self.rank = check_positive_int('rank', rank)
        if in_channels % groups:
            raise ValueError(f'groups={groups} must divide in_channels='
                             f'{in_channels}')
        if not isinstance(mlp_ratio, (int, float)) or mlp_ratio <= 0:
            raise ValueError(
                f'mlp_ratio must be a number > 0, got {mlp_ratio!r}')
        hidden = max(1, round(mlp_ratio * groups))
        self.squeeze = nn.Conv2d(in_channels, groups, 1, groups=groups)
        self.mlp = nn.Sequential(
            ConvModule(groups, hidden, 1, norm_cfg=norm_cfg, act_cfg=act_cfg),
            nn.Conv2d(hidden, groups * rank, 1))
        self.attention_norm = build_norm_layer(norm_cfg, groups)[1]

    def pooling_weights(self, x: torch.Tensor) -> torch.Tensor:
        n, _, height, width = x.shape
        squeezed = self.squeeze(x)
        # Row and column profiles side by side, as an (H + W) x 1 map, so one
        # MLP (and one norm update) serves both factors.
        profiles = torch.cat([squeezed.mean(dim=3), squeezed.mean(dim=2)],
                             dim=2).unsqueeze(-1)
        factors = self.mlp(profiles).view(n, self.groups, self.rank,
                                          height + width)
        row_factors, col_factors = factors.split([height, width], dim=3)
        attention = torch.einsum('ngrh,ngrw->nghw', row_factors, col_factors)
        weights = upcast(self.attention_norm(attention)).sigmoid().exp()
        return weights.repeat_interleave(self.in_channels // self.groups,
                                         dim=1)
