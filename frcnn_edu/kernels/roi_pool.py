"""The fast RoI max pooling behind `frcnn_edu.roi_ops.roi_pool`: a 2-D sparse table of codes.

`roi_ops.roi_pool_loop` is the algorithm as written (round the box to cells, split it into
bins, take each bin's max); `roi_ops.roi_pool` computes the bins the same way and asks
`roi_pool_argmax` here for every bin's max cell, found with range-max queries on whole tensors.

Shape key:
    N, C, H, W  input batch, channels, height, width     R  RoIs     P  bins per RoI (ph * pw)
    Q           bins answered in one query
"""
from functools import partial

import torch


# A "code" packs a cell's value and its index in input.flatten() so that the larger code holds the
# larger value and, among equal values of one channel plane, the earlier position: the cell that
# a row-major scan keeping the first strict maximum (torchvision's kernel) would pick. One
# torch.maximum of two codes then gives the max of two windows together with its argmax.
def encode(input):
    """Codes of all cells, channels last: int64 [N, H, W, C] (float64 input: float64 pairs
    [N, H, W, C, 2], compared by ``merge``)."""
    N, C, H, W = input.shape
    arange = partial(torch.arange, device=input.device)
    values = input.detach().permute(0, 2, 3, 1)
    if input.element_size() > 4 or input.numel() >= 2**32:  # no spare bits: (value, -index)
        index = arange(N * C * H * W).view(N, C, H, W).permute(0, 2, 3, 1)
        return torch.stack([values.double(), -index.double()], dim=-1).contiguous()
    # float32/16: the value's 32 bits above, 0xFFFFFFFF - index below, in one int64.
    bits = values.to(torch.float32, copy=True, memory_format=torch.contiguous_format)
    bits = bits.add_(0.0).view(torch.int32)                          # -0.0 + 0.0 = +0.0
    flip = (bits >> 31).bitwise_and_(0x7FFFFFFF)                     # negative floats: flip the
    code = bits.bitwise_xor_(flip).long().bitwise_left_shift_(32)    # bits: int order = float order
    code += 0xFFFFFFFF - arange(N).view(N, 1, 1, 1) * (C * H * W)     # in place, broadcast
    code -= arange(H * W).view(1, H, W, 1) + arange(C) * (H * W)
    return code


def merge(code_a, code_b):
    """Elementwise max of two codes (see ``encode``)."""
    if code_a.dtype == torch.int64:
        return torch.maximum(code_a, code_b)
    (va, pa), (vb, pb) = code_a.unbind(-1), code_b.unbind(-1)
    take_b = (vb > va) | ((vb == va) & (pb > pa))
    return torch.where(take_b[..., None], code_b, code_a)


def decode(code):
    """Index into input.flatten() held by a code."""
    if code.dtype == torch.int64:
        return 0xFFFFFFFF - (code & 0xFFFFFFFF)
    return (-code[..., 1]).long()


def roi_pool_argmax(input, batch, hs, he, ws, we, nonempty, P):
    """Index into ``input.flatten()`` of the max cell of every bin and channel, [R, C, P]
    (``input.numel()`` for empty bins), and the mask of non-empty bins, [R*P].

    batch, hs, he, ws, we: image index and the row / column ranges [start, end) of every bin,
    each [R*P] (bins in (r, i, j) order, P = ph * pw); nonempty: [R*P] bool.

    A 2-D sparse table answers the range-max queries: level (ly, lx) holds, for each cell, the
    code (max and argmax) of the 2^ly x 2^lx window starting there. A bin of h x w cells is the
    union of four such windows with 2^ly <= h, 2^lx <= w (they overlap, which max does not
    mind; one window is enough when h = 2^ly and w = 2^lx). Channels are kept last so that one
    lookup fetches all C codes. Bins are sorted by level, so each level is built once, in turn.
    """
    C = input.shape[1]
    level_y = (he - hs).clamp(min=1).double().log2().floor().long()      # exact for integers
    level_x = (we - ws).clamp(min=1).double().log2().floor().long()
    exact = ((he - hs) == (1 << level_y)).long() * 2 + ((we - ws) == (1 << level_x)).long()
    group = ((level_x * 64 + level_y) * 4 + exact)[nonempty]          # sorted: lx, then ly
    bins = torch.nonzero(nonempty).squeeze(1)[torch.argsort(group, stable=True)]
    keys, counts = torch.unique_consecutive(group.sort().values, return_counts=True)
    best = torch.empty(len(batch) // P, C, P, device=input.device,  # [R, C, P]: output layout
                       dtype=torch.int32 if input.numel() < 2**31 - 1 else torch.int64)
    best_of_bin = best.permute(0, 2, 1)                               # [R, P, C] view
    empty = torch.nonzero(~nonempty).squeeze(1)
    best_of_bin[empty // P, empty % P] = input.numel()
    code_x = code = encode(input)
    at_x = at_y = 0                                                   # level of code_x / code
    for key, part in zip(keys.tolist(), bins.split(counts.tolist())):
        lx, ly, exact_y, exact_x = key // 256, key // 4 % 64, key // 2 % 2, key % 2
        while at_x < lx:                                              # windows 2^lx wide
            at_x, s = at_x + 1, 1 << at_x
            code_x = code = merge(code_x[:, :, :-s], code_x[:, :, s:])
            at_y = 0
        while at_y < ly:                                              # windows 2^ly high
            at_y, s = at_y + 1, 1 << at_y
            code = merge(code[:, :-s], code[:, s:])
        for q in part.split(max(1, 2**17 // C)):                      # small temporaries
            ys = [hs[q]] if exact_y else [hs[q], he[q] - (1 << ly)]
            xs = [ws[q]] if exact_x else [ws[q], we[q] - (1 << lx)]
            best_of_bin[q // P, q % P] = query(code, batch[q], ys, xs).to(best.dtype)
    return best, nonempty


def query(code, batch, ys, xs):
    """Argmax indices [Q, C] of Q bins, each the union of the windows starting at the
    rows ``ys`` x columns ``xs`` (lists of [Q] tensors) of the table ``code``."""
    _, Hl, Wl = code.shape[:3]
    rows = torch.stack([(batch * Hl + y) * Wl + x for y in ys for x in xs]).flatten()
    corners = code.reshape(len(code) * Hl * Wl, -1).index_select(0, rows)
    corners = corners.view(-1, len(batch), *code.shape[3:])
    result = corners[0]
    for other in corners[1:]:
        result = merge(result, other)
    return decode(result)
