"""The fast RoIAlign behind `frcnn_edu.roi_ops.roi_align`: bilinear sampling as matrix products.

`roi_ops.roi_align_sampled` is RoIAlign as defined (sample points, bilinear interpolation from
four neighbours, average per bin). On a rectangular grid of samples that interpolation is
separable, so for each RoI out = A_y @ feature @ A_x^T: `align_weights` builds A_y [ph, H] and
A_x [pw, W] (the averaged bilinear weights), `separable_pool` does the two products.

Shape key:
    N, C, H, W  input batch, channels, height, width     R  RoIs     ph, pw  pooled size
"""
import torch


def align_weights(start, length, pooled, grid, size):
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


def separable_pool(input, batch, a_y, a_x):
    """out[r, c] = a_y[r] @ input[batch[r], c] @ a_x[r]^T, as two matrix products: [R, C, ph, pw].

    RoIs are taken image by image and in chunks, so that the intermediate [R_chunk, ph, W*C]
    stays a few MB. The feature map is made channels-last so that the first product is one plain
    matrix product; for the second, the rows are regrouped as [r, W, ph*C], so that each RoI's
    a_x multiplies all its rows and channels at once (no copy of a_x per output row, which made
    warping whole images with C = 3 about 6x slower).
    """
    (N, C, H, W), (R, ph, _), pw = input.shape, a_y.shape, a_x.shape[1]
    chunk = max(1, 2**21 // (ph * W * C))
    parts, order = [], []
    for n in batch.unique().tolist():                                    # one image at a time
        feature = input[n].permute(1, 2, 0).reshape(H, W * C)           # [H, W*C]
        for sel in torch.nonzero(batch == n).squeeze(1).split(chunk):
            rows = a_y[sel] @ feature                                    # [r, ph, W*C]
            rows = rows.view(-1, ph, W, C).transpose(1, 2).reshape(-1, W, ph * C)
            part = torch.bmm(a_x[sel], rows).view(-1, pw, ph, C)        # [r, pw, ph, C]
            parts.append(part.permute(0, 3, 2, 1))                      # [r, C, ph, pw]
            order.append(sel)
    out, order = torch.cat(parts), torch.cat(order)                      # cat makes it contiguous
    if bool((order[1:] < order[:-1]).any()):                             # back to input order
        out = out.index_select(0, torch.argsort(order))
    return out


# ----------------------------------------------------------------------------- modules
