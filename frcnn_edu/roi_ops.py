"""RoI max pooling (Fast R-CNN sec. 2.1) and RoIAlign (Mask R-CNN sec. 3) in plain PyTorch.

Both take the same arguments as ``torchvision.ops.roi_pool`` / ``roi_align`` and return the same
values and gradients (tests compare them). The gradient comes from autograd. Unlike torchvision's,
``roi_align`` also returns a gradient with respect to the box coordinates when the boxes require
grad (what non-approximate joint training needs, Faster R-CNN sec. 3.2); ``roi_pool`` cannot.

Shape key:
    N     images in the batch
    C     feature channels
    H, W  feature-map height and width
    R     RoIs (over all images)
    ph, pw  output (pooled) height and width, e.g. 7 x 7
    gy, gx  sample points per bin along y and x (the sampling grid of RoIAlign)

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

Gradients with respect to the boxes. RoI max pooling has none: it rounds the box to whole cells
and takes the max cell of each bin, so its output is piecewise constant in the box coordinates
(derivative 0 almost everywhere, undefined where a rounding flips). RoIAlign's samples move
continuously with the box and bilinear interpolation is differentiable in the sample position, so
``roi_align_sampled`` (the readable version: sample points -> bilinear interpolation -> average
per bin) differentiates through the box with autograd. That gradient is only piecewise smooth:
it jumps where a sample crosses a cell boundary (its four neighbours change), where a sample
leaves [-1, H] (it becomes 0) or is clamped at the border, and where the adaptive grid count
ceil(roi_h / ph) changes (an integer, not differentiated). ``roi_align`` takes that path when the
boxes require grad, and the fast separable one below otherwise.

How they are vectorised here (read ``roi_pool_loop`` first for the idea itself):
- roi_pool finds every bin's max with a 2-D sparse table (maxima of all 2^i x 2^j windows, so a
  bin is the union of four windows) over codes that carry each value with its position, then
  gathers the winners from ``input``; autograd sends each gradient back to its winner.
- roi_align uses that bilinear sampling on a rectangular grid is separable: for each RoI,
  out = A_y @ feature @ A_x^T, with A_y [ph, H] and A_x [pw, W] holding the averaged bilinear
  weights of the sample points. Two matrix products; autograd differentiates them.
"""
import torch
from torch import nn

from .kernels.roi_align import align_weights, separable_pool
from .kernels.roi_pool import roi_pool_argmax

__all__ = ["roi_pool_loop", "roi_pool", "roi_align_sampled", "roi_align", "pool_bins", "round_half_away",
           "pooled_size", "RoIPool", "RoIAlign"]


# ----------------------------------------------------------------------------- argument checks
def pooled_size(output_size):
    """output_size int or (h, w) -> (h, w) of positive ints."""
    size = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
        raise ValueError(f"output_size must be a positive int or a pair (h, w), "
                         f"got {output_size!r}")
    return size


def _check_args(input, boxes, spatial_scale):
    """Validate the arguments and return the boxes as rois ``[R, 5]`` in ``input.dtype``, still
    attached to the boxes' autograd graph (callers that need no box gradient detach them)."""
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
        got = list(boxes.shape) if isinstance(boxes, torch.Tensor) else type(boxes).__name__
        raise ValueError("boxes must be a Tensor[R, 5] (batch_index, x1, y1, x2, y2) or a list "
                         f"of Tensor[R_i, 4], got {got}")
    if not torch.isfinite(rois).all():
        raise ValueError("boxes contain NaN or inf")
    batch = rois[:, 0]
    if ((batch < 0) | (batch >= input.shape[0]) | (batch != batch.floor())).any():
        raise ValueError(f"boxes[:, 0] must be image indices in 0..{input.shape[0] - 1}")
    return rois


def _empty_output(input, output_size):
    """[0, C, ph, pw], still attached to the autograd graph of ``input`` (its gradient is 0)."""
    return input.flatten()[:0].reshape(0, input.shape[1], *output_size)


# ----------------------------------------------------------------------------- RoI max pooling
# The readable loop first (roi_pool_loop), then the same answer through the fast kernel.
def round_half_away(x):
    """C's round(): halves go away from zero (torch.round rounds halves to even)."""
    t = x.trunc()
    return torch.where((x - t).abs() >= 0.5, t + x.sign(), t)


def pool_bins(start, end, pooled, size):
    """Bin edges of RoI pooling along one axis, as torchvision computes them.

    start, end: [R] RoI edges already scaled to the feature map (float). Returns int64 [R, pooled]
    bin starts and ends (end exclusive), clamped to 0..size; a bin with end <= start is empty.
    """
    start, end = round_half_away(start), round_half_away(end)
    length = (end - start + 1).clamp(min=1)                 # cells, malformed RoIs become 1 cell
    bin_size = length / pooled                              # [R]
    p = torch.arange(pooled, device=start.device, dtype=start.dtype)
    lo = torch.floor(p * bin_size[:, None]) + start[:, None]
    hi = torch.ceil((p + 1) * bin_size[:, None]) + start[:, None]
    return lo.clamp(0, size).long(), hi.clamp(0, size).long()


def roi_pool_loop(input, boxes, output_size, spatial_scale=1.0):
    """RoI max pooling written as plain loops, to be read next to Fast R-CNN sec. 2.1.

    Same arguments and results as :func:`roi_pool` (and torchvision), only much slower.
    """
    pooled_h, pooled_w = pooled_size(output_size)
    rois = _check_args(input, boxes, spatial_scale).detach()
    num_channels, height, width = input.shape[1:]
    outputs = []
    for roi in rois:  # (image_index, x1, y1, x2, y2), 0-d tensors in the input's precision
        image_index = int(roi[0])
        # 1. Project the box onto the feature map and round to whole cells (the "quantisation"
        #    that RoIAlign later removes). The box covers cells x_start..x_end inclusive.
        x_start, y_start, x_end, y_end = (int(round_half_away(v * spatial_scale)) for v in roi[1:])
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


def _bin_ranges(rois, spatial_scale, output_size, H, W):
    """Image index, row range [hs, he) and column range [ws, we) of every bin, each [R*ph*pw]
    (bins in (r, i, j) order), and the mask of non-empty bins."""
    (ph, pw), R = output_size, rois.shape[0]
    scale = torch.tensor(spatial_scale, dtype=rois.dtype, device=rois.device)
    hs, he = pool_bins(rois[:, 2] * scale, rois[:, 4] * scale, ph, H)   # [R, ph]
    ws, we = pool_bins(rois[:, 1] * scale, rois[:, 3] * scale, pw, W)   # [R, pw]
    shape = (R, ph, pw)
    hs, he = hs[:, :, None].expand(shape).flatten(), he[:, :, None].expand(shape).flatten()
    ws, we = ws[:, None, :].expand(shape).flatten(), we[:, None, :].expand(shape).flatten()
    batch = rois[:, 0].long()[:, None].expand(R, ph * pw).flatten()
    return batch, hs, he, ws, we, (he > hs) & (we > ws)


def roi_pool(input, boxes, output_size, spatial_scale=1.0):
    """RoI max pooling (Fast R-CNN sec. 2.1), equal to ``torchvision.ops.roi_pool``.

    input: [N, C, H, W]; boxes: Tensor[R, 5] or list of Tensor[R_n, 4]; output_size: int or
    (ph, pw). Returns [R, C, ph, pw]. The argmax cells are found without gradient; the output
    then gathers them from ``input``, so autograd routes each gradient to its argmax cell.
    ``input`` is assumed finite: a NaN wins a bin here, torchvision's kernel skips it.

    No gradient reaches the boxes, even when they require grad: each bin rounds the box to whole
    cells and its argmax picks one cell, so the output is piecewise constant in the box
    coordinates. Its derivative is 0 almost everywhere and undefined at the bin edges where a
    rounding flips, which is useless for training (use ``roi_align`` for a box gradient).
    """
    rois, (ph, pw) = _check_args(input, boxes, spatial_scale).detach(), pooled_size(output_size)
    if rois.shape[0] == 0:
        return _empty_output(input, (ph, pw))
    with torch.no_grad():
        ranges = _bin_ranges(rois, spatial_scale, (ph, pw), *input.shape[2:])
        best, nonempty = roi_pool_argmax(input, *ranges, ph * pw)
    source = input.flatten()
    if not nonempty.all():              # empty bins read an appended 0 (and pass no gradient on)
        source = torch.cat([source, source.new_zeros(1)])
    return source.index_select(0, best.flatten()).view(-1, input.shape[1], ph, pw)


# ----------------------------------------------------------------------------- RoIAlign
# The definition first (roi_align_sampled, differentiable in the boxes), then the fast path.
def _roi_geometry(rois, spatial_scale, output_size, sampling_ratio, aligned):
    """Each RoI on the feature map, as torchvision's kernel computes it: start (x1, y1), width,
    height (each [R], differentiable in ``rois``) and the sample grid per bin (grid_h, grid_w,
    int64 [R]). The adaptive grid ceil(size / pooled) is an integer count: no gradient."""
    (ph, pw), scale = output_size, torch.tensor(spatial_scale, dtype=rois.dtype, device=rois.device)
    box = rois[:, 1:] * scale - (0.5 if aligned else 0.0)                 # feature-map cells
    width, height = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    if not aligned:                                                       # malformed -> 1 cell
        width, height = width.clamp(min=1), height.clamp(min=1)
    if sampling_ratio > 0:
        grid_h = grid_w = torch.full_like(width, sampling_ratio, dtype=torch.long)
    else:
        grid_h = torch.ceil(height.detach() / ph).clamp(min=0).long()
        grid_w = torch.ceil(width.detach() / pw).clamp(min=0).long()
    return box[:, 0], box[:, 1], width, height, grid_h, grid_w


def _sample_points(start, length, pooled, grid):
    """Sample coordinates along one axis, [R, pooled, g_max], and the mask of real samples.

    Bin p of a RoI covers [start + p * bin, start + (p + 1) * bin) with bin = length / pooled;
    its ``grid`` samples sit at the centres of ``grid`` equal sub-bins. The coordinates are
    computed from ``start`` and ``length`` with autograd-tracked ops, so they carry the box
    gradient; RoIs with fewer samples than ``g_max`` mask the rest out. Same operation order as
    torchvision's kernel (start + p * bin) + (k + 0.5) * bin / grid, so the values match.
    """
    dev, dt = start.device, start.dtype
    bin_size = (length / pooled).view(-1, 1, 1)                              # [R, 1, 1]
    g = grid.view(-1, 1, 1)
    p = torch.arange(pooled, device=dev, dtype=dt).view(1, -1, 1)
    k = torch.arange(max(int(grid.max()), 1), device=dev, dtype=dt).view(1, 1, -1)
    pos = (start.view(-1, 1, 1) + p * bin_size) + (k + 0.5) * bin_size / g.clamp(min=1).to(dt)
    return pos, (k < g).expand_as(pos)


def _bilinear_neighbours(pos, size):
    """The two cells around each coordinate and their bilinear weights, torchvision's rules.

    Returns (low, high) int64 cell indices, (w_low, w_high) weights (differentiable in ``pos``)
    and the mask of coordinates inside [-1, size]; a sample outside it contributes 0.
    """
    inside = (pos >= -1) & (pos <= size)
    pos = pos.clamp(min=0)               # within one cell before the map: the border value
    low = pos.detach().floor().clamp(max=size - 1)     # an index: chosen, not differentiated
    # at or past the last cell centre all the weight goes to that cell (no cell beyond it)
    at_border = low >= size - 1
    frac = torch.where(at_border, torch.zeros_like(pos), pos - low)      # d frac / d pos = 1
    high = torch.where(at_border, low, low + 1)
    return low.long(), high.long(), 1 - frac, frac, inside


def _roi_align_sampled(input, rois, output_size, spatial_scale, sampling_ratio, aligned):
    """``roi_align_sampled`` on checked rois [R, 5] (attached to the boxes' graph)."""
    (N, C, H, W), (ph, pw) = input.shape, output_size
    x1, y1, width, height, grid_h, grid_w = _roi_geometry(rois, spatial_scale, output_size,
                                                          sampling_ratio, aligned)
    y, real_y = _sample_points(y1, height, ph, grid_h)                  # [R, ph, gy]
    x, real_x = _sample_points(x1, width, pw, grid_w)                   # [R, pw, gx]
    y_cells, y_weights, in_y = _axis_parts(y, real_y, H)
    x_cells, x_weights, in_x = _axis_parts(x, real_x, W)
    # Every sample is (row sample of bin row i) x (column sample of bin column j): the 2-D
    # arrays below are [R, ph, gy, pw, gx]; a sample counts only if it is real and inside
    # the map along both axes.
    keep = (in_y[:, :, :, None, None] & in_x[:, None, None]).to(input.dtype)
    features = input.permute(0, 2, 3, 1).reshape(N * H * W, C)         # one row per cell
    batch = rois[:, 0].long().view(-1, 1, 1, 1, 1)
    out = 0
    for row, w_row in zip(y_cells, y_weights):                          # the 4 neighbours:
        for col, w_col in zip(x_cells, x_weights):                      # (low|high) x (low|high)
            cell = (batch * H + row[:, :, :, None, None]) * W + col[:, None, None]
            weight = w_row[:, :, :, None, None] * w_col[:, None, None] * keep
            out = out + weight[..., None] * features[cell]              # [R, ph, gy, pw, gx, C]
    # average per bin: every real sample counts, also the ones outside the map (they gave 0)
    count = (grid_h * grid_w).clamp(min=1).to(input.dtype).view(-1, 1, 1, 1)
    return (out.sum(dim=(2, 4)) / count).permute(0, 3, 1, 2)            # [R, C, ph, pw]


def _axis_parts(pos, real, size):
    """(low, high) cells, their weights and the 'counts' mask of samples along one axis."""
    low, high, w_low, w_high, inside = _bilinear_neighbours(pos, size)
    return (low, high), (w_low, w_high), real & inside


def roi_align_sampled(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1,
                      aligned=False):
    """RoIAlign written as its definition, differentiable in the box coordinates.

    Same arguments and values as :func:`roi_align` (and torchvision). For every bin it places
    gy x gx sample points (``_sample_points``), interpolates the feature map bilinearly at each
    from its four neighbouring cells (``_bilinear_neighbours``) and averages them. The sample
    coordinates are autograd-tracked functions of the boxes and the bilinear weights are linear
    in them, so ``out.backward()`` fills ``boxes.grad`` as well as the input's gradient. The
    box gradient is piecewise smooth: it changes abruptly where a sample crosses a cell boundary,
    enters or leaves the map, or where the adaptive grid count changes.
    """
    rois, size = _check_args(input, boxes, spatial_scale), pooled_size(output_size)
    if rois.shape[0] == 0:
        return _empty_output(input, size)
    return _roi_align_sampled(input, rois, size, spatial_scale, sampling_ratio, aligned)


def roi_align(input, boxes, output_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False):
    """RoIAlign (Mask R-CNN sec. 3), equal to ``torchvision.ops.roi_align``.

    input: [N, C, H, W]; boxes: Tensor[R, 5] or list of Tensor[R_n, 4]; output_size: int or
    (ph, pw); sampling_ratio: samples per bin along each axis, or <= 0 for adaptive
    (ceil(roi size / output size), different for every RoI). Returns [R, C, ph, pw].
    When the boxes require grad, the output is also differentiable in the box coordinates
    (``roi_align_sampled``, the readable version); otherwise the fast separable path runs.
    """
    rois, size = _check_args(input, boxes, spatial_scale), pooled_size(output_size)
    if rois.shape[0] == 0:
        return _empty_output(input, size)
    if rois.requires_grad and torch.is_grad_enabled():
        return _roi_align_sampled(input, rois, size, spatial_scale, sampling_ratio, aligned)
    H, W = input.shape[2:]
    x1, y1, width, height, grid_h, grid_w = _roi_geometry(rois, spatial_scale, size,
                                                          sampling_ratio, aligned)
    a_y = align_weights(y1, height, size[0], grid_h, H)                  # [R, ph, H]
    a_x = align_weights(x1, width, size[1], grid_w, W)                   # [R, pw, W]
    return separable_pool(input, rois[:, 0].long(), a_y, a_x)


class RoIPool(nn.Module):
    """nn.Module form of :func:`roi_pool` (same as ``torchvision.ops.RoIPool``)."""

    def __init__(self, output_size, spatial_scale):
        super().__init__()
        self.output_size, self.spatial_scale = pooled_size(output_size), spatial_scale

    def forward(self, input, boxes):
        return roi_pool(input, boxes, self.output_size, self.spatial_scale)

    def extra_repr(self):
        return f"output_size={self.output_size}, spatial_scale={self.spatial_scale}"


class RoIAlign(nn.Module):
    """nn.Module form of :func:`roi_align` (same as ``torchvision.ops.RoIAlign``)."""

    def __init__(self, output_size, spatial_scale, sampling_ratio, aligned=False):
        super().__init__()
        self.output_size, self.spatial_scale = pooled_size(output_size), spatial_scale
        self.sampling_ratio, self.aligned = sampling_ratio, aligned

    def forward(self, input, boxes):
        return roi_align(input, boxes, self.output_size, self.spatial_scale,
                         self.sampling_ratio, self.aligned)

    def extra_repr(self):
        return (f"output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
                f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned}")
