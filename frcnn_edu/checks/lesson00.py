"""Checkers for lesson 00 (the pipeline, IoU, NMS and how detectors are scored).

    check_iou(fn)                        fn(box_a, box_b) -> float, two boxes (x1, y1, x2, y2)
    check_precision_recall(p, r)         after the top CUTOFF detections of RANKING
    check_ap(ap_11point, ap_area)        AP of RANKING (NUM_GT ground-truth boxes)
    check_nms(fn)                        fn(boxes [N, 4], scores [N], iou_threshold) -> kept indices

Each compares with the library (``frcnn_edu.boxes.box_iou`` / ``nms``,
``frcnn_edu.evaluation.average_precision``) and names the likely slip when the answer is wrong.
"""
import torch

from frcnn_edu.boxes import box_iou, nms
from frcnn_edu.evaluation import average_precision

from . import harness
from .result import Result, exercise, not_filled_in

__all__ = ["RANKING", "NUM_GT", "CUTOFF", "NMS_BOXES", "NMS_SCORES", "check_iou",
           "check_precision_recall", "check_ap", "check_nms", "precision_recall_curve"]

#: The exercise's detections of one class, best score first: True = TP, False = FP.
RANKING = (True, True, False, True, True, False, True, True, False, False)
#: Ground-truth boxes of that class (one is never found).
NUM_GT = 7
#: Precision and recall are asked after this many detections.
CUTOFF = 5

#: The lesson's NMS example: box 1 overlaps box 0, box 4 overlaps box 1 but not box 0 enough.
NMS_BOXES = torch.tensor([[10.0, 10.0, 50.0, 50.0], [20.0, 10.0, 60.0, 50.0],
                          [40.0, 40.0, 80.0, 80.0], [60.0, 10.0, 90.0, 40.0],
                          [30.0, 10.0, 70.0, 50.0]])
NMS_SCORES = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5])

# (box_a, box_b) pairs: overlap, containment, disjoint, touching, identical, fractional.
_IOU_CASES = (
    ((10.0, 10.0, 50.0, 40.0), (30.0, 20.0, 70.0, 60.0)),
    ((0.0, 0.0, 100.0, 100.0), (20.0, 30.0, 60.0, 50.0)),
    ((0.0, 0.0, 10.0, 10.0), (20.0, 25.0, 40.0, 45.0)),
    ((0.0, 0.0, 10.0, 10.0), (10.0, 0.0, 20.0, 10.0)),
    ((5.0, 5.0, 25.0, 15.0), (5.0, 5.0, 25.0, 15.0)),
    ((2.5, 1.25, 7.75, 9.5), (4.0, 0.5, 12.0, 6.0)),
)


def precision_recall_curve(ranking=RANKING, num_gt=NUM_GT):
    """(recall [D], precision [D]) float64 after each detection of a ranked TP/FP list."""
    tp = torch.cumsum(torch.tensor(ranking, dtype=torch.float64), 0)
    k = torch.arange(1, len(ranking) + 1, dtype=torch.float64)
    return tp / num_gt, tp / k


def _iou_hint(a, b, got):
    """Name the slip behind a wrong IoU of boxes a, b (tensors [4])."""
    lt, rb = torch.maximum(a[:2], b[:2]), torch.minimum(a[2:], b[2:])
    w, h = (rb - lt).tolist()
    area = lambda t: float((t[2] - t[0]) * (t[3] - t[1]))  # noqa: E731
    inter = max(w, 0.0) * max(h, 0.0)
    unclamped = w * h / (area(a) + area(b) - w * h) if area(a) + area(b) != w * h else None
    wrong = {
        "overlap width and height must be clamped at 0 (disjoint boxes have no intersection)":
            unclamped if w * h != 0 else None,
        "the union is area(a) + area(b) minus the intersection (it is counted twice otherwise)":
            inter / (area(a) + area(b)),
        "width is x2 - x1, without the +1 of pixel-index conventions":
            _plus_one_iou(a, b),
        "divide the intersection by the union, not by the smaller box":
            inter / min(area(a), area(b)),
    }
    for hint, value in wrong.items():
        if value is not None and abs(got - value) < 1e-4:
            return hint
    return ("intersection = overlap width x overlap height, with the overlap from max(x1), "
            "max(y1) to min(x2), min(y2); IoU = intersection / union")


def _plus_one_iou(a, b):
    a1, b1 = a.clone(), b.clone()
    a1[2:] += 1
    b1[2:] += 1
    return float(box_iou(a1[None], b1[None])[0, 0])


def _iou_cases():
    """(box_a, box_b) pairs: the hand-made edge cases, then 30 seeded random pairs on a coarse
    integer grid (so touching, nested, identical and disjoint pairs come up too)."""
    g = harness.seeded(0)
    cases = list(_IOU_CASES) + [((0.0, 0.0, 10.0, 10.0), (0.0, 10.0, 10.0, 20.0)),   # edge only
                                ((0.0, 0.0, 10.0, 10.0), (10.0, 10.0, 20.0, 20.0))]  # corner only
    for _ in range(30):
        a, b = harness.random_boxes(2, g, extent=30, max_size=30, integer=True).tolist()
        cases.append((tuple(a), tuple(b)))
    return cases


def _library_iou(box_a, box_b):
    a, b = torch.tensor([box_a], dtype=torch.float64), torch.tensor([box_b], dtype=torch.float64)
    return float(box_iou(a, b)[0, 0])


def _as_number(got, args):
    try:
        return float(got)
    except (TypeError, ValueError, RuntimeError):
        raise harness.Wrong(f"iou should return a number, got {type(got).__name__}")


@exercise("lesson00.iou")
def check_iou(fn):
    """fn(box_a, box_b) -> IoU as a number, for boxes given as 4 floats (x1, y1, x2, y2)."""
    cases = _iou_cases()
    return harness.check_function(
        fn, _library_iou, cases, harness.close(atol=1e-4, rtol=1e-4), convert=_as_number,
        forbidden=["frcnn_edu.boxes.box_iou", "torchvision.ops.box_iou"], name="iou",
        hint=lambda args, got, want: _iou_hint(*(torch.tensor(b, dtype=torch.float64)
                                                 for b in args), got),
        passed=f"your IoU matches frcnn_edu.boxes.box_iou on {len(cases)} pairs (overlapping, "
               "nested, disjoint, touching, identical, random).")


@exercise("lesson00.precision_recall")
def check_precision_recall(precision, recall):
    """Precision and recall after the top CUTOFF detections of RANKING (NUM_GT gt boxes)."""
    rec, prec = precision_recall_curve()
    p, r = float(prec[CUTOFF - 1]), float(rec[CUTOFF - 1])
    if precision is None or recall is None:
        return not_filled_in()
    try:
        precision, recall = float(precision), float(recall)
    except (TypeError, ValueError):
        return Result(False, "give precision and recall as two numbers")
    close = lambda x, y: abs(x - y) < 1e-3  # noqa: E731
    if close(precision, p) and close(recall, r):
        return Result(True, f"precision {p:.3f} (TPs / detections so far) and recall {r:.3f} "
                            f"(TPs / ground-truth boxes) after the top {CUTOFF}.")
    if close(precision, r) and close(recall, p):
        return Result(False, "precision and recall are swapped: precision divides the true "
                             "positives by the detections kept, recall by the ground-truth boxes.")
    if close(precision, float(prec[-1])) or close(recall, float(rec[-1])):
        return Result(False, f"count only the top {CUTOFF} detections (the cut-off), not all "
                             f"{len(RANKING)}.")
    if close(recall, p):
        return Result(False, f"recall divides by the number of ground-truth boxes ({NUM_GT}), "
                             "not by the number of detections.")
    return Result(False, f"among the top {CUTOFF}: precision = TP / {CUTOFF}, recall = TP / "
                         f"{NUM_GT}.")


@exercise("lesson00.ap")
def check_ap(ap_11point, ap_area):
    """AP of RANKING with NUM_GT gt boxes: VOC 2007 11-point and VOC 2010+ area versions."""
    rec, prec = precision_recall_curve()
    e11, earea = average_precision(rec, prec, "11point"), average_precision(rec, prec, "area")
    if ap_11point is None or ap_area is None:
        return not_filled_in()
    try:
        a11, aarea = float(ap_11point), float(ap_area)
    except (TypeError, ValueError):
        return Result(False, "give the two APs as numbers")
    close = lambda x, y: abs(x - y) < 1e-3  # noqa: E731
    if close(a11, e11) and close(aarea, earea):
        return Result(True, f"11-point AP {e11:.4f} and area AP {earea:.4f} match "
                            "frcnn_edu.evaluation.average_precision.")
    if close(a11, earea) and close(aarea, e11):
        return Result(False, "the two APs are swapped.")
    raw = float((prec * torch.tensor(RANKING, dtype=torch.float64)).sum() / NUM_GT)
    if close(aarea, raw) or close(a11, raw):
        return Result(False, "use the interpolated precision: at each recall, the highest "
                             "precision reached at that recall *or any higher one*.")
    if not close(a11, e11):
        return Result(False, "11-point AP: for r = 0, 0.1, ..., 1.0 take the highest precision "
                             "among detections whose recall is >= r (0 if none), then average "
                             "the 11 values. Recall never reaches 1 here.")
    return Result(False, "area AP: sum over the recall steps of (increase in recall) x "
                         "(interpolated precision at the new recall).")


def _nms_cases():
    """(boxes, scores, threshold) cases: no boxes, one box, the lesson's example, a tie at the
    threshold, chains, unsorted scores and seeded random clusters."""
    g = torch.Generator().manual_seed(0)
    chain = torch.tensor([[0.0, 0, 10, 10], [3, 0, 13, 10], [6, 0, 16, 10], [9, 0, 19, 10]])
    cases = [
        (torch.zeros(0, 4), torch.zeros(0), 0.5),                      # no boxes: keep none
        (torch.tensor([[5.0, 5, 20, 30]]), torch.tensor([0.3]), 0.5),  # one box: keep it
        (NMS_BOXES, NMS_SCORES, 0.5),                                  # the lesson's example
        (torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 5], [20, 20, 30, 30]]),
         torch.tensor([0.9, 0.8, 0.7]), 0.5),                        # IoU exactly 0.5: kept
        (chain, torch.tensor([0.9, 0.8, 0.7, 0.6]), 0.3),             # suppressed cannot suppress
        (chain.flip(0), torch.tensor([0.6, 0.7, 0.8, 0.9]), 0.3),     # scores not sorted
    ]
    for n, thr, spread in ((30, 0.5, 80), (40, 0.3, 80), (25, 0.7, 15)):
        xy = torch.rand(n, 2, generator=g) * spread
        wh = 15 + torch.rand(n, 2, generator=g) * 30
        cases.append((torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g), thr))
    for i in range(20):                                                # small random clusters
        n, thr = 2 + i % 9, (0.3, 0.5, 0.7)[i % 3]
        cases.append((harness.random_boxes(n, g, extent=30, min_size=8, max_size=30),
                      torch.rand(n, generator=g), thr))
    return cases


def _greedy(iou, visit, over, suppressed_suppress=False):
    """Kept set of a greedy pass over ``visit`` (the slips below change one detail of it)."""
    kept, dead = [], set()
    for pos, i in enumerate(visit):
        if i not in dead:
            kept.append(i)
        if i not in dead or suppressed_suppress:
            dead |= {j for j in visit[pos + 1:] if over(float(iou[i, j]))}
    return set(kept)


def _variants(boxes, scores, thr):
    """Kept sets of the usual slips: {hint: set of kept indices}."""
    order = torch.sort(scores, descending=True, stable=True).indices.tolist()
    iou = box_iou(boxes, boxes)
    gt, ge = (lambda v: v > thr), (lambda v: v >= thr)
    return {
        "suppress a box only when its IoU with a kept box is strictly greater than the "
        "threshold (IoU == threshold is kept)": _greedy(iou, order, ge),
        "only boxes you keep may suppress others: a box that was itself suppressed "
        "suppresses nothing": _greedy(iou, order, gt, suppressed_suppress=True),
        "visit the boxes in order of decreasing score": _greedy(iou, list(range(len(scores))), gt),
    }


def _as_index_set(got, args):
    try:
        return {int(i) for i in torch.as_tensor(got).reshape(-1).tolist()}
    except (TypeError, ValueError, RuntimeError):
        raise harness.Wrong(f"return the kept indices as a list or tensor, got {type(got).__name__}")


def _nms_hint(args, got, want):
    boxes, scores, thr = args
    return next((h for h, v in _variants(boxes, scores, thr).items() if v == got),
                "visit boxes best score first; keep a box unless a kept box overlaps it with "
                "IoU > threshold")


@exercise("lesson00.nms")
def check_nms(fn):
    """fn(boxes [N, 4], scores [N], iou_threshold) -> indices of the kept boxes (any order)."""
    cases = _nms_cases()
    return harness.check_function(
        fn, lambda b, s, t: set(nms(b, s, t).tolist()), cases, lambda got, want, args: got == want,
        convert=_as_index_set, hint=_nms_hint, name="nms",
        forbidden=["frcnn_edu.boxes.nms", "frcnn_edu.boxes.nms_loop", "frcnn_edu.boxes.batched_nms",
                   "frcnn_edu.kernels.nms.nms_sorted", "torchvision.ops.nms",
                   "torchvision.ops.batched_nms"],
        passed=f"your NMS keeps the same boxes as frcnn_edu.boxes.nms on {len(cases)} cases (no "
               "boxes, ties at the threshold, chains, unsorted scores, random clusters).")
