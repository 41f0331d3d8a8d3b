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
from frcnn_edu.training.rcnn_fit import fit_svms

from . import harness
from .result import REFERENCES, Result, exercise

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
def _rect_cases():
    """(rects,) cases: the exercise's, no rectangles, one, then 22 seeded random sets."""
    g = harness.seeded(1)
    cases = [(EX_RECTS,), (torch.zeros(0, 4),), (torch.tensor([[3.0, 4, 1, 1]]),)]
    for i in range(22):
        r = harness.random_boxes(1 + i % 6, g, extent=200, max_size=80, integer=True)
        cases.append((torch.cat([r[:, :2], r[:, 2:] - r[:, :2]], 1),))
    return cases


def _xyxy(rects):
    r = rects.double()
    return torch.cat([r[:, :2], r[:, :2] + r[:, 2:]], 1)    # what selective_search does


def _xyxy_hint(args, got, want):
    r = args[0].double()
    if _close(got, r):
        return "the rectangles came back unchanged: x2 = x + w and y2 = y + h"
    if _close(got, want - torch.tensor([0, 0, 1, 1.0])):
        return ("no -1: in this course a box covers [x1, x2) and its width is x2 - x1, so "
                "x2 = x + w")
    if _close(got, torch.cat([r[:, :2], r[:, :2] + r[:, 2:].flip(1)], 1)):
        return "w goes with x and h with y: x2 = x + w, y2 = y + h"
    if _close(got, torch.cat([r[:, :2] - r[:, 2:] / 2, r[:, :2] + r[:, 2:] / 2], 1)):
        return "OpenCV's (x, y) is the top-left corner, not the centre"
    return "keep (x, y) as the top-left corner and add the width and height to get (x2, y2)"


@exercise("lesson01.xywh_to_xyxy")
def check_xywh_to_xyxy(fn):
    """fn(rects) -> boxes: OpenCV's (x, y, w, h) rectangles [N, 4] to (x1, y1, x2, y2)."""
    cases = _rect_cases()
    return harness.check_function(
        fn, _xyxy, cases, lambda got, want, args: _close(got, want),
        convert=harness.as_float_tensor(lambda args: args[0].shape, "the result"),
        hint=_xyxy_hint, name="xywh_to_xyxy",
        passed=f"(x1, y1, x2, y2) = (x, y, x + w, y + h) on {len(cases)} cases, as "
               "selective_search converts OpenCV's rectangles.")


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


def _context_cases():
    """(box, size, context) cases: the hand-made ones, a thin box, then 20 seeded random boxes."""
    g = harness.seeded(2)
    cases = list(_CONTEXT_CASES) + [((10.0, 10.0, 10.5, 90.0), 112, 16)]
    for i in range(20):
        box = tuple(round(v, 2) for v in harness.random_boxes(1, g, extent=150, max_size=90)[0].tolist())
        cases.append((box, (112, 227, 64)[i % 3], (16, 8, 0)[i % 3]))
    return cases


def _library_context_box(box, size, context):
    """The box that ``warp_regions(image, box, size, context)`` really crops (its pad)."""
    b = torch.tensor([box], dtype=torch.float64)
    pad = context * (b[:, 2:] - b[:, :2]) / (size - 2 * context)
    return torch.cat([b[:, :2] - pad, b[:, 2:] + pad], 1)[0]


def _context_hint(args, got, want):
    for alt, alt_hint in _context_alternatives(*args):
        if _close(got.reshape(-1), torch.tensor(alt, dtype=torch.float64)):
            return alt_hint
    return "pad = context * (box width or height) / (size - 2 * context) on every side"


@exercise("lesson01.context_box")
def check_context_box(fn):
    """fn(box, size, context) -> the enlarged box (4 numbers) that warp_regions really crops.

    The reference is warp_regions' own padding; tests/test_checks_lesson01.py checks that
    warping the reference box without context gives warp_regions' crop pixel for pixel.
    """
    cases = _context_cases()
    return harness.check_function(
        fn, _library_context_box, cases, lambda got, want, args: _close(got, want),
        convert=harness.as_float_tensor(lambda args: (4,), "the box, 4 numbers (x1, y1, x2, y2),"),
        hint=_context_hint, name="context_box",
        passed=f"your boxes are the ones warp_regions crops, on {len(cases)} boxes (crop sizes "
               "64, 112 and 227, context 0, 8 and 16).")


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


def _targets_cases():
    """(proposals, gt_boxes) cases: the exercise's, none, a box on itself, 22 random sets."""
    g = harness.seeded(4)
    cases = [(EX_PROPOSALS, EX_GT_BOXES), (torch.zeros(0, 4), torch.zeros(0, 4)),
             (EX_PROPOSALS[:1], EX_PROPOSALS[:1].clone())]
    for i in range(22):
        p = harness.random_boxes(1 + i % 5, g, extent=120, min_size=4, max_size=60)
        jitter = (torch.rand(len(p), 4, generator=g) - 0.5) * 16
        cases.append((p, torch.cat([p[:, :2] + jitter[:, :2],
                                    p[:, 2:] + jitter[:, 2:].clamp_min(-1) + 2], 1)))
    return cases


def _targets_hint(args, got, want):
    if torch.isnan(got).any():
        return ("your targets contain NaN: the log needs positive widths and heights "
                "(w = x2 - x1 of each box)")
    p, g = (a.double() for a in args)
    for alt, alt_hint in _targets_alternatives(p, g):
        if _close(got, alt):
            return alt_hint
    cols = [name for j, name in enumerate(("tx", "ty", "tw", "th"))
            if not torch.allclose(got[:, j], want[:, j], atol=1e-4)]
    return (f"{', '.join(cols)} differ. tx = (x_gt - x_p) / w_p and ty = (y_gt - y_p) / h_p "
            "with (x, y) the box centres, tw = log(w_gt / w_p), th = log(h_gt / h_p)")


@exercise("lesson01.regression_targets")
def check_regression_targets(fn):
    """fn(proposals [N, 4], gt_boxes [N, 4]) -> targets [N, 4] (tx, ty, tw, th), R-CNN app. C."""
    cases = _targets_cases()
    return harness.check_function(
        fn, lambda p, g: encode_boxes(p.double(), g.double()), cases,
        lambda got, want, args: _close(got, want),
        convert=harness.as_float_tensor(lambda args: args[0].shape, "the targets"),
        hint=_targets_hint, name="regression_targets",
        forbidden=["frcnn_edu.boxes.encode_boxes"],
        passed=f"your (tx, ty, tw, th) equal encode_boxes(proposals, gt_boxes) on {len(cases)} "
               "cases: centre shift in proposal widths/heights, log of the size ratio.")


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


def _negatives_cases():
    """(scores, ious) cases: the exercise's, no regions, then 22 seeded random sets whose values
    lie on a grid, so that scores of exactly -1 and IoUs of exactly 0.3 come up."""
    g = harness.seeded(3)
    cases = [(EX_SCORES, EX_IOUS), (torch.zeros(0), torch.zeros(0)),
             (torch.tensor([-1.0, -0.5]), torch.tensor([0.3, 0.0]))]
    for i in range(22):
        m = 3 + i % 10
        scores = torch.randint(-12, 8, (m,), generator=g) / 4      # -3 .. 1.75, -1 included
        ious = torch.randint(0, 10, (m,), generator=g) / 10        # 0 .. 0.9, 0.3 included
        cases.append((scores, ious))
    return cases


def _negatives_set(got, args):
    try:
        got, err = _as_index_set(got, len(args[0]))
    except (TypeError, ValueError, RuntimeError):
        raise harness.Wrong(f"return a list or tensor of indices (or a boolean mask), got {got!r}")
    if err is not None:
        raise harness.Wrong(err.message)
    return got


def _negatives_variants(s, u):
    pick = lambda mask: set(torch.nonzero(mask).reshape(-1).tolist())  # noqa: E731
    rules = {
        "only negatives (IoU < 0.3 with every box of the class) can be hard negatives; regions "
        "from 0.3 up are ignored, whatever their score": pick(s > MARGIN),
        "a negative is inside the margin when its score is above -1, not only above 0 (those are "
        "the misclassified ones; the hinge loss also counts -1 < score < 0)":
            pick((u < NEG_IOU) & (s > 0)),
        "hard means a HIGH score (the SVM wrongly leans to 'object'): score > -1, not below":
            pick((u < NEG_IOU) & (s < MARGIN)),
        "the negative rule is IoU < 0.3 (strictly): a region at exactly 0.3 is not a negative":
            pick((u <= NEG_IOU) & (s > MARGIN)),
        "a score of exactly -1 lies ON the margin (hinge loss 0): take score > -1 strictly":
            pick((u < NEG_IOU) & (s >= MARGIN)),
    }
    return list(rules.items())


@exercise("lesson01.hard_negatives")
def check_hard_negatives(fn):
    """fn(scores [M], ious [M]) -> indices (any order) or a bool mask of the hard negatives."""
    cases = _negatives_cases()
    want = sorted(expected_hard_negatives().tolist())
    return harness.check_function(
        fn, lambda s, u: set(expected_hard_negatives(s, u).tolist()), cases,
        lambda got, want, args: got == want, convert=_negatives_set, variants=_negatives_variants,
        hint=f"keep the regions with IoU < {NEG_IOU} and score > {MARGIN:g}",
        name="hard_negatives",
        passed=f"on the exercise, regions {want} are negatives (IoU < {NEG_IOU}) that the SVM "
               f"scores above {MARGIN:g}, inside the margin: the next round trains on them "
               f"({len(cases)} cases checked, ties at -1 and 0.3 included).")


REFERENCES.update({"lesson01.hard_negatives": expected_hard_negatives})
