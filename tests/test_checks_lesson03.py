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
from frcnn_edu.models import RegionProposalNetwork


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


# ------------------------------------------------------------------ exercise 2: the anchor grid

def _my_grid(base_anchors, feature_size, stride, slip=None):
    """A student's anchor grid, with one slip switched on."""
    H, W = feature_size
    offset = 0.0 if slip == "corner" else 0.5              # corner: torchvision's centres
    cy = (torch.arange(H) + offset) * stride
    cx = (torch.arange(W) + offset) * stride
    if slip == "meshgrid_xy":                              # numpy's default: x before y
        cx, cy = torch.meshgrid(cx, cy, indexing="ij")     # [W, H]
    else:
        cy, cx = torch.meshgrid(cy, cx, indexing="ij")     # [H, W]
    shifts = torch.stack((cy, cx, cy, cx) if slip == "swap_xy" else (cx, cy, cx, cy), dim=-1)
    if slip == "k_outer":
        return (base_anchors[:, None, None] + shifts).reshape(-1, 4)
    return (shifts[:, :, None] + base_anchors).reshape(-1, 4)


def test_grid_cases_cover_the_edges_with_a_local_generator():
    state = torch.random.get_rng_state()
    cases = L._grid_cases()
    assert torch.equal(state, torch.random.get_rng_state()), "the global RNG was used"
    assert len(cases) >= 30
    assert any(len(base) == 1 for base, _, _ in cases)                          # k = 1
    assert any(tuple(size) == (1, 1) for _, size, _ in cases)                  # one position
    assert sum(size[0] * size[1] == 0 for _, size, _ in cases) >= 3            # zero-size grids
    assert any(size[0] != size[1] and min(size) > 1 for _, size, _ in cases)   # non-square
    assert any((base[:, :2] + base[:, 2:]).abs().sum() > 1 for base, _, _ in cases)  # not centred
    for case in cases:
        assert torch.allclose(L._slip_grid(*case), grid_anchors(*case).double(), atol=1e-4)


def test_check_grid_anchors_right_and_positional():
    res = L.check_grid_anchors(_my_grid)
    assert res and res.exercise == "lesson03.grid_anchors" and "30 maps" in res.message

    def renamed(base, hw, step):
        return _my_grid(base, hw, step).tolist()              # nested lists are fine too

    assert L.check_grid_anchors(renamed)


@pytest.mark.parametrize("slip, hint", [
    ("k_outer", "you put k outermost"), ("corner", "half a stride off"),
    ("swap_xy", "the column's centre (x + 0.5) * stride goes to x1 and x2"),
    ("meshgrid_xy", "you ordered the positions x first")])
def test_check_grid_anchors_names_the_slip(slip, hint):
    res = L.check_grid_anchors(lambda *a: _my_grid(*a, slip=slip))
    assert not res and hint in res.message, res.message
    assert "the smallest: my_grid_anchors(base_anchors [k = " in res.message
    assert " gave tensor(" in res.message and "expected tensor(" in res.message


def test_check_grid_anchors_wrong_shape_and_crash():
    res = L.check_grid_anchors(lambda *a: _my_grid(*a).reshape(-1, len(a[0]), 4))
    assert not res and "should have shape" in res.message
    res = L.check_grid_anchors(lambda base, size, stride: base[size[0] * size[1] * 100])
    assert not res and res.status == "error"


def test_check_grid_anchors_refuses_the_library():
    from frcnn_edu.widgets import anchor_labeling
    for fn in (grid_anchors, lambda *a: grid_anchors(*a)):
        res = L.check_grid_anchors(fn)
        assert not res and "calls frcnn_edu.anchors.grid_anchors" in res.message
    res = L.check_grid_anchors(lambda base, size, stride: anchor_labeling.image_anchors(
        (size[0] * stride, size[1] * stride), (20, 40, 80), (0.5, 1.0, 2.0), stride))
    assert not res and "calls frcnn_edu.widgets.anchor_labeling.image_anchors" in res.message


def test_check_grid_anchors_stub_and_none():
    assert L.check_grid_anchors(_stub).status == "todo"
    assert L.check_grid_anchors(None).status == "todo"


def test_student_anchors_and_labels_run_inside_the_rpn():
    """anchor_fn and label_fn together: the same losses as the library's functions."""
    features = torch.randn(1, 8, 5, 6, generator=torch.Generator().manual_seed(0))
    target = {"boxes": torch.tensor([[10.0, 12, 40, 50], [50, 20, 90, 70]]),
              "labels": torch.tensor([1, 2])}
    losses = []
    for fns in ({}, dict(anchor_fn=_my_grid, label_fn=_my_labels)):
        torch.manual_seed(0)                                   # same weights, same sample
        rpn = RegionProposalNetwork(8, 16, (20, 40, 80), (0.5, 1.0, 2.0), **fns)
        losses.append(rpn(features, [(80, 96)], [target], propose=False)[2])
    for name, value in losses[0].items():
        assert torch.allclose(value, losses[1][name]), name


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
