"""RoIAlign in plain PyTorch: mmcv's ``roi_align`` kernel
(``mmcv/ops/csrc/pytorch/cpu/roi_align.cpp``, after Detectron2 / Caffe2)
without a compiler. Autograd gives the backward."""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

__all__ = ['roi_align', 'roi_align_max_backward']

# The value a max-pooled bin takes when it has no sampling points at all.
_EMPTY_MAX = -10000.0


def _bilinear_corners(y: Tensor, x: Tensor, height: int,
                      width: int) -> List[Tuple[Tensor, Tensor]]:
    """RoIAlign's bilinear interpolation as four (flat index, weight) pairs.

    A point more than one pixel outside the map gets weight 0; points on
    the border band are clamped onto the edge pixels (mmcv's
    ``bilinear_interpolate``, not zero padding).
    """
    inside = (y >= -1) & (y <= height) & (x >= -1) & (x <= width)
    y = y.clamp(min=0)
    x = x.clamp(min=0)
    y_floor, x_floor = y.floor(), x.floor()
    y = torch.where(y_floor >= height - 1, y.new_tensor(height - 1.0), y)
    x = torch.where(x_floor >= width - 1, x.new_tensor(width - 1.0), x)
    y_low = y_floor.clamp(max=height - 1).long()
    x_low = x_floor.clamp(max=width - 1).long()
    y_high = (y_low + 1).clamp(max=height - 1)
    x_high = (x_low + 1).clamp(max=width - 1)
    ly, lx = y - y_low, x - x_low
    hy, hx = 1 - ly, 1 - lx
    inside = inside.to(y.dtype)
    return [(y_low * width + x_low, hy * hx * inside),
            (y_low * width + x_high, hy * lx * inside),
            (y_high * width + x_low, ly * hx * inside),
            (y_high * width + x_high, ly * lx * inside)]


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    """float32 and float64 as given; half precision is computed in
    float32."""
    return dtype if dtype in (torch.float32, torch.float64) \
        else torch.float32


def _roi_frames(rois: Tensor, spatial_scale: float, pooled: Tuple[int, int],
                aligned: bool,
                dtype: torch.dtype) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Per RoI: start (y, x) and bin size (h, w) on the feature map."""
    shift = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, 1:].to(dtype) * spatial_scale -
                      shift).unbind(1)
    height, width = y2 - y1, x2 - x1
    if aligned:
        if (height < 0).any() or (width < 0).any():
            raise ValueError('RoIAlign with aligned=True needs RoIs with '
                             'x2 >= x1 and y2 >= y1')
    else:  # the legacy mode pads every RoI to at least one pixel
        height, width = height.clamp(min=1), width.clamp(min=1)
    return y1, x1, height / pooled[0], width / pooled[1]


def roi_align(input: Tensor, rois: Tensor, output_size: Tuple[int, int],
              spatial_scale: float = 1.0, sampling_ratio: int = 0,
              pool_mode: str = 'avg', aligned: bool = True
              ) -> Tuple[Tensor, Optional[Tensor], Optional[Tensor]]:
    """RoIAlign (He et al., Mask R-CNN, 2017) with mmcv's conventions.

    Each output bin averages (``'avg'``) or takes the maximum (``'max'``)
    of ``gh x gw`` bilinear samples at the centres of a regular grid in the
    bin, where ``gh = sampling_ratio`` or, when it is 0, the adaptive
    ``ceil(roi_height / output_height)`` of each RoI (likewise ``gw``).
    RoIs sharing a grid size are computed together, one row of sample
    points at a time.

    Args:
        input (Tensor): (N, C, H, W) feature maps.
        rois (Tensor): (K, 5) RoIs as (batch index, x1, y1, x2, y2) in
            input-image pixels.
        output_size (tuple[int, int]): (output_height, output_width).
        spatial_scale (float): Feature-map pixels per image pixel.
            Default: 1.0.
        sampling_ratio (int): Samples per bin side; 0 is adaptive.
            Default: 0.
        pool_mode (str): 'avg' or 'max'. Default: 'avg'.
        aligned (bool): Shift RoIs by -0.5 pixel (the corrected RoIAlign);
            False is the legacy mode that pads RoIs to >= 1 pixel.
            Default: True.

    Returns:
        tuple: ``output`` (K, C, output_height, output_width) in the input
        dtype; for 'max' also ``argmax_y`` and ``argmax_x`` (same shape,
        float: the unclamped sample point each maximum came from, -1 where
        a bin has no samples), else None, None.

    Raises:
        ValueError: for a bad ``pool_mode``, ``rois`` shape or, with
            ``aligned=True``, an RoI with negative size.
    """
    if pool_mode not in ('avg', 'max'):
        raise ValueError(f"RoIAlign pool_mode must be 'avg' or 'max', got "
                         f'{pool_mode!r}')
    if rois.dim() != 2 or rois.size(1) != 5:
        raise ValueError('RoIAlign expects rois of shape (K, 5) as '
                         f'(batch index, x1, y1, x2, y2), got '
                         f'{tuple(rois.shape)}')
    _, channels, height, width = input.shape
    pooled_h, pooled_w = output_size
    output = input.new_zeros(len(rois), channels, pooled_h, pooled_w)
    argmax_y = argmax_x = None
    if pool_mode == 'max':
        output.fill_(_EMPTY_MAX)
        argmax_y = output.new_full(output.shape, -1.0,
                                   dtype=_compute_dtype(input.dtype))
        argmax_x = argmax_y.clone()
    if len(rois) == 0:
        return output, argmax_y, argmax_x
    dtype = _compute_dtype(input.dtype)
    start_y, start_x, bin_h, bin_w = _roi_frames(
        rois, spatial_scale, output_size, aligned, dtype)
    if sampling_ratio > 0:
        grid_h = torch.full_like(bin_h, sampling_ratio, dtype=torch.long)
        grid_w = grid_h
    else:
        grid_h, grid_w = bin_h.ceil().long(), bin_w.ceil().long()
    # (N, H*W, C): each bilinear corner gathers whole channel vectors
    features = input.flatten(2).transpose(1, 2)
    batch = rois[:, 0].long()
    grids = torch.stack([grid_h, grid_w], dim=1)
    for gh, gw in torch.unique(grids, dim=0).tolist():
        if gh == 0 or gw == 0:  # no sample points: mmcv's 0 / -10000
            continue
        rows = (grids == grids.new_tensor([gh, gw])).all(dim=1).nonzero()[:, 0]
        # One row of each bin's sample grid at a time: memory stays at
        # R x out_h x out_w x gw x C however large the adaptive grid.
        # Sample points follow mmcv's order of operations (float rounding).
        ph = torch.arange(pooled_h, device=input.device)[:, None, None]
        pw = torch.arange(pooled_w, device=input.device)[:, None]
        ix = torch.arange(gw, device=input.device, dtype=dtype) + 0.5
        sy, sx = start_y[rows, None, None, None], \
            start_x[rows, None, None, None]
        by, bx = bin_h[rows, None, None, None], bin_w[rows, None, None, None]
        shape = (len(rows), pooled_h, pooled_w, gw)
        x = (sx + pw * bx + ix * bx / gw).expand(shape)
        index = batch[rows, None, None, None]
        total = best = best_y = best_x = None
        if pool_mode == 'max':  # mmcv's start: -10000 at no sample point
            best = features.new_full(shape[:3] + (channels,), _EMPTY_MAX,
                                     dtype=dtype)
            best_y, best_x = torch.full_like(best, -1.0), \
                torch.full_like(best, -1.0)
        for iy in range(gh):
            y = (sy + ph * by + (iy + 0.5) * by / gh).expand(shape)
            samples = sum(  # (R, out_h, out_w, gw, C)
                weight[..., None] * features[index, flat].to(dtype)
                for flat, weight in _bilinear_corners(y, x, height, width))
            if pool_mode == 'avg':
                row_sum = samples.sum(dim=3)
                total = row_sum if total is None else total + row_sum
                continue
            # first maximum wins, as in mmcv's strict '>' scan
            value, arg = samples.max(dim=3)
            better = value > best
            best = torch.where(better, value, best)
            best_y = torch.where(better, y[..., :1], best_y)
            best_x = torch.where(better, x.gather(3, arg), best_x)
        if pool_mode == 'avg':
            output[rows] = (total / (gh * gw)).permute(0, 3, 1, 2).to(
                output.dtype)
        else:
            output[rows] = best.permute(0, 3, 1, 2).to(output.dtype)
            argmax_y[rows] = best_y.permute(0, 3, 1, 2)
            argmax_x[rows] = best_x.permute(0, 3, 1, 2)
    return output, argmax_y, argmax_x


def roi_align_max_backward(grad_output: Tensor, rois: Tensor,
                           argmax_y: Tensor, argmax_x: Tensor,
                           input_shape: Tuple[int, int, int, int]) -> Tensor:
    """Gradient of max-mode RoIAlign w.r.t. its input: each bin's gradient
    goes to the four pixels around the sample point its maximum came
    from (``argmax_y``, ``argmax_x`` from :func:`roi_align`), with the
    bilinear weights; bins without samples (argmax -1) give none.

    Args:
        grad_output (Tensor): (K, C, out_h, out_w).
        rois (Tensor): (K, 5) RoIs, as given to the forward.
        argmax_y (Tensor): (K, C, out_h, out_w).
        argmax_x (Tensor): (K, C, out_h, out_w).
        input_shape (tuple): (N, C, H, W) of the forward's input.

    Returns:
        Tensor: (N, C, H, W) gradient in ``grad_output``'s dtype.
    """
    _, channels, height, width = input_shape
    grad_input = grad_output.new_zeros(input_shape).flatten(2)
    sampled = (argmax_y != -1).to(grad_output.dtype)
    batch = rois[:, 0].long()[:, None, None, None].expand_as(argmax_y)
    channel = torch.arange(channels, device=rois.device)[None, :, None, None]
    channel = channel.expand_as(argmax_y)
    for flat, weight in _bilinear_corners(argmax_y, argmax_x, height, width):
        grad_input.index_put_(
            (batch, channel, flat),
            (grad_output * weight.to(grad_output.dtype) * sampled),
            accumulate=True)
    return grad_input.view(input_shape)
