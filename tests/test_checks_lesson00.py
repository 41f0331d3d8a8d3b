"""Tests for the lesson 00 checkers: a right answer passes, wrong ones fail with a useful hint,
a stub (NotImplementedError) is reported, never raised."""
import torch

from frcnn_edu import checks
from frcnn_edu.boxes import box_iou, nms
from frcnn_edu.checks import lesson00 as L
from frcnn_edu.evaluation import average_precision


def _stub(*args, **kwargs):
    raise NotImplementedError("replace this line with your answer")


def _iou(a, b, plus=0.0, union_no_minus=False, clamp=True):
    w = min(a[2], b[2]) - max(a[0], b[0]) + plus
    h = min(a[3], b[3]) - max(a[1], b[1]) + plus
    if clamp:
        w, h = max(w, 0.0), max(h, 0.0)
    inter = w * h
    area_a = (a[2] - a[0] + plus) * (a[3] - a[1] + plus)
    area_b = (b[2] - b[0] + plus) * (b[3] - b[1] + plus)
    return inter / (area_a + area_b - (0 if union_no_minus else inter))


def _greedy_nms(boxes, scores, thr):
    order = torch.argsort(scores, descending=True).tolist()
    iou = box_iou(boxes, boxes)
    kept = []
    for i in order:
        if all(iou[j, i] <= thr for j in kept):
            kept.append(i)
    return kept


def test_lesson_module_is_reachable_from_checks():
    assert checks.lesson00 is L


def test_check_iou_right_and_wrong():
    assert L.check_iou(_iou)
    res = L.check_iou(lambda a, b: float(box_iou(torch.tensor([a]), torch.tensor([b]))[0, 0]))
    assert not res and "calls frcnn_edu.boxes.box_iou" in res.message      # write it yourself
    res = L.check_iou(lambda a, b: _iou(a, b, clamp=False))
    assert not res and "clamped at 0" in res.message
    res = L.check_iou(lambda a, b: _iou(a, b, union_no_minus=True))
    assert not res and "minus the intersection" in res.message
    res = L.check_iou(lambda a, b: _iou(a, b, plus=1.0))
    assert not res and "+1" in res.message
    res = L.check_iou(lambda a, b: "half")
    assert not res and "number" in res.message


def test_check_iou_stub_and_crash():
    res = L.check_iou(_stub)
    assert not res and "NotImplementedError" in res.message
    res = L.check_iou(lambda a, b: 1 / 0)
    assert not res and "ZeroDivisionError" in res.message


def test_check_precision_recall():
    tp = sum(L.RANKING[:L.CUTOFF])
    assert L.check_precision_recall(tp / L.CUTOFF, tp / L.NUM_GT)
    assert L.check_precision_recall(0.8, 0.5714)  # rounded, as a student may write them
    res = L.check_precision_recall(tp / L.NUM_GT, tp / L.CUTOFF)
    assert not res and "swapped" in res.message
    res = L.check_precision_recall(sum(L.RANKING) / len(L.RANKING), sum(L.RANKING) / L.NUM_GT)
    assert not res and "top 5" in res.message
    res = L.check_precision_recall(tp / L.CUTOFF, tp / L.CUTOFF)
    assert not res and "ground-truth boxes" in res.message
    assert not L.check_precision_recall(None, 0.5)
    assert not L.check_precision_recall(0.1, 0.2)


def test_check_ap():
    rec, prec = L.precision_recall_curve()
    ap11, ap_area = average_precision(rec, prec, "11point"), average_precision(rec, prec, "area")
    assert L.check_ap(ap11, ap_area)
    assert L.check_ap(round(ap11, 4), round(ap_area, 4))
    res = L.check_ap(ap_area, ap11)
    assert not res and "swapped" in res.message
    raw = float((prec * torch.tensor(L.RANKING, dtype=torch.float64)).sum()) / L.NUM_GT
    res = L.check_ap(ap11, raw)
    assert not res and "interpolated" in res.message
    res = L.check_ap(0.5, ap_area)
    assert not res and "11-point" in res.message
    res = L.check_ap(ap11, 0.1)
    assert not res and "area AP" in res.message
    assert not L.check_ap("x", 0.1)


def test_precision_recall_curve_matches_voc_eval():
    from frcnn_edu.evaluation import voc_eval

    # one image per detection; TP detections sit on their own gt box, FPs far away
    preds, targets = [], []
    box = torch.tensor([[10.0, 10.0, 30.0, 30.0]])
    far = torch.tensor([[100.0, 100.0, 120.0, 120.0]])
    n = len(L.RANKING)
    for i, is_tp in enumerate(L.RANKING):
        preds.append(dict(boxes=box if is_tp else far, labels=torch.tensor([1]),
                          scores=torch.tensor([1.0 - i / n])))
        targets.append(dict(boxes=box if is_tp else torch.zeros(0, 4),
                            labels=torch.tensor([1] if is_tp else [], dtype=torch.int64)))
    missed = L.NUM_GT - sum(L.RANKING)
    for _ in range(missed):
        preds.append(dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64),
                          scores=torch.zeros(0)))
        targets.append(dict(boxes=box, labels=torch.tensor([1])))
    res = voc_eval(preds, targets, num_classes=2)
    rec, prec = L.precision_recall_curve()
    assert torch.allclose(res["recall"][1], rec) and torch.allclose(res["precision"][1], prec)


def test_check_nms_right_and_wrong():
    res = L.check_nms(lambda b, s, t: nms(b, s, t))                # the function it replaces
    assert not res and "calls frcnn_edu.boxes.nms" in res.message
    assert L.check_nms(lambda b, s, t: _greedy_nms(b, s, t)[::-1])  # any order
    assert L.check_nms(_greedy_nms)
    res = L.check_nms(lambda b, s, t: [i for i in _greedy_nms(b, s, t - 1e-6)])
    assert not res and "strictly greater" in res.message

    def suppressed_also_suppress(boxes, scores, thr):
        order = torch.argsort(scores, descending=True).tolist()
        iou, dead, kept = box_iou(boxes, boxes), set(), []
        for pos, i in enumerate(order):
            if i not in dead:
                kept.append(i)
            dead |= {j for j in order[pos + 1:] if iou[i, j] > thr}
        return kept

    res = L.check_nms(suppressed_also_suppress)
    assert not res and "only boxes you keep" in res.message

    def unsorted(boxes, scores, thr):
        iou, kept = box_iou(boxes, boxes), []
        for i in range(len(boxes)):
            if all(iou[j, i] <= thr for j in kept):
                kept.append(i)
        return kept

    res = L.check_nms(unsorted)
    assert not res and "decreasing score" in res.message
    res = L.check_nms(lambda b, s, t: [0])
    assert not res and "expected set()" in res.message     # the smallest case: no boxes


def test_check_nms_stub_and_bad_return():
    res = L.check_nms(_stub)
    assert not res and "not filled in" in res.message
    res = L.check_nms(lambda b, s, t: "all")
    assert not res and "indices" in res.message


def test_result_repr():
    assert repr(L.check_iou(_iou)).startswith("Correct: ")
    assert repr(L.check_iou(_stub)).startswith("Not yet: ")
