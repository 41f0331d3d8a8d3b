"""Checkers for lesson 01 (R-CNN: proposals, warped regions, SVMs and box regression).

    check_xywh_to_xyxy(fn)          fn(rects [N, 4] (x, y, w, h)) -> boxes [N, 4] (x1, y1, x2, y2)
    check_context_box(fn)           fn(box [4], size, context) -> the box that is really cropped
    check_hard_negatives(fn)        fn(scores [M], ious [M]) -> indices of the hard negatives
    check_regression_targets(fn)    fn(proposals [N, 4], gt_boxes [N, 4]) -> [N, 4] (tx, ty, tw, th)

Each compares with the library (``frcnn_edu.proposals.selective_search``,
``frcnn_edu.models.warp_regions``, the mining rule of ``frcnn_edu.training.rcnn_fit.fit_svms``
and ``frcnn_edu.boxes.encode_boxes``, in the order of the lesson's exercises 1-4) and names the
likely slip when the answer is wrong.
"""
import inspect

import torch

from frcnn_edu.boxes import encode_boxes
from frcnn_edu.models.rcnn import warp_regions
from frcnn_edu.roi_ops import roi_align
from frcnn_edu.training.rcnn_fit import fit_svms

from .result import Result, run_safely

__all__ = ["EX_RECTS", "EX_PROPOSALS", "EX_GT_BOXES", "EX_SCORES", "EX_IOUS", "NEG_IOU", "MARGIN",
           "expected_hard_negatives", "check_xywh_to_xyxy", "check_context_box",
           "check_regression_targets", "check_hard_negatives"]

#: Exercise 1: rectangles as OpenCV's selective search returns them, (x, y, w, h).
EX_RECTS = torch.tensor([[10.0, 20, 30, 40], [0, 0, 160, 160], [37, 5, 8, 90], [100, 120, 1, 1],
                         [64, 64, 50, 12]])

#: Exercise 4: proposals and the ground-truth box each one is regressed to (one per row).
EX_PROPOSALS = torch.tensor([[20.0, 30, 60, 70], [10, 10, 90, 40], [50, 60, 70, 140],
                             [0, 0, 32, 16], [100, 40, 150, 60]])
EX_GT_BOXES = torch.tensor([[24.0, 28, 68, 76], [12, 6, 80, 46], [48, 70, 74, 130],
                            [4, 2, 30, 20], [96, 36, 158, 70]])

#: Exercise 3: SVM scores of the negatives of one class, and their IoU with that class's boxes.
EX_SCORES = torch.tensor([-2.3, -0.4, 0.7, -1.0, -0.95, -1.6, 1.8, -0.2, -1.2, 0.1, -0.99, -3.0])
EX_IOUS = torch.tensor([0.05, 0.12, 0.0, 0.2, 0.29, 0.1, 0.45, 0.3, 0.0, 0.28, 0.31, 0.6])

#: The mining rule of fit_svms: negatives have IoU < NEG_IOU; hard ones score above MARGIN.
NEG_IOU = inspect.signature(fit_svms).parameters["neg_iou"].default
MARGIN = -1.0


def _as_tensor(value, what, shape=None):
    """float64 tensor of `value`, or a Result saying what was expected."""
    try:
        t = torch.as_tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        return None, Result(False, f"{what} should be a tensor (or a list of numbers), got "
                                   f"{type(value).__name__}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        return None, Result(False, f"{what} should have shape {list(shape)}, got {list(t.shape)}")
    return t, None


def _close(a, b, atol=1e-4):
    return a.shape == b.shape and bool(torch.allclose(a, b, atol=atol, rtol=1e-5))


# ----------------------------------------------------------------------------- exercise 1
def check_xywh_to_xyxy(fn):
    """fn(rects) -> boxes: OpenCV's (x, y, w, h) rectangles [N, 4] to (x1, y1, x2, y2)."""
    got, err = run_safely(fn, EX_RECTS.clone())
    if err is not None:
        return err
    got, err = _as_tensor(got, "the result", EX_RECTS.shape)
    if err is not None:
        return err
    r = EX_RECTS.double()
    want = torch.cat([r[:, :2], r[:, :2] + r[:, 2:]], 1)   # what selective_search does
    if _close(got, want):
        return Result(True, "(x1, y1, x2, y2) = (x, y, x + w, y + h), as selective_search converts "
                            "OpenCV's rectangles.")
    if _close(got, r):
        hint = "the rectangles came back unchanged: x2 = x + w and y2 = y + h"
    elif _close(got, want - torch.tensor([0, 0, 1, 1.0])):
        hint = ("no -1: in this course a box covers [x1, x2) and its width is x2 - x1, so "
                "x2 = x + w")
    elif _close(got, torch.cat([r[:, :2], r[:, :2] + r[:, 2:].flip(1)], 1)):
        hint = "w goes with x and h with y: x2 = x + w, y2 = y + h"
    elif _close(got, torch.cat([r[:, :2] - r[:, 2:] / 2, r[:, :2] + r[:, 2:] / 2], 1)):
        hint = "OpenCV's (x, y) is the top-left corner, not the centre"
    else:
        hint = "keep (x, y) as the top-left corner and add the width and height to get (x2, y2)"
    return Result(False, f"for the rectangle {EX_RECTS[0].tolist()} you gave "
                         f"{[round(v, 2) for v in got[0].tolist()]}, expected {want[0].tolist()}: {hint}.")


# ----------------------------------------------------------------------------- exercise 2
_CONTEXT_CASES = (((40.0, 30.0, 120.0, 90.0), 112, 16), ((10.0, 50.0, 30.0, 140.0), 112, 16),
                  ((0.0, 0.0, 64.0, 64.0), 112, 16), ((55.5, 20.25, 70.0, 28.0), 112, 8),
                  ((30.0, 40.0, 130.0, 100.0), 227, 16))


def _context_alternatives(box, size, context):
    """Boxes that the usual slips produce, with a hint each."""
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    return (
        ((x1 - context, y1 - context, x2 + context, y2 + context),
         "the 16 pixels of context are measured in the WARPED crop, not in the image: scale them by "
         "the box size, pad = context * w / (size - 2 * context) along x (h along y)"),
        ((x1 - context * w / size, y1 - context * h / size, x2 + context * w / size, y2 + context * h / size),
         "after padding, the box itself fills size - 2 * context pixels of the crop, not size: "
         "pad = context * w / (size - 2 * context)"),
        ((x1, y1, x2 + 2 * context * w / (size - 2 * context), y2 + 2 * context * h / (size - 2 * context)),
         "pad both sides: the box grows by pad on the left and top AND on the right and bottom"),
        ((x1 - context * h / (size - 2 * context), y1 - context * w / (size - 2 * context),
          x2 + context * h / (size - 2 * context), y2 + context * w / (size - 2 * context)),
         "the x padding uses the width and the y padding the height (the warp is anisotropic)"),
    )


def _noise_image(seed=0, size=(3, 160, 240)):
    return torch.rand(size, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def check_context_box(fn):
    """fn(box, size, context) -> the enlarged box (4 numbers) that warp_regions really crops.

    Checked through the library: warping the student's box without context must give the same
    pixels as ``warp_regions(image, box, size, context)``.
    """
    image = _noise_image()
    for box, size, context in _CONTEXT_CASES:
        got, err = run_safely(fn, box, size, context)
        if err is not None:
            return err
        got, err = _as_tensor(got, f"context_box({box}, {size}, {context})")
        if err is not None:
            return err
        if got.numel() != 4:
            return Result(False, f"return the box as 4 numbers (x1, y1, x2, y2), got {got.numel()}")
        b = torch.tensor([box], dtype=torch.float64)
        want = warp_regions(image, b, size, context)
        mine = roi_align(image[None], [got.reshape(1, 4)], size, 1.0, sampling_ratio=1, aligned=True)
        if _close(mine, want, atol=1e-4):
            continue
        where = (f"for box {box}, size {size}, context {context} you gave "
                 f"{[round(v, 2) for v in got.reshape(-1).tolist()]}")
        hint = "pad = context * (box width or height) / (size - 2 * context) on every side"
        for alt, alt_hint in _context_alternatives(box, size, context):
            if _close(got.reshape(-1), torch.tensor(alt, dtype=torch.float64)):
                hint = alt_hint
                break
        return Result(False, f"{where}, but warping it does not give warp_regions' crop: {hint}.")
    return Result(True, f"warping your boxes without context gives exactly warp_regions' crops "
                        f"with context, on {len(_CONTEXT_CASES)} boxes (sizes 112 and 227).")


# ---------------------------------------------------------- exercise 4 (regression targets)
def _targets_alternatives(p, g):
    """(deltas, hint) for the usual slips; p, g float64 [N, 4]."""
    pw, ph = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    corner = torch.stack([(g[:, 0] - p[:, 0]) / pw, (g[:, 1] - p[:, 1]) / ph,
                          torch.log(gw / pw), torch.log(gh / ph)], 1)
    no_log = encode_boxes(p, g).clone()
    no_log[:, 2:] = torch.stack([gw / pw, gh / ph], 1)
    no_log_minus = no_log.clone()
    no_log_minus[:, 2:] -= 1
    by_gt = encode_boxes(p, g).clone()
    by_gt[:, :2] = by_gt[:, :2] * torch.stack([pw / gw, ph / gh], 1)
    unscaled = encode_boxes(p, g).clone()
    unscaled[:, :2] = unscaled[:, :2] * torch.stack([pw, ph], 1)
    return (
        (corner, "you shifted the top-left corner: R-CNN (app. C) regresses the shift of the box "
                 "CENTRE, x = x1 + w / 2, in units of the proposal's width and height"),
        (encode_boxes(g, p), "the arguments are swapped: the targets move the PROPOSAL onto the "
                             "ground truth, tx = (x_gt - x_p) / w_p, tw = log(w_gt / w_p)"),
        (no_log, "tw and th are in log space: tw = log(w_gt / w_p)"),
        (no_log_minus, "tw and th are in log space: tw = log(w_gt / w_p), not a relative change"),
        (by_gt, "divide the centre shift by the PROPOSAL's width and height, not the ground truth's"),
        (unscaled, "the centre shift is scale-invariant: divide it by the proposal's width "
                   "(tx) and height (ty)"),
    )


def check_regression_targets(fn):
    """fn(proposals [N, 4], gt_boxes [N, 4]) -> targets [N, 4] (tx, ty, tw, th), R-CNN app. C."""
    got, err = run_safely(fn, EX_PROPOSALS.clone(), EX_GT_BOXES.clone())
    if err is not None:
        return err
    got, err = _as_tensor(got, "the targets", EX_PROPOSALS.shape)
    if err is not None:
        return err
    p, g = EX_PROPOSALS.double(), EX_GT_BOXES.double()
    want = encode_boxes(p, g)
    if _close(got, want):
        return Result(True, "your (tx, ty, tw, th) equal encode_boxes(proposals, gt_boxes): centre "
                            "shift in proposal widths/heights, log of the size ratio.")
    if torch.isnan(got).any():
        return Result(False, "your targets contain NaN: the log needs positive widths and heights "
                             "(w = x2 - x1 of each box)")
    hint = ("tx = (x_gt - x_p) / w_p and ty = (y_gt - y_p) / h_p with (x, y) the box centres, "
            "tw = log(w_gt / w_p), th = log(h_gt / h_p)")
    for alt, alt_hint in _targets_alternatives(p, g):
        if _close(got, alt):
            hint = alt_hint
            break
    else:
        cols = [name for j, name in enumerate(("tx", "ty", "tw", "th"))
                if not torch.allclose(got[:, j], want[:, j], atol=1e-4)]
        hint = f"{', '.join(cols)} differ. {hint}"
    return Result(False, f"for the proposal {EX_PROPOSALS[0].tolist()} and the box "
                         f"{EX_GT_BOXES[0].tolist()} you gave {[round(v, 4) for v in got[0].tolist()]}, "
                         f"encode_boxes gives {[round(v, 4) for v in want[0].tolist()]}: {hint}.")


# -------------------------------------------------------------- exercise 3 (hard negatives)
def expected_hard_negatives(scores=EX_SCORES, ious=EX_IOUS):
    """Indices (sorted) of the regions fit_svms adds in a mining round: IoU < 0.3, score > -1."""
    return torch.nonzero((ious < NEG_IOU) & (scores > MARGIN)).squeeze(1)


def _as_index_set(value, n):
    """A set of indices from a list/tensor of indices or a bool mask of length n; or a Result."""
    t = torch.as_tensor(value) if not isinstance(value, torch.Tensor) else value
    if t.dtype == torch.bool:
        if t.numel() != n:
            return None, Result(False, f"a boolean mask needs one value per region ({n}), got {t.numel()}")
        return set(torch.nonzero(t.reshape(-1)).squeeze(1).tolist()), None
    if t.is_floating_point() and t.numel() and not bool((t == t.round()).all()):
        return None, Result(False, "return the INDICES of the hard negatives (or a boolean mask), not scores")
    return set(int(i) for i in t.reshape(-1).tolist()), None


def check_hard_negatives(fn):
    """fn(scores [M], ious [M]) -> indices (any order) or a bool mask of the hard negatives."""
    try:
        got, err = run_safely(fn, EX_SCORES.clone(), EX_IOUS.clone())
        if err is None:
            got, err = _as_index_set(got, len(EX_SCORES))
    except (TypeError, ValueError, RuntimeError):
        err = Result(False, f"return a list or tensor of indices (or a boolean mask), got {got!r}")
    if err is not None:
        return err
    want = set(expected_hard_negatives().tolist())
    if got == want:
        return Result(True, f"regions {sorted(want)} are negatives (IoU < {NEG_IOU}) that the SVM "
                            f"scores above {MARGIN:g}, inside the margin: the next round trains on them.")
    s, u = EX_SCORES, EX_IOUS
    rules = {
        "only negatives (IoU < 0.3 with every box of the class) can be hard negatives; regions "
        "from 0.3 up are ignored, whatever their score": set(torch.nonzero(s > MARGIN).squeeze(1).tolist()),
        "a negative is inside the margin when its score is above -1, not only above 0 (those are "
        "the misclassified ones; the hinge loss also counts -1 < score < 0)":
            set(torch.nonzero((u < NEG_IOU) & (s > 0)).squeeze(1).tolist()),
        "hard means a HIGH score (the SVM wrongly leans to 'object'): score > -1, not below":
            set(torch.nonzero((u < NEG_IOU) & (s < MARGIN)).squeeze(1).tolist()),
        "the negative rule is IoU < 0.3 (strictly): a region at exactly 0.3 is not a negative":
            set(torch.nonzero((u <= NEG_IOU) & (s > MARGIN)).squeeze(1).tolist()),
        "a score of exactly -1 lies ON the margin (hinge loss 0): take score > -1 strictly":
            set(torch.nonzero((u < NEG_IOU) & (s >= MARGIN)).squeeze(1).tolist()),
    }
    hint = next((h for h, idx in rules.items() if got == idx),
                f"keep the regions with IoU < {NEG_IOU} and score > {MARGIN:g}")
    missing, extra = sorted(want - got), sorted(got - want)
    detail = "; ".join(part for part in (f"missing {missing}" if missing else "",
                                         f"not hard negatives: {extra}" if extra else "") if part)
    return Result(False, f"{detail}: {hint}.")
