"""Box geometry: area, IoU, the (tx, ty, tw, th) box code, clipping and NMS.

Implements the box parameterisation of Faster R-CNN eq. 2 (R-CNN appendix C, Fast R-CNN
sec. 2.3: a scale-invariant shift of the box *centre* and a log-space width/height) and the
greedy non-maximum suppression used by R-CNN (sec. 2.2), Fast R-CNN and the RPN (Faster R-CNN
sec. 3.3, IoU 0.7).

Every function takes and returns the same things as its torchvision counterpart
(``torchvision.ops.box_area / box_iou / clip_boxes_to_image / remove_small_boxes / nms /
batched_nms`` and ``BoxCoder.encode_single / decode_single``), written in plain PyTorch.

Shape key:
    N, M  numbers of boxes
    K     number of classes in class-specific deltas ([N, 4 * K])
    Boxes are float [N, 4] (x1, y1, x2, y2) in input-image pixels, width x2 - x1 (no +1).
"""
import math

import torch
from torch import Tensor

from .kernels.nms import nms_sorted, pairwise_iou

__all__ = [
    "box_area", "box_iou", "encode_boxes", "decode_boxes", "clip_boxes",
    "remove_small_boxes", "nms_loop", "nms", "batched_nms", "check_boxes", "check_box_shape",
    "check_shape",
]

def check_shape(t, shape, name):
    """Raise ValueError unless tensor ``t`` has ``shape``; return ``t``. An int entry must match,
    ``None`` matches any size (written ``*``), a string matches any size and names it (``"N"``).
    The message names the caller's argument ``name``."""
    if t.dim() != len(shape) or any(isinstance(s, int) and s != d for s, d in zip(shape, t.shape)):
        want = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
        raise ValueError(f"{name} must have shape {want}, got {list(t.shape)}")
    return t


def check_box_shape(boxes, name="boxes", last=4, rows="N", type_error=TypeError):
    """Cheap checks (no device sync): a floating tensor of shape [rows, last]; returns it.

    A non-tensor or a non-float tensor raises ``type_error`` (TypeError; the targets' checks
    pass ValueError), a wrong shape ValueError; ``rows`` names the first dimension in the message.
    """
    if not isinstance(boxes, Tensor):
        raise type_error(f"{name} must be a torch.Tensor, got {type(boxes).__name__}")
    check_shape(boxes, (rows, last), name)
    if not boxes.is_floating_point():
        raise type_error(f"{name} must be a floating-point tensor, got {boxes.dtype}; call .float()")
    return boxes


def _upcast(t):
    """float16/bfloat16 -> float32 (as torchvision), so areas and products do not overflow."""
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def check_boxes(boxes, name="boxes", rows="N", type_error=TypeError):
    """Validate ground-truth-like boxes and return them unchanged.

    Raises ``type_error`` (TypeError by default) if ``boxes`` is not a floating tensor,
    ValueError if its shape is not [rows, 4], if it holds NaN/inf, or if a box is degenerate
    (x2 <= x1 or y2 <= y1). The message names ``name`` and the first bad index. [0, 4] passes.
    The one check of ground-truth boxes: `data.targets.check_target` calls it with rows="G".
    """
    check_box_shape(boxes, name, rows=rows, type_error=type_error)
    if boxes.numel() == 0:
        return boxes
    finite = torch.isfinite(boxes).all(1)
    if not bool(finite.all()):
        i = int((~finite).nonzero()[0])
        raise ValueError(f"{name} must be finite: NaN or inf at index {i}: {boxes[i].tolist()}")
    bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bool(bad.any()):
        i = int(bad.nonzero()[0])
        raise ValueError(
            f"{name}: degenerate box at index {i}: {boxes[i].tolist()} "
            "(need x2 > x1 and y2 > y1 in (x1, y1, x2, y2) format)")
    return boxes


def box_area(boxes):
    """Areas (x2 - x1) * (y2 - y1) of boxes [N, 4] -> [N] (float16 is upcast to float32)."""
    check_box_shape(boxes)
    boxes = _upcast(boxes)
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def box_iou(boxes1, boxes2):
    """Pairwise intersection over union: boxes1 [N, 4], boxes2 [M, 4] -> IoU [N, M].

    Equals ``torchvision.ops.box_iou`` value for value (same float operations, so the same
    rounding) and gradient for gradient. Empty inputs give [0, M] / [N, 0]. Boxes are not
    validated beyond their shape: two empty boxes give 0 / 0 = NaN, as in torchvision.
    """
    check_box_shape(boxes1, "boxes1")
    check_box_shape(boxes2, "boxes2")
    b1, b2 = _upcast(boxes1), _upcast(boxes2)
    area1, area2 = box_area(b1), box_area(b2)
    if torch.is_grad_enabled() and (b1.requires_grad or b2.requires_grad):  # autograd-safe
        lt = torch.maximum(b1[:, None, :2], b2[:, :2])  # [N, M, 2] top-left of the overlap
        rb = torch.minimum(b1[:, None, 2:], b2[:, 2:])  # [N, M, 2] bottom-right
        wh = (rb - lt).clamp(min=0)
        inter = wh[..., 0] * wh[..., 1]
        return inter / (area1[:, None] + area2 - inter)
    # No gradient needed: the same operations in place (3-4x faster than torchvision's).
    # IoU is symmetric operation for operation, so the longer list goes last (innermost,
    # where the loops vectorise): [A, G] anchor IoUs with few boxes are 2x faster this way.
    if b1.shape[0] > b2.shape[0]:
        return pairwise_iou(b2.t().contiguous(), area2, b1.t().contiguous(), area1).t().contiguous()
    return pairwise_iou(b1.t().contiguous(), area1, b2.t().contiguous(), area2)


def _check_weights(weights):
    if len(weights) != 4:
        raise ValueError(f"weights must be 4 numbers (wx, wy, ww, wh), got {weights}")
    return [float(w) for w in weights]


def encode_boxes(reference, boxes, weights=(1.0, 1.0, 1.0, 1.0)):
    """Regression targets of ``boxes`` relative to ``reference`` (Faster R-CNN eq. 2).

    reference [N, 4] are the anchors / proposals (x_a, y_a, w_a, h_a), boxes [N, 4] the matched
    ground truth (x, y, w, h), both with centres x, y. Returns deltas [N, 4]:
        tx = wx * (x - x_a) / w_a,   ty = wy * (y - y_a) / h_a,
        tw = ww * log(w / w_a),      th = wh * log(h / h_a).
    Equals torchvision ``BoxCoder(weights).encode_single(boxes, reference)`` (note the order).
    Paper: weights (1, 1, 1, 1); torchvision's detector head uses (10, 10, 5, 5).
    """
    check_box_shape(reference, "reference")
    check_box_shape(boxes, "boxes")
    if reference.shape[0] != boxes.shape[0]:
        raise ValueError(f"reference and boxes need the same N (one matched box per reference box), "
                         f"got {reference.shape[0]} and {boxes.shape[0]}")
    wx, wy, ww, wh = _check_weights(weights)
    ex_w = reference[:, 2:3] - reference[:, 0:1]
    ex_h = reference[:, 3:4] - reference[:, 1:2]
    ex_x = reference[:, 0:1] + 0.5 * ex_w
    ex_y = reference[:, 1:2] + 0.5 * ex_h
    gt_w = boxes[:, 2:3] - boxes[:, 0:1]
    gt_h = boxes[:, 3:4] - boxes[:, 1:2]
    gt_x = boxes[:, 0:1] + 0.5 * gt_w
    gt_y = boxes[:, 1:2] + 0.5 * gt_h
    tx = wx * (gt_x - ex_x) / ex_w
    ty = wy * (gt_y - ex_y) / ex_h
    tw = ww * torch.log(gt_w / ex_w)
    th = wh * torch.log(gt_h / ex_h)
    return torch.cat((tx, ty, tw, th), dim=1)


def decode_boxes(reference, deltas, weights=(1.0, 1.0, 1.0, 1.0), clamp=math.log(1000.0 / 16)):
    """Apply deltas [N, 4] (or class-specific [N, 4 * K]) to reference boxes [N, 4].

    Inverse of `encode_boxes`: x = tx / wx * w_a + x_a, w = exp(tw / ww) * w_a, ... Returns
    boxes of the same shape as ``deltas``; column block k holds the box for class k.
    ``clamp`` caps tw, th before exp (a box at most 1000/16 = 62.5 times its reference) so an
    untrained regressor cannot overflow. Equals torchvision ``BoxCoder.decode_single``.
    """
    check_box_shape(reference, "reference")
    if not isinstance(deltas, Tensor) or deltas.dim() != 2 or deltas.shape[1] % 4 or deltas.shape[1] == 0:
        shape = list(deltas.shape) if isinstance(deltas, Tensor) else type(deltas).__name__
        raise ValueError(f"deltas must have shape [N, 4] or [N, 4 * K], got {shape}")
    if deltas.shape[0] != reference.shape[0]:
        raise ValueError(f"deltas and reference need the same N (one row per reference box), "
                         f"got {deltas.shape[0]} and {reference.shape[0]}")
    wx, wy, ww, wh = _check_weights(weights)
    reference = reference.to(deltas.dtype)
    widths = reference[:, 2] - reference[:, 0]
    heights = reference[:, 3] - reference[:, 1]
    ctr_x = reference[:, 0] + 0.5 * widths
    ctr_y = reference[:, 1] + 0.5 * heights
    dx, dy = deltas[:, 0::4] / wx, deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=clamp)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=clamp)
    pred_x = dx * widths[:, None] + ctr_x[:, None]
    pred_y = dy * heights[:, None] + ctr_y[:, None]
    half_w = 0.5 * (torch.exp(dw) * widths[:, None])
    half_h = 0.5 * (torch.exp(dh) * heights[:, None])
    pred = (pred_x - half_w, pred_y - half_h, pred_x + half_w, pred_y + half_h)
    return torch.stack(pred, dim=2).flatten(1)


def _check_image_size(image_size):
    if not isinstance(image_size, (tuple, list, torch.Size)) or len(image_size) != 2:
        raise ValueError(f"image_size must be (height, width), got {image_size}")
    return image_size


def clip_boxes(boxes, image_size):
    """Clip boxes [..., 4] to an image of ``image_size = (height, width)``: x in [0, width],
    y in [0, height]. Returns a new tensor; equals ``torchvision.ops.clip_boxes_to_image``."""
    if not isinstance(boxes, Tensor) or boxes.dim() == 0 or boxes.shape[-1] != 4:
        raise ValueError(f"boxes must have shape [..., 4], got {getattr(boxes, 'shape', type(boxes))}")
    height, width = _check_image_size(image_size)
    x = boxes[..., 0::2].clamp(min=0, max=width)
    y = boxes[..., 1::2].clamp(min=0, max=height)
    return torch.stack((x, y), dim=boxes.dim()).reshape(boxes.shape)


def remove_small_boxes(boxes, min_size):
    """Indices (int64 [K]) of the boxes whose width and height are both >= ``min_size``.
    Equals ``torchvision.ops.remove_small_boxes``."""
    check_box_shape(boxes)
    keep = (boxes[:, 2] - boxes[:, 0] >= min_size) & (boxes[:, 3] - boxes[:, 1] >= min_size)
    return torch.where(keep)[0]


def _check_max_kept(max_kept):
    if max_kept is not None and (isinstance(max_kept, bool) or not isinstance(max_kept, int)
                                 or max_kept < 1):
        raise ValueError(f"max_kept must be a positive int (how many boxes to keep at most) or "
                         f"None (all), got {max_kept!r}")


def _check_nms_inputs(boxes, scores, idxs=None):
    check_box_shape(boxes)
    if not isinstance(scores, Tensor) or scores.shape != boxes.shape[:1]:
        raise ValueError(f"scores must have shape [{boxes.shape[0]}] (one per box), got "
                         f"{list(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__}")
    if idxs is not None and (not isinstance(idxs, Tensor) or idxs.shape != boxes.shape[:1]):
        raise ValueError(f"idxs must have shape [{boxes.shape[0]}] (one category per box)")
    if boxes.numel() and (bool(torch.isnan(scores).any()) or bool(torch.isnan(boxes).any())):
        raise ValueError("boxes and scores must not contain NaN (did the training diverge?)")


def nms_loop(boxes, scores, iou_threshold):
    """Greedy NMS as the papers describe it, one box at a time (the readable version of `nms`).

    Visit the boxes from the highest score down; keep a box unless it overlaps a box already
    kept with IoU > iou_threshold. Suppressed boxes suppress nothing. Same answer as `nms`
    (and torchvision's CPU kernel), O(N * kept) Python steps: for reading and for checking.
    """
    _check_nms_inputs(boxes, scores)
    order = torch.sort(scores, descending=True, stable=True).indices
    kept = []
    for i in order.tolist():
        # "> threshold suppresses", so an empty box's 0/0 = NaN IoU suppresses nothing
        if not any(box_iou(boxes[i:i + 1], boxes[j:j + 1]).item() > iou_threshold for j in kept):
            kept.append(i)
    return torch.tensor(kept, dtype=torch.int64, device=boxes.device)


def nms(boxes, scores, iou_threshold, *, max_kept=None):
    """Greedy non-maximum suppression (R-CNN sec. 2.2, Faster R-CNN sec. 3.3).

    Visit boxes in order of decreasing score; keep a box unless a box kept before it has
    IoU > ``iou_threshold`` with it. Returns int64 indices of the kept boxes, highest score
    first: exactly ``torchvision.ops.nms``'s indices in the same order (CPU kernel). Equal
    scores keep their input order (stable sort), which is what torchvision's CPU kernel does;
    its CUDA kernel does not promise an order for ties. Empty input -> empty int64 tensor.
    Raises ValueError on NaN in boxes or scores (torchvision would return an arbitrary answer).
    `nms_loop` is the algorithm as written; this runs it block-wise on whole tensors
    (`kernels.nms.nms_sorted`) and gives the loop's answer.

    ``max_kept`` (not in torchvision): return only the first max_kept kept boxes, the same as
    ``nms(...)[:max_kept]``, and stop there. The RPN keeps 2000 of the ~4000 boxes that
    survive NMS in training and 300 at test time, so most of the loop is skipped.
    """
    _check_nms_inputs(boxes, scores)
    _check_max_kept(max_kept)
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[nms_sorted(_upcast(boxes[order]), iou_threshold, max_kept=max_kept)]


def batched_nms(boxes, scores, idxs, iou_threshold, *, max_kept=None):
    """NMS independently per category ``idxs`` [N] (int): boxes of different categories never
    suppress each other. Returns int64 indices sorted by decreasing score, like
    ``torchvision.ops.batched_nms``.

    torchvision shifts each category's boxes by a large offset so that they cannot overlap
    (the "coordinate trick") and runs one NMS. Here the IoU test simply also requires equal
    categories, which gives the same answer without the float rounding the offset brings.
    ``max_kept``: as in `nms`, the first max_kept of the answer.
    """
    _check_nms_inputs(boxes, scores, idxs)
    _check_max_kept(max_kept)
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[nms_sorted(_upcast(boxes[order]), iou_threshold, idxs[order], max_kept)]
