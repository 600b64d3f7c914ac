"""RNNPool: recurrent summaries of each window (Saha et al., NeurIPS 2020)."""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmcv.cnn import ConvModule
from mmengine.model import BaseModule

from .builder import POOLING, check_positive_int

__all__ = ['RNNPool']


@POOLING.register_module()
class RNNPool(BaseModule):
    """RNN-based pooling: Saha, Kusupati, Simhadri, Varma and Jain,
    "RNNPool: Efficient Non-linear Pooling for RAM Constrained Inference",
    NeurIPS 2020: the RNNPool operator with patch = stride = s.

    For each s x s window (C channels per pixel):

    1. RNN_1 (hidden h1) reads every row of the window as a sequence of s
       pixels and every column likewise (the same RNN for both); its last
       state summarises the line: s row summaries and s column summaries;
    2. a bidirectional RNN_2 (hidden h2) reads the row summaries top to
       bottom and bottom to top, and the column summaries left to right and
       right to left; its four last states, concatenated, are the window's
       4 * h2 features;
    3. a 1x1 conv + norm + activation projects them to C channels, so the
       layer is a drop-in replacement for the strided conv (our addition;
       RNNPool itself outputs 4 * h2 channels).

    Both RNNs are GRUs. H and W need not be multiples of s: the input is
    zero-padded at the bottom/right, so edge windows see zeros for the
    pixels they lack. The pooling is local: a window's output depends only
    on its pixels.

    Args:
        in_channels (int): Channels C of input and output.
        stride (int): Window (patch) size and stride s.
        hidden_channels (int, optional): h1; None uses max(1, C // 4).
            Default: None.
        summary_channels (int, optional): h2; None uses max(1, C // 4), so
            4 * h2 ~ C. Default: None.
        norm_cfg (dict, optional): Norm of the projection.
            Default: dict(type='BN').
        act_cfg (dict, optional): Activation of the projection.
            Default: dict(type='ReLU').
        init_cfg (dict, optional): mmengine initialisation config.
    """

    def __init__(self,
                 in_channels: int,
                 stride: int,
                 hidden_channels: Optional[int] = None,
                 summary_channels: Optional[int] = None,
                 norm_cfg: Optional[dict] = dict(type='BN'),
                 act_cfg: Optional[dict] = dict(type='ReLU'),
                 init_cfg: Optional[dict] = None) -> None:
        super().__init__(init_cfg=init_cfg)
        check_positive_int('in_channels', in_channels)
        self.stride = check_positive_int('stride', stride)
        default = max(1, in_channels // 4)
        hidden_channels = check_positive_int(
            'hidden_channels',
            default if hidden_channels is None else hidden_channels)
        summary_channels = check_positive_int(
            'summary_channels',
            default if summary_channels is None else summary_channels)
        self.line_rnn = nn.GRU(in_channels, hidden_channels, batch_first=True)
        self.summary_rnn = nn.GRU(hidden_channels, summary_channels,
                                  batch_first=True, bidirectional=True)
        self.project = ConvModule(4 * summary_channels, in_channels, 1,
                                  norm_cfg=norm_cfg, act_cfg=act_cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        n, channels, height, width = x.shape
        x = F.pad(x, (0, -width % s, 0, -height % s))
        out_h, out_w = x.shape[2] // s, x.shape[3] // s
        # (N, C, out_h, s, out_w, s) -> one (rows, columns, C) grid per window
        windows = x.view(n, channels, out_h, s, out_w, s).permute(
            0, 2, 4, 3, 5, 1).reshape(-1, s, s, channels)
        features = torch.cat([
            self._sweep(self._summarise_lines(windows)),
            self._sweep(self._summarise_lines(windows.transpose(1, 2)))
        ], dim=1)
        features = features.view(n, out_h, out_w, -1).permute(0, 3, 1, 2)
        return self.project(features)

    def _summarise_lines(self, windows: torch.Tensor) -> torch.Tensor:
        """RNN_1 over each line: (B, lines, steps, C) -> (B, lines, h1)."""
        num_windows, lines, steps, channels = windows.shape
        _, last = self.line_rnn(
            windows.reshape(num_windows * lines, steps, channels))
        return last[0].view(num_windows, lines, -1)

    def _sweep(self, summaries: torch.Tensor) -> torch.Tensor:
        """RNN_2 both ways over the summaries: (B, L, h1) -> (B, 2 * h2)."""
        _, last = self.summary_rnn(summaries)
        return torch.cat([last[0], last[1]], dim=1)
