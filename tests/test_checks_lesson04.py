"""Tests for the lesson 04 checkers: a right answer passes, wrong ones fail with a useful hint,
a stub (NotImplementedError) is reported, never raised."""
import math

import torch
import torch.nn.functional as F

from frcnn_edu import checks
from frcnn_edu.boxes import box_iou, clip_boxes, decode_boxes, encode_boxes, nms
from frcnn_edu.checks import lesson04 as L
from frcnn_edu.evaluation import proposal_recall
from frcnn_edu.losses import rpn_loss, smooth_l1
from frcnn_edu.models.rpn import RegionProposalNetwork
from frcnn_edu.proposals import generate_proposals


def _stub(*args, **kwargs):
    raise NotImplementedError("replace this line with your answer")


def test_lesson_module_is_reachable_from_checks():
    assert checks.lesson04 is L


# ------------------------------------------------------------------ exercise 1: encode by hand

def _encode(anchor, box, corner=False, log=True, by="anchor", flip=False, xywh=False):
    if xywh:  # reads (x1, y1, x2, y2) as (x, y, w, h)
        anchor = (anchor[0], anchor[1], anchor[0] + anchor[2], anchor[1] + anchor[3])
        box = (box[0], box[1], box[0] + box[2], box[1] + box[3])
    xa, ya = (anchor[0] + anchor[2]) / 2, (anchor[1] + anchor[3]) / 2
    wa, ha = anchor[2] - anchor[0], anchor[3] - anchor[1]
    x, y = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    w, h = box[2] - box[0], box[3] - box[1]
    if corner:
        x, y, xa, ya = box[0], box[1], anchor[0], anchor[1]
    dw, dh = (wa, ha) if by == "anchor" else (w, h) if by == "box" else (1.0, 1.0)
    if flip:
        return (xa - x) / wa, (ya - y) / ha, math.log(wa / w), math.log(ha / h)
    tw, th = (math.log(w / wa), math.log(h / ha)) if log else (w / wa, h / ha)
    return (x - xa) / dw, (y - ya) / dh, tw, th


def test_expected_encode_is_the_worked_example():
    lib = encode_boxes(torch.tensor([L.EX_ANCHOR]), torch.tensor([L.EX_BOX]))[0].tolist()
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(L.expected_encode(), lib))
    tx, ty, tw, th = L.expected_encode()
    assert (tx, ty) == (17 / 40, 6 / 80)
    assert math.isclose(tw, math.log(1.25)) and math.isclose(th, math.log(0.75))


def test_check_encode_right():
    assert L.check_encode(_encode)
    assert L.check_encode(lambda a, b: L.expected_encode(a, b))
    assert L.check_encode(lambda a, b: torch.tensor(_encode(a, b)))
    assert L.check_encode(lambda a, b: [round(v, 6) for v in _encode(a, b)])


def test_check_encode_wrong_with_hints():
    res = L.check_encode(lambda a, b: _encode(a, b, corner=True))
    assert not res and "CENTRE" in res.message
    res = L.check_encode(lambda a, b: _encode(a, b, log=False))
    assert not res and "LOGS" in res.message
    res = L.check_encode(lambda a, b: _encode(a, b, by="box"))
    assert not res and "ANCHOR's width" in res.message
    res = L.check_encode(lambda a, b: _encode(a, b, by="none"))
    assert not res and "scale-invariant" in res.message
    res = L.check_encode(lambda a, b: _encode(a, b, flip=True))
    assert not res and "signs are flipped" in res.message
    res = L.check_encode(lambda a, b: _encode(a, b, xywh=True))
    assert not res and "(x, y, w, h)" in res.message
    res = L.check_encode(lambda a, b: _encode(a, b, corner=True, log=False))  # two slips at once
    assert not res and "CENTRE" in res.message and "LOGS" in res.message
    def log10_sizes(a, b):
        return (*_encode(a, b)[:2], math.log10((b[2] - b[0]) / (a[2] - a[0])),
                math.log10((b[3] - b[1]) / (a[3] - a[1])))

    res = L.check_encode(log10_sizes)
    assert not res and "log10" in res.message
    res = L.check_encode(lambda a, b: (0.0, 0.0, 0.0, 0.0))
    assert not res and "tx = (x - x_a) / w_a" in res.message and "tw = log" in res.message


def test_check_encode_stub_and_bad_return():
    res = L.check_encode(_stub)
    assert not res and "NotImplementedError" in res.message
    res = L.check_encode(lambda a, b: (1.0, 2.0))
    assert not res and "4 numbers" in res.message
    res = L.check_encode(lambda a, b: "tx")
    assert not res and "(tx, ty, tw, th)" in res.message
    res = L.check_encode(lambda a, b: math.log(-1))
    assert not res and "ValueError" in res.message


# ------------------------------------------------------------------ exercise 2: smooth L1

def _smooth(x, beta=1.0):
    return 0.5 * x * x / beta if abs(x) < beta else abs(x) - 0.5 * beta


def test_check_smooth_l1_right():
    assert L.check_smooth_l1(_smooth)
    zero = torch.tensor(0.0)
    res = L.check_smooth_l1(lambda x, beta: float(smooth_l1(torch.tensor(x), zero, beta)))
    assert not res and "calls frcnn_edu.losses.smooth_l1" in res.message      # write it yourself
    res = L.check_smooth_l1(lambda x, beta: F.smooth_l1_loss(torch.tensor(x), zero, beta=beta))
    assert not res and "calls torch.nn.functional.smooth_l1_loss" in res.message


def test_check_smooth_l1_wrong_with_hints():
    res = L.check_smooth_l1(lambda x, b: x * x / b if abs(x) < b else abs(x) - 0.5 * b)
    assert not res and "0.5 x^2 / beta" in res.message and "same slope" in res.message
    res = L.check_smooth_l1(lambda x, b: 0.5 * x * x / b if abs(x) < b else abs(x))
    assert not res and "|x| - 0.5 beta" in res.message
    res = L.check_smooth_l1(lambda x, b: 0.5 * x * x / b if x < b else x - 0.5 * b)
    assert not res and "symmetric" in res.message
    res = L.check_smooth_l1(lambda x, b: 0.5 * x * x if abs(x) < b else abs(x) - 0.5)
    assert not res and "beta enters both pieces" in res.message
    res = L.check_smooth_l1(lambda x, b: 0.5 * x * x if abs(x) < 1 else abs(x) - 0.5)
    assert not res and "0.111111" in res.message
    res = L.check_smooth_l1(lambda x, b: 0.5 * x * x)
    assert not res and "L2" in res.message
    res = L.check_smooth_l1(lambda x, b: abs(x))
    assert not res and "plain L1" in res.message
    res = L.check_smooth_l1(lambda x, b: 3.0)
    assert not res and "otherwise |x| - 0.5 beta" in res.message


def test_check_smooth_l1_stub_and_bad_return():
    res = L.check_smooth_l1(_stub)
    assert not res and "not filled in" in res.message
    res = L.check_smooth_l1(lambda x, b: [1.0, 2.0])
    assert not res and "one number" in res.message
    res = L.check_smooth_l1(lambda x: x)  # forgot the beta argument
    assert not res and "TypeError" in res.message


# ------------------------------------------------------------------ exercise 3: the RPN loss

def _loss(pred_objectness, pred_deltas, labels, gt_deltas, n_cls, n_reg, lam, slip=None):
    sampled, pos = labels >= 0, labels == 1
    if slip == "ignored_in_cls":
        sampled = torch.ones_like(sampled)
    cls = F.binary_cross_entropy_with_logits(pred_objectness[sampled],
                                             labels[sampled].clamp(min=0).float(), reduction="sum")
    which = sampled if slip == "reg_over_sampled" else pos
    diff = pred_deltas[which] - gt_deltas[which]
    smooth = torch.where(diff.abs() < 1, 0.5 * diff ** 2, diff.abs() - 0.5)
    per = 0.5 * diff ** 2 if slip == "l2" else smooth
    reg = per.sum()
    if slip == "swap":
        return cls / n_reg, lam * reg / n_cls
    if slip == "no_lambda":
        return cls / n_cls, reg / n_reg
    if slip == "mean_coords":
        return cls / n_cls, lam * reg / 4 / n_reg
    if slip == "by_positives":
        return cls / n_cls, lam * reg / max(int(pos.sum()), 1)
    if slip == "sampled_count":
        return cls / int(sampled.sum()), lam * reg / n_reg
    if slip == "reversed":
        return lam * reg / n_reg, cls / n_cls
    return cls / n_cls, lam * reg / n_reg


def test_expected_rpn_loss_by_hand():
    cls, reg = L.expected_rpn_loss()
    ex = L.EX_LOSS
    sampled = ex["labels"] >= 0
    p = torch.sigmoid(ex["pred_objectness"][sampled]).double()
    y = ex["labels"][sampled].double()
    by_hand = float(-(y * p.log() + (1 - y) * (1 - p).log()).sum() / 5)
    assert math.isclose(cls, by_hand, rel_tol=1e-5)
    # positives: anchor 0 (all errors < 1) and anchor 4 (tw error 1.8 is in the linear zone)
    assert math.isclose(reg, 10 * (0.035 + (0.125 + 0.08 + 1.3 + 0.18)) / 2, rel_tol=1e-5)


def test_check_rpn_loss_right():
    assert L.check_rpn_loss(_loss)

    def library(pred_objectness, pred_deltas, labels, gt_deltas, n_cls, n_reg, lam):
        return rpn_loss(pred_objectness, pred_deltas, labels, gt_deltas, n_cls=n_cls, n_reg=n_reg,
                        lam=lam)

    res = L.check_rpn_loss(library)                  # the function it replaces: refused
    assert not res and "calls frcnn_edu.losses.rpn_loss" in res.message
    res = L.check_rpn_loss(lambda *a: torch.tensor(_loss(*a)))
    assert res and "8.6000" in res.message


def test_check_rpn_loss_calls_positionally():
    """Renaming the parameters is fine: the checker passes them in the stub's order."""
    def renamed(logits, deltas, y, t, ncls, nreg, weight):
        return _loss(logits, deltas, y, t, ncls, nreg, weight)

    assert L.check_rpn_loss(renamed)


def test_check_rpn_loss_wrong_with_hints():
    def slip(name):
        return lambda *a: _loss(*a, slip=name)

    res = L.check_rpn_loss(slip("swap"))
    assert not res and "swapped" in res.message
    res = L.check_rpn_loss(slip("no_lambda"))
    assert not res and "multiplied by lambda" in res.message
    res = L.check_rpn_loss(slip("reg_over_sampled"))
    assert not res and "positive anchors only" in res.message
    res = L.check_rpn_loss(slip("ignored_in_cls"))
    assert not res and "label -1" in res.message
    res = L.check_rpn_loss(slip("mean_coords"))
    assert not res and "4 coordinates" in res.message
    res = L.check_rpn_loss(slip("by_positives"))
    assert not res and "not by the number of positives" in res.message
    res = L.check_rpn_loss(slip("sampled_count"))
    assert not res and 'normalize="sampled"' in res.message
    res = L.check_rpn_loss(slip("l2"))
    assert not res and "squared error" in res.message
    res = L.check_rpn_loss(slip("reversed"))
    assert not res and "wrong order" in res.message
    res = L.check_rpn_loss(lambda *a: (0.0, 0.0))
    assert not res and "both terms" in res.message and "labels=" in res.message


def test_check_rpn_loss_inputs_are_not_shared():
    def mutating(*a):
        a[2][a[2] == -1] = 0  # a student who edits the labels in place
        return _loss(*a)

    mutating(*[v.clone() if torch.is_tensor(v) else v for v in L.EX_LOSS_ARGS])
    assert L.EX_LOSS["labels"].tolist() == [1, 0, -1, 0, 1, -1, 0, -1]
    assert not L.check_rpn_loss(mutating)
    assert L.EX_LOSS["labels"].tolist() == [1, 0, -1, 0, 1, -1, 0, -1]


def test_check_rpn_loss_stub_and_bad_return():
    res = L.check_rpn_loss(_stub)
    assert not res and "not filled in" in res.message
    res = L.check_rpn_loss(lambda *a: 1.0)
    assert not res and "pair" in res.message


# ------------------------------------------------------------------ exercise 4: proposal recall

def _recall(proposals, gt_boxes, t, slip=None):
    found, total, per_image = 0, 0, []
    for p, g in zip(proposals, gt_boxes):
        if slip == "skip_empty" and len(p) == 0:
            continue
        best = box_iou(p, g).max(0).values if len(p) else torch.zeros(len(g))
        hit = (best > t) if slip == "strict" else (best >= t)
        found, total = found + int(hit.sum()), total + len(g)
        if len(g):
            per_image.append(float(hit.double().mean()))
    if slip == "per_image":
        return sum(per_image) / len(per_image)
    return found / total


def test_exercise_recall_values():
    iou = box_iou(L.EX_PROPOSALS[0], L.EX_GT_BOXES[0])
    assert float(iou[:, 1].max()) == 0.5  # the boundary case
    recall = proposal_recall(L.EX_PROPOSALS, L.EX_GT_BOXES, (0.5, 0.7)).tolist()
    assert [round(r, 6) for r in recall] == [0.6, 0.4]


def test_check_recall_right():
    assert L.check_recall(_recall)
    res = L.check_recall(lambda p, g, t: proposal_recall(p, g, (t,))[0])
    assert not res and "calls frcnn_edu.evaluation.proposal_recall" in res.message


def test_check_recall_wrong_with_hints():
    res = L.check_recall(lambda p, g, t: _recall(p, g, t, slip="strict"))
    assert not res and ">=" in res.message
    res = L.check_recall(lambda p, g, t: _recall(p, g, t, slip="per_image"))
    assert not res and "pool the boxes" in res.message
    res = L.check_recall(lambda p, g, t: _recall(p, g, t, slip="skip_empty"))
    assert not res and "without proposals" in res.message

    def per_proposal(proposals, gt_boxes, t):
        best = [box_iou(p, g).max(1).values for p, g in zip(proposals, gt_boxes)
                if len(p) and len(g)]
        return float((torch.cat(best) >= t).double().mean())

    res = L.check_recall(per_proposal)
    assert not res and "precision" in res.message
    res = L.check_recall(lambda p, g, t: 0.0)
    assert not res and "highest IoU" in res.message


def test_check_recall_crash_on_empty_image_gets_a_note():
    def crashes(proposals, gt_boxes, t):
        pairs = zip(proposals, gt_boxes)
        return sum(int((box_iou(p, g).max(0).values >= t).sum()) for p, g in pairs) / 5

    res = L.check_recall(crashes)
    assert not res and "raised" in res.message and "no proposals" in res.message


def test_check_recall_stub():
    res = L.check_recall(_stub)
    assert not res and "not filled in" in res.message and "no proposals" not in res.message


def test_result_repr():
    assert repr(L.check_smooth_l1(_smooth)).startswith("Correct: ")
    assert repr(L.check_recall(_stub)).startswith("Not yet: ")


# ------------------------------------------------------------------ exercise 5: the proposal layer

def _layer(anchors, objectness, deltas, image_sizes, pre_nms_top_n, post_nms_top_n, nms_thresh,
           min_size, slip=None):
    """The lesson's answer, or the same with one slip."""
    all_boxes, all_scores = [], []
    for logits, d, size in zip(objectness, deltas, image_sizes):
        if slip == "swap":
            d = d[:, [1, 0, 3, 2]]
        boxes = decode_boxes(anchors, d)
        if slip != "no_clip":
            boxes = clip_boxes(boxes, size)
        w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        keep = (w > 0) & (h > 0)
        if slip != "no_min_size":
            keep &= (w >= min_size) & (h >= min_size)
        boxes, logits = boxes[keep], logits[keep]
        if slip == "nms_first":
            kept = nms(boxes, logits, nms_thresh)[:pre_nms_top_n][:post_nms_top_n]
        else:
            order = torch.sort(logits, descending=True, stable=True).indices[:pre_nms_top_n]
            boxes, logits = boxes[order], logits[order]
            kept = nms(boxes, logits, nms_thresh)[:post_nms_top_n]
        all_boxes.append(boxes[kept])
        all_scores.append(logits[kept] if slip == "logits" else torch.sigmoid(logits[kept]))
    return all_boxes, all_scores


def test_check_proposal_layer_right():
    res = L.check_proposal_layer(_layer)
    assert res and "28 cases" in res.message and res.exercise == "lesson04.proposal_layer"


def test_proposal_layer_cases_cover_the_edges():
    cases = L._proposal_cases()
    assert len(cases) >= 27
    want = [generate_proposals(*c) for c in cases]
    assert any(all(len(b) == 0 for b in boxes) for boxes, _ in want)          # nothing survives
    assert any(len(b) < c[5] for (boxes, _), c in zip(want, cases) for b in boxes)  # < top-N
    assert any(len(c[3]) == 2 and c[3][0] != c[3][1] for c in cases)       # two image sizes
    assert any(len(c[1][0].unique()) < c[1].shape[1] for c in cases)       # tied logits


def test_check_proposal_layer_calls_positionally():
    def renamed(a, z, t, sizes, pre, post, iou, smallest):
        return _layer(a, z, t, sizes, pre, post, iou, smallest)

    assert L.check_proposal_layer(renamed)


def test_check_proposal_layer_wrong_with_hints():
    res = L.check_proposal_layer(lambda *a: _layer(*a, slip="no_clip"))
    assert not res and "clip the decoded boxes" in res.message
    res = L.check_proposal_layer(lambda *a: _layer(*a, slip="no_min_size"))
    assert not res and "below min_size" in res.message
    res = L.check_proposal_layer(lambda *a: _layer(*a, slip="nms_first"))
    assert not res and "pre_nms_top_n best-scored boxes FIRST" in res.message
    res = L.check_proposal_layer(lambda *a: _layer(*a, slip="logits"))
    assert not res and "sigmoid(logit), a probability" in res.message
    res = L.check_proposal_layer(lambda *a: _layer(*a, slip="swap"))
    assert not res and "(tx, ty, tw, th) in that order" in res.message


def test_check_proposal_layer_wrong_shapes_are_explained():
    res = L.check_proposal_layer(lambda *a: _layer(*a)[0])
    assert not res and "pair (boxes, scores)" in res.message
    res = L.check_proposal_layer(lambda *a: (torch.cat(_layer(*a)[0]), torch.cat(_layer(*a)[1])))
    assert not res


def test_check_proposal_layer_refuses_the_library():
    res = L.check_proposal_layer(generate_proposals)
    assert not res and "calls frcnn_edu.proposals.generate_proposals" in res.message
    res = L.check_proposal_layer(lambda *a: generate_proposals(*a))
    assert not res and "calls frcnn_edu.proposals.generate_proposals" in res.message


def test_check_proposal_layer_stub_and_none():
    assert L.check_proposal_layer(_stub).status == "todo"
    assert L.check_proposal_layer(None).status == "todo"


def test_student_proposal_layer_runs_inside_the_rpn():
    torch.manual_seed(0)
    rpn = RegionProposalNetwork(8, stride=16, anchor_sizes=(16, 32), anchor_ratios=(1.0,),
                                proposal_fn=_layer).eval()
    features = torch.randn(2, 8, 4, 5)
    sizes = [(64, 80), (50, 70)]
    with torch.no_grad():
        mine, mine_scores, _ = rpn(features, sizes)
        rpn.proposal_fn = None
        lib, lib_scores, _ = rpn(features, sizes)
    for a, b, s, t in zip(mine, lib, mine_scores, lib_scores):
        assert torch.equal(a, b) and torch.allclose(s, t)
