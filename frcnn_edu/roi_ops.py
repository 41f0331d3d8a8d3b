"""RoI max pooling (Fast R-CNN sec. 2.1) and RoIAlign (Mask R-CNN sec. 3) in plain PyTorch.

Both take the same arguments as ``torchvision.ops.roi_pool`` / ``roi_align`` and return the same
values and gradients (tests compare them). The gradient comes from autograd.

Shape key:
    N     images in the batch
    C     feature channels
    H, W  feature-map height and width
    R     RoIs (over all images)
    ph, pw  output (pooled) height and width, e.g. 7 x 7

Boxes are ``Tensor[R, 5]`` rows ``(batch_index, x1, y1, x2, y2)`` or a list of ``Tensor[R_n, 4]``,
one per image, in input-image pixels; ``spatial_scale`` (e.g. 1/16) maps them onto the feature map.

RoI pooling (Fast R-CNN): round the scaled box to feature cells, split it into ph x pw bins of
about equal size (bin edges floor/ceil, so neighbouring bins may share a row or column), take the
max of each bin. Like torchvision (and Caffe), the box spans ``round(x2) - round(x1) + 1`` cells.
The gradient of each output goes to the cell that held the max (the first one in row-major order
on ties); an empty bin (entirely outside the map) outputs 0 and passes no gradient.

RoIAlign (Mask R-CNN): no rounding. Each bin is sampled on a regular sampling_ratio x
sampling_ratio grid (adaptive: ceil(roi_height / ph) rows, ceil(roi_width / pw) columns) of
bilinearly interpolated points, which are averaged. ``aligned=True`` shifts the box by -0.5 cell
so that pixel centres line up (Detectron2's fix; the paper's version is ``aligned=False``).
"""
import math

import torch
from torch import nn

__all__ = ["roi_pool", "roi_align", "roi_pool_loop", "RoIPool", "RoIAlign"]


# ----------------------------------------------------------------------------- argument checks
def _pair(output_size):
    """output_size int or (h, w) -> (h, w) of positive ints."""
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"output_size must be a positive int or a pair (h, w), got {output_size!r}")
    return size


def _check_args(input, boxes, spatial_scale):
    """Validate the arguments and return the boxes as rois ``[R, 5]`` in ``input.dtype``."""
    if not isinstance(input, torch.Tensor) or input.dim() != 4 or not input.is_floating_point():
        got = list(input.shape) if isinstance(input, torch.Tensor) else type(input).__name__
        raise ValueError(f"input must be a float tensor [N, C, H, W], got {got}")
    if not spatial_scale > 0:
        raise ValueError(f"spatial_scale must be > 0 (e.g. 1/16), got {spatial_scale}")
    if isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            if not isinstance(b, torch.Tensor) or b.dim() != 2 or b.shape[1] != 4:
                raise ValueError(f"boxes[{i}] must be a Tensor[R_i, 4], got "
                                 f"{list(b.shape) if isinstance(b, torch.Tensor) else type(b)}")
        index = [torch.full((len(b), 1), i, dtype=input.dtype, device=input.device)
                 for i, b in enumerate(boxes)]
        rois = torch.cat([torch.cat(index), torch.cat([b.to(input) for b in boxes])], dim=1) \
            if boxes else input.new_zeros((0, 5))
    elif isinstance(boxes, torch.Tensor) and boxes.dim() == 2 and boxes.shape[1] == 5:
        rois = boxes.to(input)
    else:
        raise ValueError("boxes must be a Tensor[R, 5] (batch_index, x1, y1, x2, y2) or a list "
                         f"of Tensor[R_i, 4], got {list(getattr(boxes, 'shape', [])) or type(boxes)}")
    if not torch.isfinite(rois).all():
        raise ValueError("boxes contain NaN or inf")
    batch = rois[:, 0]
    if ((batch < 0) | (batch >= input.shape[0]) | (batch != batch.floor())).any():
        raise ValueError(f"boxes[:, 0] must be image indices in 0..{input.shape[0] - 1}")
    return rois.detach()


def _empty_output(input, output_size):
    """[0, C, ph, pw], still attached to the autograd graph of ``input`` (its gradient is 0)."""
    return input.flatten()[:0].reshape(0, input.shape[1], *output_size)


# ----------------------------------------------------------------------------- RoI max pooling
def _round_half_away(x):
    """C's round(): halves go away from zero (torch.round rounds halves to even)."""
    t = x.trunc()
    return torch.where((x - t).abs() >= 0.5, t + x.sign(), t)


def _pool_bins(start, end, pooled, size):
    """Bin edges of RoI pooling along one axis, as torchvision computes them.

    start, end: [R] RoI edges already scaled to the feature map (float). Returns int64 [R, pooled]
    bin starts and ends (end exclusive), clamped to 0..size; a bin with end <= start is empty.
    """
    start, end = _round_half_away(start), _round_half_away(end)
    length = (end - start + 1).clamp(min=1)                 # cells, malformed RoIs become 1 cell
    bin_size = length / pooled                              # [R]
    p = torch.arange(pooled, device=start.device, dtype=start.dtype)
    lo = torch.floor(p * bin_size[:, None]) + start[:, None]
    hi = torch.ceil((p + 1) * bin_size[:, None]) + start[:, None]
    return lo.clamp(0, size).long(), hi.clamp(0, size).long()


def _merge_argmax(value_a, index_a, value_b, index_b):
    """Keep the larger value; on a tie the smaller (earlier row-major) index, as a scan would."""
    take_b = (value_b > value_a) | ((value_b == value_a) & (index_b < index_a))
    return torch.where(take_b, value_b, value_a), torch.where(take_b, index_b, index_a)


def _level_queries(hs, he, ws, we, level_y, level_x):
    """The four corner windows (2^ly x 2^lx) that cover each bin: [4, Q] rows and columns."""
    sy, sx = 1 << level_y, 1 << level_x
    ys = torch.stack([hs, hs, he - sy, he - sy])
    xs = torch.stack([ws, we - sx, ws, we - sx])
    return ys, xs


def _roi_pool_argmax(input, rois, spatial_scale, output_size):
    """For every output (r, c, i, j): flat index h * W + w of the bin's max cell, and a mask of
    non-empty bins. [R, C, ph, pw] each.

    A 2-D sparse table answers the range-max queries: level (ly, lx) holds, for each cell, the
    max (and its position) of the 2^ly x 2^lx window starting there. A bin of h x w cells is the
    union of four such windows with 2^ly <= h, 2^lx <= w (they overlap, which max does not
    mind). Channels are kept last so that one query gathers all C values at once.
    """
    (N, C, H, W), (ph, pw), R = input.shape, output_size, rois.shape[0]
    scale = torch.tensor(spatial_scale, dtype=rois.dtype, device=rois.device)
    hs, he = _pool_bins(rois[:, 2] * scale, rois[:, 4] * scale, ph, H)   # [R, ph]
    ws, we = _pool_bins(rois[:, 1] * scale, rois[:, 3] * scale, pw, W)   # [R, pw]
    shape = (R, ph, pw)
    hs, he = hs[:, :, None].expand(shape).flatten(), he[:, :, None].expand(shape).flatten()
    ws, we = ws[:, None, :].expand(shape).flatten(), we[:, None, :].expand(shape).flatten()
    batch = rois[:, 0].long()[:, None].expand(R, ph * pw).flatten()
    nonempty = (he > hs) & (we > ws)
    level_y = torch.log2((he - hs).clamp(min=1).double()).floor().long()   # exact for ints
    level_x = torch.log2((we - ws).clamp(min=1).double()).floor().long()
    best = torch.zeros(R * ph * pw, C, dtype=torch.int32, device=input.device)

    value_x = input.detach().permute(0, 2, 3, 1)                      # [N, H, W, C]
    flat = torch.arange(H * W, dtype=torch.int32, device=input.device).view(1, H, W, 1)
    index_x = flat.expand(N, H, W, C)
    for lx in range(int(level_x.max()) + 1 if R else 0):
        if lx > 0:                                                    # widen windows to 2^lx
            s = 1 << (lx - 1)
            value_x, index_x = _merge_argmax(value_x[:, :, :-s], index_x[:, :, :-s],
                                             value_x[:, :, s:], index_x[:, :, s:])
        in_x = nonempty & (level_x == lx)
        if not in_x.any():
            continue
        value, index = value_x, index_x
        for ly in range(int(level_y[in_x].max()) + 1):
            if ly > 0:                                                # heighten windows to 2^ly
                s = 1 << (ly - 1)
                value, index = _merge_argmax(value[:, :-s], index[:, :-s],
                                             value[:, s:], index[:, s:])
            q = torch.nonzero(in_x & (level_y == ly)).squeeze(1)
            if len(q):
                best[q] = _query(value, index, batch[q], hs[q], he[q], ws[q], we[q], ly, lx)
    best = best.view(R, ph, pw, C).permute(0, 3, 1, 2)
    return best, nonempty.view(R, 1, ph, pw)


def _query(value, index, batch, hs, he, ws, we, ly, lx):
    """Max position of Q bins from sparse-table level (ly, lx): [Q, C] int32."""
    _, Hl, Wl, C = value.shape
    ys, xs = _level_queries(hs, he, ws, we, ly, lx)
    rows = ((batch * Hl + ys) * Wl + xs).flatten()                    # [4 * Q]
    v = value.reshape(-1, C).index_select(0, rows).view(4, -1, C)
    i = index.reshape(-1, C).index_select(0, rows).view(4, -1, C)
    v01, i01 = _merge_argmax(v[0], i[0], v[1], i[1])
    v23, i23 = _merge_argmax(v[2], i[2], v[3], i[3])
    return _merge_argmax(v01, i01, v23, i23)[1]


def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    """RoI max pooling (Fast R-CNN sec. 2.1), equal to ``torchvision.ops.roi_pool``.

    input: [N, C, H, W]; boxes: Tensor[R, 5] or list of Tensor[R_n, 4]; output_size: int or
    (ph, pw). Returns [R, C, ph, pw]. The argmax cells are found without gradient; the output
    then gathers them from ``input``, so autograd routes each gradient to its argmax cell.
    """
    output_size = _pair(output_size)
    rois = _check_args(input, boxes, spatial_scale)
    if rois.shape[0] == 0:
        return _empty_output(input, output_size)
    with torch.no_grad():
        best, nonempty = _roi_pool_argmax(input, rois, spatial_scale, output_size)
        N, C, H, W = input.shape
        plane = (rois[:, 0].long().view(-1, 1, 1, 1) * C
                 + torch.arange(C, device=input.device).view(1, -1, 1, 1)) * (H * W)
        flat_index = plane + best                                     # into input.flatten()
    pooled = input.flatten()[flat_index]
    return torch.where(nonempty, pooled, torch.zeros((), dtype=pooled.dtype, device=pooled.device))


def roi_pool_loop(input, boxes, output_size, spatial_scale=1.0):
    """RoI max pooling written as plain loops, to be read next to Fast R-CNN sec. 2.1.

    Same arguments and results as :func:`roi_pool` (and torchvision), only much slower.
    """
    pooled_h, pooled_w = _pair(output_size)
    rois = _check_args(input, boxes, spatial_scale)
    num_channels, height, width = input.shape[1:]
    outputs = []
    for roi in rois:  # (image_index, x1, y1, x2, y2), 0-d tensors in the input's precision
        image_index = int(roi[0])
        # 1. Project the box onto the feature map and round to whole cells (the "quantisation"
        #    that RoIAlign later removes). The box covers cells x_start..x_end inclusive.
        x_start, y_start, x_end, y_end = (int(_round_half_away(v * spatial_scale)) for v in roi[1:])
        roi_w = max(x_end - x_start + 1, 1)
        roi_h = max(y_end - y_start + 1, 1)
        # 2. Split the box into pooled_h x pooled_w bins of bin_h x bin_w cells (fractional);
        #    bin edges are rounded outwards (floor / ceil). Computed in the input's precision
        #    like the C++ kernel: in float64, 7 * (29 / 7) rounds differently than in float32.
        bin_h, bin_w = roi.new_tensor(roi_h) / pooled_h, roi.new_tensor(roi_w) / pooled_w
        roi_out = input.new_zeros(num_channels, pooled_h, pooled_w)
        for i in range(pooled_h):
            top = min(max(int(torch.floor(i * bin_h)) + y_start, 0), height)
            bottom = min(max(int(torch.ceil((i + 1) * bin_h)) + y_start, 0), height)
            for j in range(pooled_w):
                left = min(max(int(torch.floor(j * bin_w)) + x_start, 0), width)
                right = min(max(int(torch.ceil((j + 1) * bin_w)) + x_start, 0), width)
                if bottom <= top or right <= left:
                    continue  # 3. a bin that lies outside the feature map outputs 0
                # 4. Max over the bin's cells, separately for every channel.
                cells = input[image_index, :, top:bottom, left:right]       # [C, h, w]
                roi_out[:, i, j] = cells.reshape(num_channels, -1).max(dim=1).values
        outputs.append(roi_out)
    if not outputs:
        return _empty_output(input, (pooled_h, pooled_w))
    return torch.stack(outputs)


# ----------------------------------------------------------------------------- RoIAlign
def _align_weights(start, length, pooled, grid, size):
    """Interpolation matrix of RoIAlign along one axis: [R, pooled, size].

    Row p holds the weights with which bin p averages the feature cells along this axis: each of
    the bin's ``grid`` sample points splits weight 1/grid between its two neighbouring cells
    (bilinear). Points more than one cell outside the map count as 0; points within one cell of
    the border take the border value (torchvision's rules). Because bilinear interpolation on a
    rectangular sample grid is separable, out = A_y @ feature @ A_x^T for every channel.
    start, length: [R] box start and size in feature cells; grid: [R] samples per bin (>= 0).
    """
    R, dev, dt = start.shape[0], start.device, start.dtype
    bin_size = length / pooled                                              # [R]
    g_max = max(int(grid.max()), 1)
    p = torch.arange(pooled, device=dev, dtype=dt).view(1, -1, 1)
    k = torch.arange(g_max, device=dev, dtype=dt).view(1, 1, -1)
    b, g = bin_size.view(-1, 1, 1), grid.to(dt).view(-1, 1, 1)
    pos = (start.view(-1, 1, 1) + p * b) + (k + 0.5) * b / g.clamp(min=1)  # [R, pooled, g_max]
    valid = (k < g) & (pos >= -1) & (pos <= size)
    pos = torch.where(valid, pos, torch.zeros_like(pos)).clamp(min=0)
    low = pos.floor().clamp(max=size - 1)
    frac = torch.where(low >= size - 1, torch.zeros_like(pos), pos - low)  # border: all on low
    high = (low + 1).clamp(max=size - 1)
    share = valid.to(dt) / g.clamp(min=1)
    weights = torch.zeros(R, pooled, size, device=dev, dtype=dt)
    weights.scatter_add_(2, low.long(), share * (1 - frac))
    weights.scatter_add_(2, high.long(), share * frac)
    return weights


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoIAlign (Mask R-CNN sec. 3), equal to ``torchvision.ops.roi_align``.

    input: [N, C, H, W]; boxes: Tensor[R, 5] or list of Tensor[R_n, 4]; output_size: int or
    (ph, pw); sampling_ratio: samples per bin along each axis, or <= 0 for adaptive
    (ceil(roi size / output size), different for every RoI). Returns [R, C, ph, pw].
    """
    (ph, pw), (N, C, H, W) = _pair(output_size), input.shape
    rois = _check_args(input, boxes, spatial_scale)
    if rois.shape[0] == 0:
        return _empty_output(input, (ph, pw))
    scale = torch.tensor(spatial_scale, dtype=rois.dtype, device=rois.device)
    box = rois[:, 1:] * scale - (0.5 if aligned else 0.0)                 # feature-map cells
    width, height = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    if not aligned:                                                       # malformed -> 1 cell
        width, height = width.clamp(min=1), height.clamp(min=1)
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(width, sampling_ratio, dtype=torch.long)
    else:
        grid_h = torch.ceil(height / ph).clamp(min=0).long()
        grid_w = torch.ceil(width / pw).clamp(min=0).long()
    a_y = _align_weights(box[:, 1], height, ph, grid_h, H)                # [R, ph, H]
    a_x = _align_weights(box[:, 0], width, pw, grid_w, W)                 # [R, pw, W]
    parts, order = [], []
    for n in rois[:, 0].long().unique().tolist():                         # one image at a time
        sel = torch.nonzero(rois[:, 0] == n).squeeze(1)
        rows = a_y[sel].reshape(-1, H) @ input[n].transpose(0, 1).reshape(H, C * W)
        rows = rows.view(len(sel), ph * C, W)                             # [R_n, ph*C, W]
        parts.append(torch.bmm(rows, a_x[sel].transpose(1, 2)))         # [R_n, ph*C, pw]
        order.append(sel)
    out = torch.cat(parts).view(-1, ph, C, pw).permute(0, 2, 1, 3)
    inverse = torch.empty_like(rois[:, 0], dtype=torch.long)
    inverse[torch.cat(order)] = torch.arange(rois.shape[0], device=rois.device)
    return out[inverse].contiguous()


# ----------------------------------------------------------------------------- modules
class RoIPool(nn.Module):
    """nn.Module form of :func:`roi_pool` (same as ``torchvision.ops.RoIPool``)."""

    def __init__(self, output_size, spatial_scale):
        super().__init__()
        self.output_size, self.spatial_scale = _pair(output_size), spatial_scale

    def forward(self, input, boxes):
        return roi_pool(input, boxes, self.output_size, self.spatial_scale)

    def extra_repr(self):
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"


class RoIAlign(nn.Module):
    """nn.Module form of :func:`roi_align` (same as ``torchvision.ops.RoIAlign``)."""

    def __init__(self, output_size, spatial_scale, sampling_ratio, aligned=False):
        super().__init__()
        self.output_size, self.spatial_scale = _pair(output_size), spatial_scale
        self.sampling_ratio, self.aligned = sampling_ratio, aligned

    def forward(self, input, boxes):
        return roi_align(input, boxes, self.output_size, self.spatial_scale,
                         self.sampling_ratio, self.aligned)

    def extra_repr(self):
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")
