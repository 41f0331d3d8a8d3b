"""Checkers for lesson 03 (anchors, IoU labeling and balanced sampling).

    check_anchor_shape(fn)      fn(size, ratio) -> (width, height) of the anchor
    check_grid_anchors(fn)      fn(base_anchors, feature_size, stride) -> the [H, W, k] anchors
    check_anchor_count(fn)      fn(image_size, stride, sizes, ratios) -> (total, inside)
    check_labels(labels)        labels of EX_ANCHORS for EX_BOXES in EX_IMAGE_SIZE, by hand
    check_label_anchors(fn)     fn(anchors, gt_boxes, pos_iou, neg_iou, valid) -> labels, the four rules
    check_sampled_counts(fn)    fn(num_pos, num_neg) -> (positives, negatives) in the 256 batch

Each compares with the library (``frcnn_edu.anchors``, ``frcnn_edu.matching``) and names the
likely slip when the answer is wrong.
"""
import math

import torch

from frcnn_edu.anchors import grid_anchors, inside_image, make_base_anchors
from frcnn_edu.boxes import box_iou
from frcnn_edu.matching import label_anchors, sample_labels

from . import harness
from .result import REFERENCES, Result, exercise, not_filled_in

__all__ = ["EX_ANCHORS", "EX_BOXES", "EX_IMAGE_SIZE", "expected_labels", "check_anchor_shape",
           "GRID_ARGS", "check_grid_anchors", "check_anchor_count", "check_labels",
           "check_label_anchors", "check_sampled_counts"]

#: Exercise 4: eight anchors (rows of the IoU matrix) ...
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


def _shape_cases():
    g = harness.seeded(30)
    cases = list(_SHAPE_CASES) + [(1, 1.0), (64, 4.0)]
    for _ in range(20):
        size = float(torch.randint(4, 600, (1,), generator=g))
        ratio = round(float(torch.exp((torch.rand(1, generator=g) - 0.5) * 3)), 3)
        cases.append((size, ratio))
    return cases


def _pair_of_floats(value, args):
    got, err = _pair(value, "(width, height)")
    if err is not None:
        raise harness.Wrong(err.message)
    return got


def _shape_variants(size, ratio):
    w, h = _library_shape(size, ratio)
    return [("width and height are swapped: the ratio is h / w, so a ratio above 1 is a tall "
             "anchor (w = s / sqrt(r), h = s * sqrt(r))", (h, w)),
            ("with w = s / r and h = s * r the ratio h / w is r^2: use the square root of r",
             (size / ratio, size * ratio))]


def _shape_hint(args, got, want):
    if math.isclose(got[0] * got[1], args[0] ** 2, rel_tol=1e-4):
        return "the area s^2 is right but h / w must equal the ratio"
    return "w = s / sqrt(r) and h = s * sqrt(r) give h / w = r and an area w * h = s^2"


@exercise("lesson03.anchor_shape")
def check_anchor_shape(fn):
    """fn(size, ratio) -> (width, height) of the anchor of that size and ratio (h / w)."""
    cases = _shape_cases()
    return harness.check_function(
        fn, _library_shape, cases, harness.close(rtol=1e-4, atol=1e-3), convert=_pair_of_floats,
        variants=_shape_variants, hint=_shape_hint, name="anchor_shape",
        forbidden=["frcnn_edu.anchors.make_base_anchors"],
        passed=f"your (width, height) match make_base_anchors on {len(cases)} sizes and ratios: "
               "area s^2, h / w = r.")


# ------------------------------------------------------------- exercise 2: the anchor grid
#: The order of the arguments of ``my_grid_anchors`` (it is called positionally, as the RPN
#: calls its ``anchor_fn``): base_anchors [k, 4], feature_size (H, W), stride (a number).
GRID_ARGS = ("base_anchors", "feature_size", "stride")


def _slip_grid(base_anchors, feature_size, stride, order="hwk", offset=0.5, swap_xy=False):
    """The anchors of an H x W map with one rule changed (the defaults give grid_anchors'):
    `order` of the flattening ("hwk", "khw" k outermost, "whk" x before y), the centre's
    `offset` in cells, `swap_xy` the column centre added to the y coordinates."""
    H, W = feature_size
    base = base_anchors.double()
    cy = (torch.arange(H, dtype=torch.float64) + offset) * stride
    cx = (torch.arange(W, dtype=torch.float64) + offset) * stride
    cy, cx = torch.meshgrid(cy, cx, indexing="ij")                      # [H, W]
    shifts = torch.stack((cy, cx, cy, cx) if swap_xy else (cx, cy, cx, cy), -1)
    if order == "khw":
        return (base[:, None, None] + shifts[None]).reshape(-1, 4)       # [k, H, W]
    if order == "whk":
        shifts = shifts.transpose(0, 1)                                  # [W, H]
    return (shifts[:, :, None] + base[None, None]).reshape(-1, 4)        # [H, W, k]


_GRID_SLIPS = (
    (dict(order="khw"), "the anchors are ordered [H, W, k]: the k shapes of one position come "
                        "together (k is the innermost index, (y * W + x) * k + a), the order "
                        "of the RPN's outputs; you put k outermost ([k, H, W])"),
    (dict(order="whk"), "y (the row) is the outer index and x (the column) the inner one: "
                        "anchor (y * W + x) * k + a; you ordered the positions x first"),
    (dict(swap_xy=True), "a box is (x1, y1, x2, y2): the column's centre (x + 0.5) * stride "
                         "goes to x1 and x2, the row's centre (y + 0.5) * stride to y1 and y2"),
    (dict(offset=0.0), "the centres sit in the middle of the cells, ((x + 0.5) * stride, "
                       "(y + 0.5) * stride); x * stride is the cell's corner, half a stride off "
                       "(torchvision's convention, not the course's)"),
    (dict(offset=1.0), "the middle of cell x is at (x + 0.5) * stride, not (x + 1) * stride"),
)


def _grid_cases():
    """(base_anchors, (H, W), stride): the lesson's 10 x 10 map, small and non-square maps,
    k = 1, a 1 x 1 map, zero-size grids, the paper's 37 x 62 map, base anchors that are not
    centred on (0, 0), then 20 seeded random ones."""
    g = harness.seeded(34)
    course = make_base_anchors((20, 40, 80), (0.5, 1.0, 2.0))
    cases = [(course, (10, 10), 16), (course, (2, 3), 16), (course, (3, 2), 16),
             (make_base_anchors((32,), (1.0,)), (3, 2), 8), (course, (1, 1), 16),
             (course, (0, 4), 16), (course, (3, 0), 16), (course, (0, 0), 16),
             (make_base_anchors((128, 256, 512), (0.5, 1.0, 2.0)), (37, 62), 16),
             (harness.random_boxes(3, g, extent=40, integer=True) - 40, (2, 4), 32)]
    for i in range(20):
        k = 1 + i % 5
        if i % 2:                                       # any boxes: the shifts are added to them
            base = harness.random_boxes(k, g, extent=30, min_size=2, max_size=40) - 30
        else:
            sizes = torch.randint(4, 100, (k,), generator=g).tolist()
            base = make_base_anchors(sizes, (1.0,))
        H, W = (int(v) for v in torch.randint(0 if i % 7 == 3 else 1, 7, (2,), generator=g))
        cases.append((base, (H, W), (4, 8, 16, 32)[i % 4]))
    return cases


def _grid_shape(args):
    base, (H, W), _ = args
    return H * W * len(base), 4


def _describe_grid(args):
    base, feature_size, stride = args
    return (f"base_anchors [k = {len(base)}, 4] = {harness.show(base)}, "
            f"feature_size={tuple(feature_size)}, stride={stride}")


@exercise("lesson03.grid_anchors")
def check_grid_anchors(fn):
    """fn(base_anchors [k, 4], feature_size (H, W), stride) -> [H * W * k, 4], the anchors of
    `grid_anchors` in its order [H, W, k]. Called positionally, as the RPN calls `anchor_fn`."""
    cases = _grid_cases()
    return harness.check_function(
        fn, grid_anchors, cases, harness.close(rtol=1e-6, atol=1e-4),
        convert=harness.as_float_tensor(_grid_shape, "the anchors"),
        variants=lambda *args: [(hint, _slip_grid(*args, **switches))
                                for switches, hint in _GRID_SLIPS],
        hint="anchor (y * W + x) * k + a is base_anchors[a] shifted by (cx, cy, cx, cy), with "
             "cx = (x + 0.5) * stride and cy = (y + 0.5) * stride",
        describe=_describe_grid, name="my_grid_anchors",
        forbidden=["frcnn_edu.anchors.grid_anchors",
                   "frcnn_edu.widgets.anchor_labeling.image_anchors"],
        passed=f"your anchors equal grid_anchors', in its [H, W, k] order, on {len(cases)} "
               "maps (k = 1 to 9, a 1 x 1 map, maps with no position, the paper's 37 x 62).")


def _library_count(image_size, stride, sizes, ratios):
    h, w = image_size
    anchors = grid_anchors(make_base_anchors(sizes, ratios), (h // stride, w // stride), stride)
    return anchors.shape[0], int(inside_image(anchors, (h, w)).sum())


def _count_cases():
    """The hand-made images, then 20 seeded random ones (odd sizes, strides 4 to 32)."""
    g = harness.seeded(31)
    cases = list(_COUNT_CASES) + [((40, 40), 16, (8,), (1.0,))]
    for i in range(20):
        h, w = (int(x) for x in torch.randint(33, 700, (2,), generator=g))
        sizes = tuple(sorted({int(x) for x in torch.randint(8, 300, (1 + i % 3,), generator=g)}))
        cases.append(((h, w), (4, 8, 16, 32)[i % 4], sizes, ((1.0,), (0.5, 1.0, 2.0))[i % 2]))
    return cases


def _count_variants(image_size, stride, sizes, ratios):
    """(hint, predicate on the student's (total, inside)) of the usual slips."""
    h, w = image_size
    total, inside = _library_count(image_size, stride, sizes, ratios)
    k, cells = len(sizes) * len(ratios), (h // stride) * (w // stride)
    ceil_cells = math.ceil(h / stride) * math.ceil(w / stride)
    base = make_base_anchors(sizes, ratios)
    swapped = int(inside_image(grid_anchors(base, (h // stride, w // stride), stride), (w, h)).sum())
    return [
        ("each position holds k = len(sizes) * len(ratios) anchors: total = H_f * W_f * k",
         lambda got: got[0] == cells != total),
        ("use the feature map that rounding down gives: H // stride by W // stride",
         lambda got: got[0] == ceil_cells * k),
        ("k is the number of sizes TIMES the number of ratios",
         lambda got: got[0] == cells * (len(sizes) + len(ratios))),
        ("inside_image takes image_size as (height, width), not (width, height)",
         lambda got: got == (total, swapped)),
        ("you counted the anchors that cross the border; the question asks for those inside",
         lambda got: got == (total, total - inside)),
    ]


def _count_hint(args, got, want):
    if got[0] != want[0]:
        return "total = (H // stride) * (W // stride) * len(sizes) * len(ratios)"
    return ("count the anchors of grid_anchors(make_base_anchors(sizes, ratios), "
            "(H // stride, W // stride), stride) for which inside_image is True")


@exercise("lesson03.anchor_count")
def check_anchor_count(fn):
    """fn(image_size=(H, W), stride, sizes, ratios) -> (total anchors, anchors inside the image),
    with a feature map of (H // stride) x (W // stride) (pooling that rounds down)."""
    cases = _count_cases()
    return harness.check_function(
        fn, _library_count, cases, lambda got, want, args: tuple(got) == tuple(want),
        convert=_pair_of_floats, variants=_count_variants, hint=_count_hint, name="count_anchors",
        passed=f"your counts match the library on {len(cases)} images (the paper's 1000 x 600 "
               "included: 20646 anchors, 8044 inside).")


def expected_labels():
    """The labels of exercise 4, from the library: int64 [8]."""
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


@exercise("lesson03.labels_by_hand")
def check_labels(labels):
    """labels: 8 values in {1, 0, -1}, one per row of the exercise's IoU matrix."""
    want = expected_labels().tolist()
    if labels is None:
        return not_filled_in()
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


# ------------------------------------------------------------- exercise: the labeling rules
def _labeling_cases():
    """(anchors, gt_boxes, pos_iou, neg_iou, valid): the by-hand exercise, no boxes, no anchors,
    a tie, a box whose best anchor has IoU < 0.3 (rule ii has no floor), a box whose best
    anchor crosses the border, then 24 seeded random scenes on a coarse grid (ties happen)."""
    g = harness.seeded(33)
    ex_valid = inside_image(EX_ANCHORS, EX_IMAGE_SIZE)
    tie = torch.tensor([[0.0, 0, 10, 10], [10, 0, 20, 10], [40, 40, 50, 50]])
    cases = [
        (EX_ANCHORS, EX_BOXES, 0.7, 0.3, ex_valid),
        (EX_ANCHORS, torch.zeros(0, 4), 0.7, 0.3, ex_valid),
        (torch.zeros(0, 4), EX_BOXES, 0.7, 0.3, torch.zeros(0, dtype=torch.bool)),
        (tie, torch.tensor([[5.0, 0, 15, 10]]), 0.7, 0.3, torch.ones(3, dtype=torch.bool)),
        (tie, torch.tensor([[8.0, 8, 12, 12]]), 0.7, 0.3, torch.ones(3, dtype=torch.bool)),
        (tie, torch.tensor([[0.0, 0, 10, 10]]), 0.7, 0.3, torch.tensor([False, True, True])),
    ]
    for i in range(24):
        anchors = harness.random_boxes(4 + i % 17, g, extent=40, min_size=4, max_size=24,
                                       integer=True)
        gt = harness.random_boxes(i % 4, g, extent=40, min_size=4, max_size=24, integer=True)
        valid = inside_image(anchors, (56, 56)) if i % 3 else torch.ones(len(anchors), dtype=torch.bool)
        cases.append((anchors, gt, (0.7, 0.5)[i % 2], (0.3, 0.2)[i % 2], valid))
    return cases


def _library_labels(anchors, gt_boxes, pos_iou, neg_iou, valid):
    return label_anchors(anchors, gt_boxes, pos_iou, neg_iou, valid=valid)[0]


def _labels_of(got, args):
    if isinstance(got, (tuple, list)) and len(got) == 2 and torch.is_tensor(got[0]):
        got = got[0]                                   # (labels, matched) is fine too
    try:
        t = torch.as_tensor(got).reshape(-1).long()
    except (TypeError, ValueError, RuntimeError):
        raise harness.Wrong(f"return the labels as a tensor of 1 / 0 / -1, got {type(got).__name__}")
    if len(t) != len(args[0]):
        raise harness.Wrong(f"return one label per anchor ({len(args[0])}), got {len(t)}")
    return t


def _labeling_variants(anchors, gt_boxes, pos_iou, neg_iou, valid):
    """(hint, labels of that slip) for the usual misreadings of sec. 3.1.2."""
    A, G = len(anchors), len(gt_boxes)
    if A == 0 or G == 0:
        return []
    iou = box_iou(anchors, gt_boxes)
    iou = torch.where(valid[:, None], iou, torch.full_like(iou, -1.0))
    row = iou.max(1).values
    col = iou.max(0).values
    best = (iou == col) & (col > 0)
    first = torch.zeros_like(best)
    first[iou.argmax(0), torch.arange(G)] = True
    first &= col > 0

    def rules(pos, neg_first=False, strict=False, use_valid=True):
        lab = torch.full((A,), -1)
        r = row if use_valid else box_iou(anchors, gt_boxes).max(1).values
        above = r > pos_iou if strict else r >= pos_iou
        negative = (r >= 0) & (r < neg_iou)
        if neg_first:
            lab[above | pos] = 1
            lab[negative] = 0
        else:
            lab[negative] = 0
            lab[above | pos] = 1
        return lab

    none = torch.zeros(A, dtype=torch.bool)
    return [
        ("rule (ii): the anchor with the highest IoU for each gt box is positive too, whatever "
         "its IoU (read the IoU matrix down each column)", rules(none)),
        ("rule (ii) has no IoU floor: a box's best anchor is positive even below 0.3 (it beats "
         "the negative rule)", rules(best.any(1), neg_first=True)),
        ("rule (ii) with ties: EVERY anchor that shares a box's highest IoU is positive, not only "
         "the first (argmax picks one)", rules(first.any(1))),
        ("rule (i) is IoU >= pos_iou (an IoU of exactly 0.7 is positive)",
         rules(best.any(1), strict=True)),
        ("anchors that cross the border (valid False) are ignored (-1), and cannot be a box's "
         "best anchor", rules(((box_iou(anchors, gt_boxes) == box_iou(anchors, gt_boxes).max(0).values)
                               & (box_iou(anchors, gt_boxes).max(0).values > 0)).any(1),
                              use_valid=False)),
    ]


@exercise("lesson03.label_anchors")
def check_label_anchors(fn):
    """fn(anchors [A, 4], gt_boxes [G, 4], pos_iou, neg_iou, valid [A] bool) -> labels [A]
    (1 / 0 / -1) by the four rules of Faster R-CNN sec. 3.1.2, like `label_anchors`."""
    cases = _labeling_cases()
    return harness.check_function(
        fn, _library_labels, cases, lambda got, want, args: torch.equal(got, want),
        convert=_labels_of, variants=_labeling_variants, name="my_label_anchors",
        hint="positive: IoU >= pos_iou with some box, or the best valid anchor(s) of some box "
             "(IoU > 0); negative: otherwise max IoU < neg_iou; the rest and invalid anchors -1",
        forbidden=["frcnn_edu.matching.label_anchors"],
        passed=f"your labels equal label_anchors' on {len(cases)} scenes (ties, no boxes, no "
               "anchors, rule (ii) below 0.3, border-crossing anchors).")


def _library_sample(num_pos, num_neg, batch_size=256, positive_fraction=0.5):
    labels = torch.cat([torch.ones(num_pos, dtype=torch.int64), torch.zeros(num_neg, dtype=torch.int64),
                        torch.full((7,), -1, dtype=torch.int64)])
    out = sample_labels(labels, batch_size, positive_fraction, generator=torch.Generator().manual_seed(0))
    return int((out == 1).sum()), int((out == 0).sum())


def _sample_cases():
    g = harness.seeded(32)
    cases = list(_SAMPLE_CASES) + [(0, 0), (128, 128), (1, 0)]
    for _ in range(20):
        cases.append(tuple(int(x) for x in torch.randint(0, 400, (2,), generator=g)))
    return cases


def _sample_hint(args, got, want):
    num_pos, num_neg = args
    if got == (min(num_pos, 128), min(num_neg, 128)):
        return ("'128 positives and 128 negatives' means AT MOST 128 positives; the batch is "
                "then filled up to 256 with negatives")
    if got[0] + got[1] > 256:
        return "the mini-batch holds at most 256 anchors"
    if got[0] > num_pos or got[1] > num_neg:
        return "you cannot keep more anchors of a kind than there are"
    if got[0] != want[0]:
        return "positives kept = min(number of positives, 128)"
    return "negatives kept = min(number of negatives, 256 - positives kept)"


@exercise("lesson03.sampled_counts")
def check_sampled_counts(fn):
    """fn(num_pos, num_neg) -> (positives, negatives) kept in the RPN's mini-batch of 256
    anchors with at most half positive (``sample_labels`` defaults)."""
    cases = _sample_cases()
    return harness.check_function(
        fn, _library_sample, cases, lambda got, want, args: tuple(got) == tuple(want),
        convert=_pair_of_floats, hint=_sample_hint, name="sampled_counts",
        forbidden=["frcnn_edu.matching.sample_labels"],
        passed=f"your counts match sample_labels on {len(cases)} cases: at most 128 positives, "
               "negatives fill the batch up to 256 when there are enough.")


REFERENCES.update({"lesson03.grid_anchors": grid_anchors,
                   "lesson03.anchor_count": _library_count,
                   "lesson03.label_anchors": _library_labels,
                   "lesson03.sampled_counts": _library_sample})
