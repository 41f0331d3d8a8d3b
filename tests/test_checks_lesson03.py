"""Tests for the lesson 03 checkers: a right answer passes, wrong ones fail with a useful hint,
a stub (NotImplementedError) is reported, never raised."""
import math

import pytest

import torch

from frcnn_edu import checks
from frcnn_edu.anchors import grid_anchors, inside_image, make_base_anchors
from frcnn_edu.boxes import box_iou
from frcnn_edu.checks import lesson03 as L
from frcnn_edu.matching import label_anchors


def _stub(*args, **kwargs):
    raise NotImplementedError("replace this line with your answer")


def test_lesson_module_is_reachable_from_checks():
    assert checks.lesson03 is L


# ------------------------------------------------------------------ exercise 1: anchor shape

def test_check_anchor_shape_right():
    assert L.check_anchor_shape(lambda s, r: (s / math.sqrt(r), s * math.sqrt(r)))
    assert L.check_anchor_shape(lambda s, r: [round(s / r ** 0.5, 3), round(s * r ** 0.5, 3)])

    def from_library(s, r):
        x1, y1, x2, y2 = make_base_anchors((s,), (r,))[0].tolist()
        return x2 - x1, y2 - y1

    res = L.check_anchor_shape(from_library)            # the function it replaces: refused
    assert not res and "calls frcnn_edu.anchors.make_base_anchors" in res.message


def test_check_anchor_shape_wrong():
    res = L.check_anchor_shape(lambda s, r: (s * math.sqrt(r), s / math.sqrt(r)))
    assert not res and "swapped" in res.message and "h / w" in res.message
    res = L.check_anchor_shape(lambda s, r: (s / r, s * r))
    assert not res and "square root" in res.message
    res = L.check_anchor_shape(lambda s, r: (s, s * r))
    assert not res and "w = s / sqrt(r)" in res.message
    res = L.check_anchor_shape(lambda s, r: s)
    assert not res and "pair" in res.message


def test_check_anchor_shape_stub_and_crash():
    res = L.check_anchor_shape(_stub)
    assert not res and "NotImplementedError" in res.message
    res = L.check_anchor_shape(lambda s, r: 1 / 0)
    assert not res and "ZeroDivisionError" in res.message


# ------------------------------------------------------------------ exercise 2: anchor count

def _count(image_size, stride, sizes, ratios, swap=False, ceil=False, k_sum=False, outside=False):
    h, w = image_size
    fh, fw = (math.ceil(h / stride), math.ceil(w / stride)) if ceil else (h // stride, w // stride)
    anchors = grid_anchors(make_base_anchors(sizes, ratios), (fh, fw), stride)
    inside = int(inside_image(anchors, (w, h) if swap else (h, w)).sum())
    total = fh * fw * (len(sizes) + len(ratios)) if k_sum else anchors.shape[0]
    return total, (total - inside if outside else inside)


def test_check_anchor_count_right_and_paper_numbers():
    assert L.check_anchor_count(_count)
    assert L._library_count((600, 1000), 16, (128, 256, 512), (0.5, 1.0, 2.0)) == (20646, 8044)
    assert L.check_anchor_count(lambda *a: tuple(float(v) for v in _count(*a)))


def test_check_anchor_count_wrong():
    res = L.check_anchor_count(lambda *a: _count(*a, swap=True))
    assert not res and "(height, width)" in res.message
    res = L.check_anchor_count(lambda *a: _count(*a, ceil=True))
    assert not res and "rounding down" in res.message
    res = L.check_anchor_count(lambda *a: _count(*a, k_sum=True))
    assert not res and "TIMES" in res.message
    res = L.check_anchor_count(lambda *a: _count(*a, outside=True))
    assert not res and "cross the border" in res.message
    res = L.check_anchor_count(lambda im, s, sz, r: ((im[0] // s) * (im[1] // s),
                                                     _count(im, s, sz, r)[1]))
    assert not res and "total = H_f * W_f * k" in res.message
    res = L.check_anchor_count(lambda *a: (_count(*a)[0], -1))
    assert not res and "inside_image is True" in res.message


def test_check_anchor_count_stub():
    res = L.check_anchor_count(_stub)
    assert not res and "not filled in" in res.message
    res = L.check_anchor_count(lambda *a: 7)
    assert not res and "pair" in res.message


# ------------------------------------------------------------------ exercise 3: labels by hand

def test_expected_labels_cover_every_rule():
    labels = L.expected_labels()
    assert labels.tolist() == [1, -1, 1, 1, -1, 1, 0, 0]
    valid = inside_image(L.EX_ANCHORS, L.EX_IMAGE_SIZE)
    assert valid.tolist() == [True, True, True, True, False, True, True, True]
    # without the border mask, A4 (IoU 0.29) would be G2's best anchor instead of A5
    plain, _ = label_anchors(L.EX_ANCHORS, L.EX_BOXES)
    assert plain[4] == 1 and plain[5] == 0


def test_check_labels_right():
    assert L.check_labels([1, -1, 1, 1, -1, 1, 0, 0])
    assert L.check_labels(torch.tensor([1, -1, 1, 1, -1, 1, 0, 0]))
    assert L.check_labels((1, -1, 1, 1, -1, 1, 0, 0))


def test_check_labels_wrong_with_rule_hints():
    right = [1, -1, 1, 1, -1, 1, 0, 0]

    def with_(i, v):
        out = list(right)
        out[i] = v
        return out

    res = L.check_labels(with_(5, 0))  # the 0.5 floor / "rule ii needs >= 0.3" misreading
    assert not res and "no IoU floor" in res.message and "A5" in res.message
    res = L.check_labels(with_(3, -1))  # only one of the tied anchors
    assert not res and "tied" in res.message
    res = L.check_labels(with_(4, 1))  # cross-border anchor taken as G2's best
    assert not res and "border" in res.message
    res = L.check_labels(with_(1, 1))
    assert not res and "ignored (-1)" in res.message
    res = L.check_labels(with_(7, -1))
    assert not res and "negative (0)" in res.message
    res = L.check_labels(with_(0, -1))
    assert not res and "rule i)" in res.message
    res = L.check_labels([1, -1, 1, -1, -1, 0, 0, 0])
    assert not res and "A3" in res.message and "1 other" in res.message


def test_check_labels_bad_input():
    assert "one label per anchor" in L.check_labels([1, 0]).message
    assert "1 (positive)" in L.check_labels([2] * 8).message
    assert not L.check_labels("positive")
    assert not L.check_labels(None)


# ------------------------------------------------------------------ exercise 4: sampled counts

def _sampled(p, n):
    kept_pos = min(p, 128)
    return kept_pos, min(n, 256 - kept_pos)


def test_check_sampled_counts_right():
    assert L.check_sampled_counts(_sampled)
    assert L._library_sample(10, 500) == (10, 246)
    assert L._library_sample(300, 50) == (128, 50)


def test_check_sampled_counts_wrong():
    res = L.check_sampled_counts(lambda p, n: (min(p, 128), min(n, 128)))
    assert not res and "AT MOST 128 positives" in res.message
    res = L.check_sampled_counts(lambda p, n: (min(p, 128), n))
    assert not res and "at most 256" in res.message
    res = L.check_sampled_counts(lambda p, n: (128, 256 - 128 if n >= 128 else n))
    assert not res and "more anchors of a kind" in res.message
    res = L.check_sampled_counts(lambda p, n: (min(p, 100), min(n, 256 - min(p, 100))))
    assert not res and "min(number of positives, 128)" in res.message
    res = L.check_sampled_counts(lambda p, n: (min(p, 128), min(n, 200)))
    assert not res and "256 - positives kept" in res.message


def test_check_sampled_counts_stub_and_bad_return():
    res = L.check_sampled_counts(_stub)
    assert not res and "not filled in" in res.message
    res = L.check_sampled_counts(lambda p, n: "half")
    assert not res and "pair" in res.message


def test_result_repr():
    assert repr(L.check_sampled_counts(_sampled)).startswith("Correct: ")
    assert repr(L.check_labels(_stub)).startswith("Not yet: ")


# ------------------------------------------------------------ exercise: the labeling rules
def _my_labels(anchors, gt_boxes, pos_iou, neg_iou, valid, slip=None):
    labels = torch.full((len(anchors),), -1)
    if len(gt_boxes) == 0 or len(anchors) == 0:
        labels[valid] = 0
        return labels
    iou = box_iou(anchors, gt_boxes)
    if slip != "no_valid":
        iou[~valid] = -1.0
    best_iou = iou.max(dim=1).values
    col = iou.max(dim=0).values
    best = ((iou == col) & (col > 0)).any(dim=1)
    if slip == "first_only":
        best = torch.zeros(len(anchors), dtype=torch.bool)
        best[iou.argmax(dim=0)[col > 0]] = True
    if slip == "no_rule_ii":
        best[:] = False
    labels[(best_iou >= 0) & (best_iou < neg_iou)] = 0
    labels[(best_iou > pos_iou if slip == "strict" else best_iou >= pos_iou) | best] = 1
    if slip == "floor":
        labels[(best_iou >= 0) & (best_iou < neg_iou)] = 0
    return labels


def test_check_label_anchors_right():
    assert L.check_label_anchors(_my_labels)
    res = L.check_label_anchors(lambda a, g, p, n, v: label_anchors(a, g, p, n, v))
    assert not res and "calls frcnn_edu.matching.label_anchors" in res.message


@pytest.mark.parametrize("slip, hint", [
    ("no_rule_ii", "down each column"), ("floor", "no IoU floor"), ("first_only", "ties"),
    ("no_valid", "cross the border")])
def test_check_label_anchors_rejects_each_misreading(slip, hint):
    res = L.check_label_anchors(lambda *a: _my_labels(*a, slip=slip))
    assert not res and hint in res.message and "cases fail" in res.message, res.message
