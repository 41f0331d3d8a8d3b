"""Tests for frcnn_edu.evaluation: VOC AP (hand-computed curves), matching rules, proposal recall."""
import math

import numpy as np
import pytest
import torch

from frcnn_edu.evaluation import (COCO_IOU_THRESHOLDS, average_precision, average_recall,
                                  proposal_recall, voc_eval)

G1, G2 = [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]
MISS = [50.0, 50.0, 60.0, 60.0]


def pred(boxes, scores, labels=None, device="cpu"):
    boxes = torch.tensor(boxes, dtype=torch.float32, device=device).reshape(-1, 4)
    labels = [1] * len(boxes) if labels is None else labels
    return dict(boxes=boxes, scores=torch.tensor(scores, dtype=torch.float32, device=device),
                labels=torch.tensor(labels, dtype=torch.int64, device=device))


def target(boxes, labels=None, difficult=None, device="cpu"):
    boxes = torch.tensor(boxes, dtype=torch.float32, device=device).reshape(-1, 4)
    labels = [1] * len(boxes) if labels is None else labels
    out = dict(boxes=boxes, labels=torch.tensor(labels, dtype=torch.int64, device=device))
    if difficult is not None:
        out["difficult"] = torch.tensor(difficult, dtype=torch.bool, device=device)
    return out


# --- average_precision on a hand-computed curve -------------------------------------------------
# 3 detections, 2 gt boxes: TP, FP, TP -> recall (.5, .5, 1), precision (1, .5, 2/3).
# area:   envelope (1, 2/3 after the FP) -> 0.5 * 1 + 0.5 * 2/3 = 5/6
# 11pt:   t = 0 .. 0.5 (6 levels) -> 1;  t = 0.6 .. 1 (5 levels) -> 2/3  => (6 + 10/3) / 11 = 28/33
REC, PREC = [0.5, 0.5, 1.0], [1.0, 0.5, 2 / 3]


def test_average_precision_hand_computed():
    assert average_precision(REC, PREC, "area") == pytest.approx(5 / 6)
    assert average_precision(REC, PREC, "11point") == pytest.approx(28 / 33)


def test_average_precision_envelope_and_partial_recall():
    # recall stops at 0.6: area = 0.2 * 1 + 0.4 * 0.8 (envelope lifts the 0.5) = 0.52
    rec, prec = torch.tensor([0.2, 0.4, 0.6]), torch.tensor([1.0, 0.5, 0.8])
    assert average_precision(rec, prec, "area") == pytest.approx(0.2 + 0.4 * 0.8)
    # 11pt: t=0,.1,.2 -> 1 ; t=.3..,.6 (4 levels) -> 0.8 ; t=.7..1 -> 0  => (3 + 3.2) / 11
    assert average_precision(rec, prec, "11point") == pytest.approx(6.2 / 11)


def test_average_precision_11point_exact_levels():
    # recall exactly 0.3 must reach the level 0.3 (numpy.arange(0, 1.1, 0.1) would miss it)
    assert average_precision([0.3], [1.0], "11point") == pytest.approx(4 / 11)


def test_average_precision_empty_and_perfect():
    for method in ("area", "11point"):
        assert average_precision([], [], method) == 0.0
        assert average_precision([1.0], [1.0], method) == pytest.approx(1.0)


def test_average_precision_bad_input():
    with pytest.raises(ValueError, match="same length"):
        average_precision([0.5, 1.0], [1.0])
    with pytest.raises(ValueError, match="method"):
        average_precision(REC, PREC, method="07")
    with pytest.raises(ValueError, match="non-decreasing"):
        average_precision([1.0, 0.5], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        average_precision([0.5, float("nan")], [1.0, 1.0])
    with pytest.raises(ValueError, match="1-D"):
        average_precision([[0.5]], [[1.0]])


# --- voc_eval --------------------------------------------------------------------------------
def test_voc_eval_hand_computed(device):
    preds = [pred([G1, MISS, G2], [0.9, 0.8, 0.7], device=device)]
    gts = [target([G1, G2], device=device)]
    res = voc_eval(preds, gts, num_classes=2)
    assert res["ap"][1] == pytest.approx(5 / 6) and res["mAP"] == pytest.approx(5 / 6)
    assert res["num_gt"] == {1: 2}
    torch.testing.assert_close(res["recall"][1], torch.tensor(REC, dtype=torch.float64))
    torch.testing.assert_close(res["precision"][1], torch.tensor(PREC, dtype=torch.float64))
    assert voc_eval(preds, gts, 2, method="11point")["mAP"] == pytest.approx(28 / 33)


def test_voc_eval_input_order_irrelevant():
    preds = [pred([G2, MISS, G1], [0.7, 0.8, 0.9])]
    assert voc_eval(preds, [target([G1, G2])], 2)["mAP"] == pytest.approx(5 / 6)


def test_duplicate_detection_is_false_positive():
    # the second detection of G1 (score .8) is a duplicate: same curve as the hand case
    preds = [pred([G1, [0.0, 0.0, 10.0, 9.0], G2], [0.9, 0.8, 0.7])]
    res = voc_eval(preds, [target([G1, G2])], 2)
    torch.testing.assert_close(res["precision"][1], torch.tensor(PREC, dtype=torch.float64))
    assert res["mAP"] == pytest.approx(5 / 6)


def test_best_gt_already_matched_is_false_positive():
    # devkit rule: a detection takes its highest-IoU gt even when that one is matched.
    # d2 has IoU 100/105 with G1 (already matched by d1) and 95/110 with the free box A:
    # FP under the VOC devkit (COCO-style matching would make it a TP on A).
    a = [1.0, 0.0, 11.0, 10.0]
    d2 = [0.0, 0.0, 10.5, 10.0]
    preds = [pred([G1, d2], [0.9, 0.8])]
    res = voc_eval(preds, [target([G1, a])], 2)
    assert res["recall"][1].tolist() == [0.5, 0.5]
    assert res["precision"][1].tolist() == [1.0, 0.5]


def test_difficult_ignored():
    hard = [40.0, 0.0, 50.0, 10.0]
    preds = [pred([hard, G1, MISS, G2], [0.95, 0.9, 0.8, 0.7])]
    gts = [target([G1, hard, G2], difficult=[False, True, False])]
    res = voc_eval(preds, gts, 2)
    assert res["num_gt"][1] == 2                      # difficult boxes are not counted
    torch.testing.assert_close(res["precision"][1], torch.tensor(PREC, dtype=torch.float64))
    assert res["mAP"] == pytest.approx(5 / 6)
    # missing the difficult box costs nothing either
    res = voc_eval([pred([G1, G2], [0.9, 0.8])], gts, 2)
    assert res["mAP"] == pytest.approx(1.0)


def test_detection_whose_best_gt_is_difficult_is_ignored_even_if_it_overlaps_another():
    hard = [0.0, 0.0, 10.0, 12.0]                      # IoU(G1, hard) = 10/12
    det = [0.0, 0.0, 10.0, 11.5]                       # best gt: hard (11.5/12) over G1 (10/11.5)
    res = voc_eval([pred([det], [0.9])], [target([G1, hard], difficult=[False, True])], 2)
    assert res["recall"][1].numel() == 0 and res["ap"][1] == 0.0


def test_score_ordering_across_images():
    # image 0 holds a FP with score .6, image 1 a TP with score .9: sorted over the whole set,
    # the TP comes first and AP is 1 (per-image order would give 0.5)
    preds = [pred([MISS], [0.6]), pred([G1], [0.9])]
    gts = [target([]), target([G1])]
    res = voc_eval(preds, gts, 2)
    assert res["precision"][1].tolist() == [1.0, 0.5]
    assert res["mAP"] == pytest.approx(1.0)


def test_empty_predictions_give_zero_ap():
    res = voc_eval([pred([], [])], [target([G1])], 2)
    assert res["ap"][1] == 0.0 and res["mAP"] == 0.0
    assert voc_eval([pred([], [])], [target([G1])], 2, method="11point")["mAP"] == 0.0


def test_class_without_gt_excluded_from_map():
    preds = [pred([G1, G2], [0.9, 0.8], labels=[1, 2])]
    res = voc_eval(preds, [target([G1], labels=[1])], num_classes=4, class_names=["bg", "a", "b", "c"])
    assert res["ap"][1] == 1.0 and math.isnan(res["ap"][2]) and math.isnan(res["ap"][3])
    assert res["num_gt"] == {1: 1, 2: 0, 3: 0}
    assert res["mAP"] == 1.0
    assert res["ap_by_name"]["a"] == 1.0
    assert math.isnan(voc_eval([pred([], [])], [target([])], 2)["mAP"])


def test_perfect_detector_multiclass(device):
    boxes = [G1, G2, MISS]
    preds = [pred(boxes, [0.5, 0.9, 0.7], labels=[1, 2, 2], device=device),
             pred([G2], [0.1], labels=[3], device=device)]
    gts = [target(boxes, labels=[1, 2, 2], device=device), target([G2], labels=[3], device=device)]
    for method in ("area", "11point"):
        res = voc_eval(preds, gts, 4, method=method)
        assert res["mAP"] == pytest.approx(1.0) and all(ap == 1.0 for ap in res["ap"].values())


def test_wrong_class_is_false_positive():
    res = voc_eval([pred([G1], [0.9], labels=[2])], [target([G1], labels=[1])], 3)
    assert res["ap"][1] == 0.0 and math.isnan(res["ap"][2]) and res["precision"][2].tolist() == [0.0]


def test_iou_threshold_is_inclusive():
    det = [0.0, 0.0, 5.0, 10.0]                        # IoU with G1 = 0.5 exactly
    assert voc_eval([pred([det], [0.9])], [target([G1])], 2)["mAP"] == 1.0
    assert voc_eval([pred([det], [0.9])], [target([G1])], 2, iou_threshold=0.51)["mAP"] == 0.0


def _reference_voc_eval(preds, gts, cls, thr):
    """Direct transcription of the devkit loop (numpy), no +1, IoU >= thr, area AP."""
    dets = [(float(s), i, b) for i, p in enumerate(preds)
            for b, s, l in zip(p["boxes"].numpy(), p["scores"].numpy(), p["labels"].numpy()) if l == cls]
    dets.sort(key=lambda d: -d[0])
    recs = [(g["boxes"].numpy()[g["labels"].numpy() == cls]) for g in gts]
    used = [np.zeros(len(r), bool) for r in recs]
    npos = sum(len(r) for r in recs)
    tp, fp = [], []
    for _, i, bb in dets:
        ovmax, jmax, bbgt = -np.inf, -1, recs[i]
        if len(bbgt):
            iw = np.maximum(np.minimum(bbgt[:, 2], bb[2]) - np.maximum(bbgt[:, 0], bb[0]), 0)
            ih = np.maximum(np.minimum(bbgt[:, 3], bb[3]) - np.maximum(bbgt[:, 1], bb[1]), 0)
            inter = iw * ih
            area_gt = (bbgt[:, 2] - bbgt[:, 0]) * (bbgt[:, 3] - bbgt[:, 1])
            uni = (bb[2] - bb[0]) * (bb[3] - bb[1]) + area_gt - inter
            ov = inter / uni
            ovmax, jmax = ov.max(), ov.argmax()
        ok = ovmax >= thr and not used[i][jmax]
        if ok:
            used[i][jmax] = True
        tp.append(float(ok))
        fp.append(1.0 - float(ok))
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    rec, prec = tp / npos, tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    mrec, mpre = np.concatenate(([0.0], rec, [1.0])), np.concatenate(([0.0], prec, [0.0]))
    for k in range(mpre.size - 1, 0, -1):
        mpre[k - 1] = max(mpre[k - 1], mpre[k])
    k = np.where(mrec[1:] != mrec[:-1])[0]
    return np.sum((mrec[k + 1] - mrec[k]) * mpre[k + 1])


def _random_boxes(g, n, scale=100.0):
    xy = torch.rand(n, 2, generator=g) * scale
    wh = torch.rand(n, 2, generator=g) * scale / 2 + 2
    return torch.cat([xy, xy + wh], 1)


def test_matches_devkit_loop_on_random_data(generator):
    preds, gts = [], []
    for _ in range(5):
        gt = _random_boxes(generator, 6)
        jitter = torch.randn(12, 4, generator=generator) * 4
        boxes = torch.cat([gt, gt]) + jitter            # two (noisy) detections per gt box
        boxes = torch.cat([boxes[:, :2], torch.maximum(boxes[:, 2:], boxes[:, :2] + 1)], 1)
        preds.append(dict(boxes=boxes, scores=torch.rand(12, generator=generator),
                          labels=torch.randint(1, 3, (12,), generator=generator)))
        gts.append(dict(boxes=gt, labels=torch.randint(1, 3, (6,), generator=generator)))
    for thr in (0.3, 0.5, 0.7):
        res = voc_eval(preds, gts, 3, iou_threshold=thr)
        for cls in (1, 2):
            assert res["ap"][cls] == pytest.approx(_reference_voc_eval(preds, gts, cls, thr), abs=1e-12)


@pytest.mark.parametrize("bad, error, message", [
    (dict(labels=[0]), ValueError, r"labels.*1\.\.1"),
    (dict(labels=[2]), ValueError, r"labels.*1\.\.1"),
    (dict(labels=[1.0]), TypeError, "integer"),
    (dict(boxes=[[0.0, 0.0, 1.0]]), ValueError, r"\[N, 4\]"),
    (dict(boxes=[[0.0, 0.0, float("nan"), 1.0]]), ValueError, "NaN"),
    (dict(scores=[0.5, 0.5]), ValueError, "scores"),
])
def test_voc_eval_bad_predictions(bad, error, message):
    p = dict(boxes=[[0.0, 0.0, 1.0, 1.0]], labels=[1], scores=[0.5])
    p.update(bad)
    p = {k: torch.tensor(v) for k, v in p.items()}
    with pytest.raises(error, match=message):
        voc_eval([p], [target([G1])], 2)


def test_voc_eval_bad_arguments():
    with pytest.raises(ValueError, match="one entry per image"):
        voc_eval([pred([G1], [0.9])], [], 2)
    with pytest.raises(ValueError, match="num_classes"):
        voc_eval([], [], 1)
    with pytest.raises(TypeError, match="keys"):
        voc_eval([dict(boxes=torch.zeros(0, 4))], [target([])], 2)
    with pytest.raises(ValueError, match=r"targets\[0\]\['labels'\]"):
        voc_eval([pred([], [])], [target([G1], labels=[5])], 2)
    with pytest.raises(ValueError, match="difficult"):
        voc_eval([pred([], [])], [target([G1], difficult=[True, False])], 2)
    with pytest.raises(ValueError, match="class_names"):
        voc_eval([], [], 2, class_names=["bg"])
    with pytest.raises(ValueError, match="iou_threshold"):
        voc_eval([], [], 2, iou_threshold=0.0)


# --- proposal recall ---------------------------------------------------------------------------
def test_proposal_recall_hand_computed(device):
    gt = torch.tensor([G1, G2], device=device)
    props = torch.tensor([G1, [20.0, 20.0, 27.0, 30.0], MISS], device=device)   # IoU 1 and 0.7
    recall = proposal_recall([props], [gt])
    expected = torch.tensor([1.0] * 5 + [0.5] * 5, device=device)            # 0.5..0.7 -> 1
    torch.testing.assert_close(recall, expected)
    assert recall.dtype == torch.float32 and len(COCO_IOU_THRESHOLDS) == 10
    assert average_recall([props], [gt]) == pytest.approx(0.75)


def test_proposal_recall_top_n_and_empty(device):
    gt = [torch.tensor([G1, G2], device=device), torch.tensor([MISS], device=device)]
    props = [torch.tensor([G2, G1], device=device), torch.zeros(0, 4, device=device)]
    torch.testing.assert_close(proposal_recall(props, gt, iou_thresholds=(0.5,)),
                               torch.tensor([2 / 3], device=device))
    torch.testing.assert_close(proposal_recall(props, gt, iou_thresholds=[0.5, 0.9], top_n=1),
                               torch.tensor([1 / 3, 1 / 3], device=device))
    assert torch.isnan(proposal_recall([props[0]], [torch.zeros(0, 4, device=device)])).all()


def test_proposal_recall_bad_input():
    with pytest.raises(ValueError, match="one entry per image"):
        proposal_recall([torch.zeros(0, 4)], [])
    with pytest.raises(ValueError, match=r"proposals\[0\].*\[N, 4\]"):
        proposal_recall([torch.zeros(3)], [torch.zeros(0, 4)])
    with pytest.raises(TypeError, match="list"):
        proposal_recall(torch.zeros(3, 4), [torch.zeros(0, 4)])
    with pytest.raises(ValueError, match="top_n"):
        proposal_recall([torch.zeros(0, 4)], [torch.zeros(0, 4)], top_n=0)
