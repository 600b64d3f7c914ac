"""Modulated deformable convolution (DCNv2) in plain PyTorch: mmcv's
``modulated_deform_conv`` kernel
(``mmcv/ops/csrc/pytorch/cpu/modulated_deform_conv.cpp``) without a
compiler. Autograd gives the backward."""
from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ['modulated_deform_conv2d']


def _sample(input: Tensor, y: Tensor, x: Tensor) -> Tensor:
    """Bilinear samples with zeros outside the map (DCN's
    ``dmcn_im2col_bilinear``): a point contributes only where
    ``-1 < y < H`` and ``-1 < x < W``, and each of its four neighbours only
    where that pixel exists.

    Args:
        input (Tensor): (B, G, Cg, H, W), one slice per deformable group.
        y (Tensor): (B, G, L) sample rows.
        x (Tensor): (B, G, L) sample columns.

    Returns:
        Tensor: (B, G, Cg, L).
    """
    height, width = input.shape[-2:]
    flat = input.flatten(3)
    inside = (y > -1) & (x > -1) & (y < height) & (x < width)
    y_low, x_low = y.floor(), x.floor()
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    y_low, x_low = y_low.long(), x_low.long()
    total = 0
    for yy, xx, weight in ((y_low, x_low, hy * hx),
                           (y_low, x_low + 1, hy * lx),
                           (y_low + 1, x_low, ly * hx),
                           (y_low + 1, x_low + 1, ly * lx)):
        exists = inside & (yy >= 0) & (xx >= 0) & (yy < height) & \
            (xx < width)
        index = (yy.clamp(0, height - 1) * width + xx.clamp(0, width - 1))
        index = index[:, :, None].expand(-1, -1, flat.size(2), -1)
        total = total + (weight * exists)[:, :, None] * flat.gather(3, index)
    return total


def modulated_deform_conv2d(input: Tensor, offset: Tensor, mask: Tensor,
                            weight: Tensor, bias: Optional[Tensor] = None,
                            stride: Tuple[int, int] = (1, 1),
                            padding: Tuple[int, int] = (0, 0),
                            dilation: Tuple[int, int] = (1, 1),
                            groups: int = 1,
                            deform_groups: int = 1) -> Tensor:
    """Modulated deformable convolution, DCNv2 (Zhu et al., "Deformable
    ConvNets v2", CVPR 2019, eq. 3):
    ``y(p) = sum_k w_k * x(p + p_k + dp_k) * dm_k``, with mmcv's layouts.

    Kernel tap ``k = i * kernel_w + j`` of deformable group ``g`` reads its
    row offset from ``offset`` channel ``2 * (g * K + k)``, its column
    offset from the next channel and its modulation from ``mask`` channel
    ``g * K + k`` (K = kernel_h * kernel_w); deformable group ``g`` covers
    input channels ``[g * C / G, (g + 1) * C / G)``. Computed in float32
    for float16/bfloat16 inputs and returned in the input's dtype.

    Args:
        input (Tensor): (B, C, H, W).
        offset (Tensor): (B, 2 * G * K, H_out, W_out).
        mask (Tensor): (B, G * K, H_out, W_out), usually in [0, 1].
        weight (Tensor): (C_out, C / groups, kernel_h, kernel_w).
        bias (Tensor, optional): (C_out,). Default: None.
        stride (tuple[int, int]): Default: (1, 1).
        padding (tuple[int, int]): Default: (0, 0).
        dilation (tuple[int, int]): Default: (1, 1).
        groups (int): Convolution groups. Default: 1.
        deform_groups (int): Deformable groups G. Default: 1.

    Returns:
        Tensor: (B, C_out, H_out, W_out).

    Raises:
        ValueError: if the shapes of offset, mask or weight do not fit.
    """
    batch, channels, height, width = input.shape
    out_channels, group_channels, kernel_h, kernel_w = weight.shape
    taps = kernel_h * kernel_w
    out_h = (height + 2 * padding[0] -
             (dilation[0] * (kernel_h - 1) + 1)) // stride[0] + 1
    out_w = (width + 2 * padding[1] -
             (dilation[1] * (kernel_w - 1) + 1)) // stride[1] + 1
    if channels != group_channels * groups or \
            channels % deform_groups or out_channels % groups:
        raise ValueError(
            f'modulated_deform_conv2d: input has {channels} channels, '
            f'weight {tuple(weight.shape)}, groups={groups}, '
            f'deform_groups={deform_groups}; need C = weight.size(1) * '
            'groups, with C divisible by deform_groups and C_out by groups')
    expected = (batch, 2 * deform_groups * taps, out_h, out_w)
    if tuple(offset.shape) != expected or \
            tuple(mask.shape) != (batch, deform_groups * taps, out_h, out_w):
        raise ValueError(
            f'modulated_deform_conv2d: offset {tuple(offset.shape)} and mask '
            f'{tuple(mask.shape)} must be {expected} and '
            f'{(batch, deform_groups * taps, out_h, out_w)}')
    dtype = input.dtype
    compute = torch.float32 if dtype in (torch.float16, torch.bfloat16) \
        else dtype
    input, offset, mask, weight = (
        t.to(compute) for t in (input, offset, mask, weight))
    device = input.device
    # p + p_k for every tap k and output position: (1, 1, K, H_out, W_out)
    tap_y = torch.arange(kernel_h, device=device).repeat_interleave(kernel_w)
    tap_x = torch.arange(kernel_w, device=device).repeat(kernel_h)
    grid_y = torch.arange(out_h, device=device) * stride[0] - padding[0]
    grid_x = torch.arange(out_w, device=device) * stride[1] - padding[1]
    base_y = grid_y[None, :, None] + (tap_y * dilation[0])[:, None, None]
    base_x = grid_x[None, None, :] + (tap_x * dilation[1])[:, None, None]
    offset = offset.view(batch, deform_groups, taps, 2, out_h, out_w)
    y = (base_y + offset[:, :, :, 0]).flatten(2)
    x = (base_x + offset[:, :, :, 1]).flatten(2)
    columns = _sample(
        input.view(batch, deform_groups, channels // deform_groups, height,
                   width), y, x)
    columns = columns * mask.reshape(batch, deform_groups, 1, -1)
    # (B, groups, C / groups * K, L) x (groups, C_out / groups, C/groups * K)
    columns = columns.view(batch, groups, group_channels * taps,
                           out_h * out_w)
    weight = weight.reshape(groups, out_channels // groups, -1)
    output = torch.einsum('gok,bgkl->bgol', weight, columns)
    output = output.reshape(batch, out_channels, out_h, out_w)
    if bias is not None:
        output = output + bias.to(compute).view(1, -1, 1, 1)
    return output.to(dtype)
