"""The fast greedy NMS behind `frcnn_edu.boxes.nms`, and the in-place IoU behind `box_iou`.

`boxes.nms_loop` is the algorithm as written (visit boxes by score, keep one unless a kept box
overlaps it); this kernel computes the same answer on whole tensors, block by block, because
the Python loop is far too slow for the RPN's 6,000-12,000 boxes per image.

Shape key:
    N, M  numbers of boxes       B  boxes in one block
    Coordinates are given as rows [4, N] (x1, y1, x2, y2) so each row is contiguous.
"""
import torch

# Block sizes of the blocked greedy NMS (see `nms_sorted`): the first block, then the
# number of surviving boxes aimed at per block. Any values give the same result.
NMS_FIRST, NMS_BLOCK = 64, 512


def pairwise_iou(c1, a1, c2, a2):
    """IoU [N, M] from coordinates as rows c1 [4, N], c2 [4, M] (x1, y1, x2, y2) and areas
    a1 [N], a2 [M]. The operations of `box_iou` (and of torchvision's NMS kernel), done in
    place on [2, N, M] blocks: 3-4x faster than torchvision's box_iou on large inputs."""
    c1, c2 = c1[:, :, None], c2[:, None, :]  # [4, N, 1] and [4, 1, M]
    wh = torch.minimum(c1[2:], c2[2:]).sub_(torch.maximum(c1[:2], c2[:2])).clamp_(min=0)
    inter = wh[0].mul_(wh[1])
    return inter.div_((a1[:, None] + a2).sub_(inter))


def greedy_block(over):
    """Greedy keep mask (bool [B]) of B boxes in score order, from the float 0/1 matrix
    over[j, i] = 1 if box j may suppress box i (j < i: strictly upper triangular).

    Fixed-point iteration keep[i] = (number of kept j with over[j, i] = 1) == 0, i.e.
    keep = (keep @ over == 0). The greedy answer is its only fixed point, and after t steps
    every box whose chain of possible suppressors is shorter than t is final, so it stops
    after at most B steps (usually 2 to 5). (A matrix product is much faster here than
    any() over a bool matrix.)
    """
    keep = over.new_ones(over.shape[0])
    while True:
        new = (keep @ over).eq_(0)  # float 1.0 where no kept box suppresses
        if torch.equal(new, keep):
            return new.bool()
        keep = new


def nms_sorted(boxes, iou_threshold, idxs=None, max_kept=None):
    """Greedy NMS on boxes already sorted by decreasing score -> int64 positions of the kept.

    Blocked version of the textbook loop. A box is only ever compared with boxes *kept*
    before it (suppressed boxes suppress nothing), as in torchvision's CPU kernel. For each
    block of boxes: drop those that overlap an earlier kept box (one vectorised IoU against
    all kept boxes), then resolve the survivors among themselves (`greedy_block`). Blocks
    grow when few boxes survive, so that each holds about NMS_BLOCK survivors. With
    `max_kept` it stops once that many are kept: whether a box is kept depends only on the
    boxes before it, so the first `max_kept` are final by then.
    """
    n, inf = boxes.shape[0], float("inf")
    if n > 2**24:
        raise ValueError(f"nms handles at most 2**24 boxes, got {n}; keep the top-scoring ones first")
    b = boxes.detach()  # float32 or float64: the caller upcasts half precision
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    position = torch.arange(n, dtype=b.dtype, device=b.device)  # exact below 2**24 boxes
    rows = [b, area[:, None], position[:, None]] + ([] if idxs is None else [idxs[:, None].to(b.dtype)])
    data = torch.cat(rows, dim=1).t().contiguous()  # rows: x1, y1, x2, y2, area, position, category

    def iou(p, q):  # [P, Q]; NaN (0/0) and pairs of two categories -> -inf: never suppress
        v = pairwise_iou(p[:4], p[4], q[:4], q[4]).nan_to_num_(nan=-inf, posinf=inf, neginf=-inf)
        return v if idxs is None else v.masked_fill_(p[6, :, None] != q[6], -inf)

    kept, start, size = data[:, :0], 0, NMS_FIRST
    while start < n and (max_kept is None or kept.shape[1] < max_kept):
        block = data[:, start:start + size]
        if kept.shape[1]:
            block = block[:, iou(kept, block).amax(0) <= iou_threshold]
        survivors = block.shape[1]
        if survivors > 1:
            block = block[:, greedy_block(iou(block, block).gt_(iou_threshold).triu_(1))]
        kept = torch.cat((kept, block), dim=1)
        start += size  # next block: about NMS_BLOCK survivors, at most ~4M IoUs at once
        size = max(NMS_FIRST, min(size * NMS_BLOCK // max(survivors, 1), 2**22 // max(kept.shape[1], 1)))
    return kept[5, :max_kept].long()
