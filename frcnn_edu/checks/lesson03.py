"""Checkers for lesson 03 (anchors, IoU labeling and balanced sampling).

    check_anchor_shape(fn)      fn(size, ratio) -> (width, height) of the anchor
    check_anchor_count(fn)      fn(image_size, stride, sizes, ratios) -> (total, inside)
    check_labels(labels)        labels of EX_ANCHORS for EX_BOXES in EX_IMAGE_SIZE, by hand
    check_sampled_counts(fn)    fn(num_pos, num_neg) -> (positives, negatives) in the 256 batch

Each compares with the library (``frcnn_edu.anchors``, ``frcnn_edu.matching``) and names the
likely slip when the answer is wrong.
"""
import math

import torch

from frcnn_edu.anchors import grid_anchors, inside_image, make_base_anchors
from frcnn_edu.boxes import box_iou
from frcnn_edu.matching import label_anchors, sample_labels

from .result import Result, run_safely

__all__ = ["EX_ANCHORS", "EX_BOXES", "EX_IMAGE_SIZE", "expected_labels", "check_anchor_shape",
           "check_anchor_count", "check_labels", "check_sampled_counts"]

#: Exercise 3: eight anchors (rows of the IoU matrix) ...
EX_ANCHORS = torch.tensor([[12.0, 12, 52, 52], [20, 10, 60, 50], [60, 20, 80, 60], [80, 20, 100, 60],
                           [96, 76, 128, 104], [80, 72, 120, 112], [0, 70, 40, 110], [30, 30, 70, 70]])
#: ... three ground-truth boxes (columns) ...
EX_BOXES = torch.tensor([[10.0, 10, 50, 50], [70, 20, 90, 60], [100, 80, 116, 96]])
#: ... in an image of this (height, width): anchor 4 crosses its right border.
EX_IMAGE_SIZE = (120, 120)

# (size, ratio) cases for check_anchor_shape: the paper's, the course's, odd ratios.
_SHAPE_CASES = ((128, 1.0), (256, 0.5), (512, 2.0), (40, 2.0), (20, 0.5), (80, 3.0), (100, 1 / 3))
# (image_size (H, W), stride, sizes, ratios) cases for check_anchor_count.
_COUNT_CASES = (((600, 1000), 16, (128, 256, 512), (0.5, 1.0, 2.0)),
                ((160, 160), 16, (20, 40, 80), (0.5, 1.0, 2.0)),
                ((375, 500), 16, (128, 256, 512), (0.5, 1.0, 2.0)),
                ((600, 800), 32, (64, 128), (1.0,)),
                ((200, 120), 8, (16, 32, 64, 128), (0.5, 1.0, 2.0)))
# (num_pos, num_neg) cases for check_sampled_counts (batch 256, at most half positive).
_SAMPLE_CASES = ((10, 500), (200, 5000), (128, 700), (300, 50), (5, 20), (0, 1000), (129, 127),
                 (40, 100))


def _library_shape(size, ratio):
    x1, y1, x2, y2 = make_base_anchors((size,), (ratio,), dtype=torch.float64)[0].tolist()
    return x2 - x1, y2 - y1


def _pair(value, what):
    """(a, b) as two floats, or a Result saying what was expected."""
    try:
        a, b = value
        return (float(a), float(b)), None
    except (TypeError, ValueError):
        return None, Result(False, f"return {what} as a pair of two numbers, got {value!r}")


def check_anchor_shape(fn):
    """fn(size, ratio) -> (width, height) of the anchor of that size and ratio (h / w)."""
    close = lambda x, y: math.isclose(x, y, rel_tol=1e-4, abs_tol=1e-3)  # noqa: E731
    for size, ratio in _SHAPE_CASES:
        got, err = run_safely(fn, size, ratio)
        if err is not None:
            return err
        got, err = _pair(got, "(width, height)")
        if err is not None:
            return err
        w, h = _library_shape(size, ratio)
        if close(got[0], w) and close(got[1], h):
            continue
        where = f"for size {size} and ratio {ratio:g} you gave {got[0]:.2f} x {got[1]:.2f}"
        if close(got[0], h) and close(got[1], w):
            hint = ("width and height are swapped: the ratio is h / w, so a ratio above 1 is a "
                    "tall anchor (w = s / sqrt(r), h = s * sqrt(r))")
        elif close(got[0], size / ratio) and close(got[1], size * ratio):
            hint = "with w = s / r and h = s * r the ratio h / w is r^2: use the square root of r"
        elif close(got[0] * got[1], size * size):
            hint = "the area s^2 is right but h / w must equal the ratio"
        else:
            hint = "w = s / sqrt(r) and h = s * sqrt(r) give h / w = r and an area w * h = s^2"
        return Result(False, f"{where}; make_base_anchors gives {w:.2f} x {h:.2f}: {hint}.")
    return Result(True, f"your (width, height) match make_base_anchors on {len(_SHAPE_CASES)} "
                        "sizes and ratios: area s^2, h / w = r.")


def _library_count(image_size, stride, sizes, ratios):
    h, w = image_size
    anchors = grid_anchors(make_base_anchors(sizes, ratios), (h // stride, w // stride), stride)
    return anchors.shape[0], int(inside_image(anchors, (h, w)).sum())


def check_anchor_count(fn):
    """fn(image_size=(H, W), stride, sizes, ratios) -> (total anchors, anchors inside the image),
    with a feature map of (H // stride) x (W // stride) (pooling that rounds down)."""
    for image_size, stride, sizes, ratios in _COUNT_CASES:
        got, err = run_safely(fn, image_size, stride, sizes, ratios)
        if err is not None:
            return err
        got, err = _pair(got, "(total, inside)")
        if err is not None:
            return err
        total, inside = _library_count(image_size, stride, sizes, ratios)
        if got == (total, inside):
            continue
        h, w = image_size
        k = len(sizes) * len(ratios)
        where = (f"for a {h} x {w} (H x W) image, stride {stride}, {len(sizes)} sizes x "
                 f"{len(ratios)} ratios you gave ({got[0]:g}, {got[1]:g}), the library gives "
                 f"({total}, {inside})")
        base = make_base_anchors(sizes, ratios)
        ceil_map = (math.ceil(h / stride), math.ceil(w / stride))
        swapped = int(inside_image(grid_anchors(base, (h // stride, w // stride), stride), (w, h)).sum())
        if got[0] == (h // stride) * (w // stride):
            hint = f"each position holds k = {k} anchors: total = H_f * W_f * k"
        elif got[0] == ceil_map[0] * ceil_map[1] * k:
            hint = "use the feature map that rounding down gives: H // stride by W // stride"
        elif got[0] == (h // stride) * (w // stride) * (len(sizes) + len(ratios)):
            hint = "k is the number of sizes TIMES the number of ratios"
        elif got[0] != total:
            hint = "total = (H // stride) * (W // stride) * len(sizes) * len(ratios)"
        elif got[1] == swapped and swapped != inside:
            hint = "inside_image takes image_size as (height, width), not (width, height)"
        elif got[1] == total - inside:
            hint = "you counted the anchors that cross the border; the question asks for those inside"
        else:
            hint = ("count the anchors of grid_anchors(make_base_anchors(sizes, ratios), "
                    "(H // stride, W // stride), stride) for which inside_image is True")
        return Result(False, f"{where}: {hint}.")
    return Result(True, f"your counts match the library on {len(_COUNT_CASES)} images (the "
                        "paper's 1000 x 600 included: 20646 anchors, 8044 inside).")


def expected_labels():
    """The labels of exercise 3, from the library: int64 [8]."""
    valid = inside_image(EX_ANCHORS, EX_IMAGE_SIZE)
    return label_anchors(EX_ANCHORS, EX_BOXES, valid=valid)[0]


def _label_hint(a, got, want):
    """Why anchor ``a`` of the exercise has label ``want`` (the student wrote ``got``)."""
    iou = box_iou(EX_ANCHORS, EX_BOXES)
    valid = inside_image(EX_ANCHORS, EX_IMAGE_SIZE)
    masked = torch.where(valid[:, None], iou, torch.full_like(iou, -1.0))
    best_of = [g for g in range(iou.shape[1]) if masked[a, g] == masked[:, g].max() > 0]
    row_max = float(iou[a].max())
    if not bool(valid[a]):
        return (f"A{a} crosses the image border ({EX_IMAGE_SIZE[1]} x {EX_IMAGE_SIZE[0]}): "
                "cross-border anchors are ignored in training (-1), whatever their IoU, and "
                "cannot be a box's best anchor either")
    if want == 1 and row_max >= 0.7:
        return f"A{a} has IoU {row_max:.2f} >= 0.7 with a box: positive (rule i)"
    if want == 1:
        g = best_of[0]
        ties = [i for i in range(len(EX_ANCHORS)) if masked[i, g] == masked[:, g].max()]
        tie = (f"; it ties with {', '.join(f'A{i}' for i in ties if i != a)} and every tied "
               "anchor is positive") if len(ties) > 1 else ""
        return (f"A{a} is the best valid anchor of G{g} (IoU {float(iou[a, g]):.2f}, read down "
                f"column G{g}): positive by rule (ii), which has no IoU floor{tie}")
    if want == 0:
        return (f"A{a}'s highest IoU over all boxes is {row_max:.2f} < 0.3 and it is no box's "
                "best anchor: negative (0)")
    return (f"A{a}'s highest IoU is {row_max:.2f}: between 0.3 and 0.7 and not a box's best "
            "anchor, so it is ignored (-1)")


def check_labels(labels):
    """labels: 8 values in {1, 0, -1}, one per row of the exercise's IoU matrix."""
    want = expected_labels().tolist()
    try:
        got = [int(v) for v in torch.as_tensor(labels).reshape(-1).tolist()]
    except (TypeError, ValueError, RuntimeError):
        return Result(False, f"give one label (1, 0 or -1) per anchor, got {labels!r}")
    if any(v not in (1, 0, -1) for v in got):
        return Result(False, "labels are 1 (positive), 0 (negative) or -1 (ignored)")
    if len(got) != len(want):
        return Result(False, f"give one label per anchor (row): {len(want)} values, got {len(got)}")
    wrong = [a for a in range(len(want)) if got[a] != want[a]]
    if not wrong:
        return Result(True, f"{want} is what label_anchors returns: A0 by rule (i), A2 and A3 "
                            "(a tie) and A5 by rule (ii), A4 ignored at the border.")
    a = wrong[0]
    more = f" ({len(wrong) - 1} other anchor(s) also differ)" if len(wrong) > 1 else ""
    return Result(False, f"A{a} should be {want[a]}, you wrote {got[a]}: "
                         f"{_label_hint(a, got[a], want[a])}{more}.")


def _library_sample(num_pos, num_neg, batch_size=256, positive_fraction=0.5):
    labels = torch.cat([torch.ones(num_pos, dtype=torch.int64), torch.zeros(num_neg, dtype=torch.int64),
                        torch.full((7,), -1, dtype=torch.int64)])
    out = sample_labels(labels, batch_size, positive_fraction, generator=torch.Generator().manual_seed(0))
    return int((out == 1).sum()), int((out == 0).sum())


def check_sampled_counts(fn):
    """fn(num_pos, num_neg) -> (positives, negatives) kept in the RPN's mini-batch of 256
    anchors with at most half positive (``sample_labels`` defaults)."""
    for num_pos, num_neg in _SAMPLE_CASES:
        got, err = run_safely(fn, num_pos, num_neg)
        if err is not None:
            return err
        got, err = _pair(got, "(positives, negatives)")
        if err is not None:
            return err
        want = _library_sample(num_pos, num_neg)
        if got == want:
            continue
        where = (f"with {num_pos} positive and {num_neg} negative anchors you kept "
                 f"({got[0]:g}, {got[1]:g}), sample_labels keeps {want}")
        if got == (min(num_pos, 128), min(num_neg, 128)):
            hint = ("'128 positives and 128 negatives' means AT MOST 128 positives; the batch is "
                    "then filled up to 256 with negatives")
        elif got[0] + got[1] > 256:
            hint = "the mini-batch holds at most 256 anchors"
        elif got[0] > num_pos or got[1] > num_neg:
            hint = "you cannot keep more anchors of a kind than there are"
        elif got[0] != want[0]:
            hint = "positives kept = min(number of positives, 128)"
        else:
            hint = "negatives kept = min(number of negatives, 256 - positives kept)"
        return Result(False, f"{where}: {hint}.")
    return Result(True, f"your counts match sample_labels on {len(_SAMPLE_CASES)} cases: at most "
                        "128 positives, negatives fill the batch up to 256 when there are enough.")
