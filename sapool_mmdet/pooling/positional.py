"""Positional encodings added to the token grid of the attention poolings."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ['LearnedPositionalEncoding', 'SinePositionalEncoding',
           'RowColPositionalEncoding']


class LearnedPositionalEncoding(nn.Module):
    """Learned positional encoding (ViT, Dosovitskiy et al. 2021).

    A learned (D, G, G) table is resized bilinearly to the token grid, as ViT
    does when fine-tuning at another resolution, so one module serves every
    input size instead of failing past a fixed number of positions.

    Args:
        embed_dim (int): Token channels D.
        grid_size (int): Side G of the learned table. Default: 16.
    """

    def __init__(self, embed_dim: int, grid_size: int = 16) -> None:
        super().__init__()
        self.table = nn.Parameter(torch.empty(1, embed_dim, grid_size,
                                              grid_size))
        nn.init.trunc_normal_(self.table, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Return the (1, D, h, w) encoding for a (N, D, h, w) token map."""
        size = tokens.shape[-2:]
        if self.table.shape[-2:] == size:
            return self.table
        return F.interpolate(self.table, size=size, mode='bilinear',
                             align_corners=False)


class SinePositionalEncoding(nn.Module):
    """Fixed 2-D sine/cosine encoding (DETR), normalised to the grid size.

    Half of the D channels encode the row, half the column.

    Args:
        embed_dim (int): Token channels D (any D >= 1; odd D pads a zero).
        temperature (float): Frequency base. Default: 10000.
    """

    def __init__(self, embed_dim: int, temperature: float = 10000.) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.temperature = temperature

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Return the (1, D, h, w) encoding for a (N, D, h, w) token map."""
        height, width = tokens.shape[-2:]
        half = self.embed_dim // 2
        rows = self._encode(height, half, width, along_rows=True)
        cols = self._encode(width, self.embed_dim - half, height,
                            along_rows=False)
        return torch.cat([rows, cols], dim=0).unsqueeze(0).to(tokens)

    def _encode(self, length: int, channels: int, other: int,
                along_rows: bool) -> torch.Tensor:
        position = (torch.arange(length, dtype=torch.float32) + 0.5) / length
        position = position * 2 * math.pi
        dim = torch.arange(channels, dtype=torch.float32)
        freq = self.temperature ** (2 * torch.div(dim, 2, rounding_mode='floor')
                                    / max(channels, 1))
        angle = position[:, None] / freq[None, :]
        enc = torch.where(dim[None, :] % 2 == 0, angle.sin(), angle.cos())
        enc = enc.t()  # (channels, length)
        if along_rows:
            return enc[:, :, None].expand(channels, length, other)
        return enc[:, None, :].expand(channels, other, length)


class RowColPositionalEncoding(nn.Module):
    """Learned row and column embeddings (DETR, Carion et al. 2020), the
    positional encoding of the self-attentive pooling authors' code.

    Two tables of ``max_len`` learned vectors with D/2 channels each, one
    per row index and one per column index, initialised uniformly on
    [0, 1). The token at (i, j) gets ``concat(col[j], row[i])``: its first
    D/2 channels say its column, the last D/2 its row. Positions index the
    tables directly (no resizing), so the token grid can have at most
    ``max_len`` rows and columns.

    Args:
        embed_dim (int): Token channels D; must be even.
        max_len (int): Rows and columns the tables hold. Default: 256.
    """

    def __init__(self, embed_dim: int, max_len: int = 256) -> None:
        super().__init__()
        if embed_dim % 2:
            raise ValueError(
                f'row/column positional encoding splits the {embed_dim} '
                f'token channels into two halves (columns, rows), so the '
                f'embedding width must be even; change embed_ratio or '
                f'num_heads, or use pos_embed=\'learned\' or \'sine\'')
        self.max_len = max_len
        self.row_embed = nn.Embedding(max_len, embed_dim // 2)
        self.col_embed = nn.Embedding(max_len, embed_dim // 2)
        nn.init.uniform_(self.row_embed.weight)
        nn.init.uniform_(self.col_embed.weight)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Return the (1, D, h, w) encoding for a (N, D, h, w) token map.

        Raises:
            ValueError: if h or w exceeds ``max_len``.
        """
        height, width = tokens.shape[-2:]
        if height > self.max_len or width > self.max_len:
            raise ValueError(
                f'the token grid is {height}x{width}, but the row/column '
                f'positional encoding has {self.max_len} learned rows and '
                f'columns; use a larger patch_size (fewer tokens) or '
                f'pos_embed=\'learned\' / \'sine\', which fit any grid')
        half = self.row_embed.embedding_dim
        cols = self.col_embed.weight[:width].t()[:, None, :]
        rows = self.row_embed.weight[:height].t()[:, :, None]
        return torch.cat([cols.expand(half, height, width),
                          rows.expand(half, height, width)]).unsqueeze(0).to(
                              tokens.dtype)
