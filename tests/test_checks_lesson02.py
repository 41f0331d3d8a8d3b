"""Tests for the lesson 02 checkers: a right answer passes, wrong ones fail with a useful hint,
a stub (NotImplementedError) is reported, never raised."""
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from frcnn_edu import checks
from frcnn_edu.checks import lesson02 as L
from frcnn_edu.losses import fast_rcnn_loss, smooth_l1
from frcnn_edu.matching import sample_proposals
from frcnn_edu.roi_ops import roi_pool, roi_pool_loop


def _stub(*args, **kwargs):
    raise NotImplementedError("replace this line with your answer")


def _bins(x1, x2, pooled, stride, rnd=lambda v: math.floor(v + 0.5), plus_one=1):
    start, end = rnd(x1 / stride), rnd(x2 / stride)
    size = (end - start + plus_one) / pooled
    return [(start + math.floor(p * size), start + math.ceil((p + 1) * size)) for p in range(pooled)]


def test_lesson_module_is_reachable_from_checks():
    assert checks.lesson02 is L


def test_constants_are_consistent():
    assert L.FEATURE.shape == (6, 8) and L.FEATURE.dtype == torch.float32
    for roi in (L.DEMO_ROI, L.EX_ROI):  # both RoIs lie inside the 96 x 128 image
        assert 0 <= roi[0] < roi[2] <= 8 * L.STRIDE and 0 <= roi[1] < roi[3] <= 6 * L.STRIDE
    loop = roi_pool_loop(L.FEATURE[None, None], [torch.tensor([L.EX_ROI])], L.EX_OUTPUT_SIZE,
                         1 / L.STRIDE)[0, 0]
    assert torch.equal(L.expected_roi_pool(), loop)


# ------------------------------------------------------------------ exercise 1: bin edges

def test_check_bin_edges_right():
    assert L.check_bin_edges(_bins)
    assert L.check_bin_edges(lambda *a: [list(p) for p in _bins(*a)])          # lists are fine
    assert L.check_bin_edges(lambda *a: torch.tensor(_bins(*a)))               # so is a tensor


def test_check_bin_edges_wrong():
    res = L.check_bin_edges(lambda *a: _bins(*a, rnd=round))
    assert not res and "round()" in res.message and "away from zero" in res.message
    res = L.check_bin_edges(lambda *a: _bins(*a, rnd=math.floor))
    assert not res and "do not floor" in res.message
    res = L.check_bin_edges(lambda *a: _bins(*a, plus_one=0))
    assert not res and "inclusive" in res.message
    res = L.check_bin_edges(lambda x1, x2, p, s: [(0, 1)] * p)
    assert not res and "expected" in res.message
    res = L.check_bin_edges(lambda x1, x2, p, s: [(0, 1)])
    assert not res and "pairs" in res.message


def test_check_bin_edges_stub_and_crash():
    res = L.check_bin_edges(_stub)
    assert not res and "NotImplementedError" in res.message
    res = L.check_bin_edges(lambda *a: 1 / 0)
    assert not res and "ZeroDivisionError" in res.message


# ------------------------------------------------------------------ exercise 2: pool by hand

def test_check_roi_pool_right():
    rows = _bins(L.EX_ROI[1], L.EX_ROI[3], L.EX_OUTPUT_SIZE[0], L.STRIDE)
    cols = _bins(L.EX_ROI[0], L.EX_ROI[2], L.EX_OUTPUT_SIZE[1], L.STRIDE)
    by_hand = [[float(L.FEATURE[t:b, le:r].max()) for le, r in cols] for t, b in rows]
    assert L.check_roi_pool(by_hand)
    assert L.check_roi_pool(torch.tensor(by_hand, dtype=torch.float64))
    library = roi_pool(L.FEATURE[None, None], [torch.tensor([L.EX_ROI])], L.EX_OUTPUT_SIZE, 1 / 16)
    assert L.check_roi_pool(library[0, 0])


def test_check_roi_pool_wrong():
    cases = {"round()": dict(rounding="python"), "do not floor": dict(rounding="floor"),
             "inclusive": dict(inclusive=False), "maximum": dict(reduce="mean"),
             "columns": dict(transpose=True)}
    for hint, variant in cases.items():
        answer = L._variant_pool(L.FEATURE, L.EX_ROI, L.EX_OUTPUT_SIZE, L.STRIDE, **variant)
        assert not torch.equal(answer, L.expected_roi_pool())
        res = L.check_roi_pool(answer)
        assert not res and hint in res.message, (variant, res.message)
    res = L.check_roi_pool(L.expected_roi_pool().T)
    assert not res and "shape" in res.message
    res = L.check_roi_pool(L.expected_roi_pool() + 1)
    assert not res and "differ" in res.message
    res = L.check_roi_pool("nine")
    assert not res


def test_check_roi_pool_stub_value():
    res = L.check_roi_pool(None)
    assert not res


# ------------------------------------------------------------------ exercise 3: RoI max pooling

def _roi_max_pool(features, rois, output_size, spatial_scale, slip=None):
    """A student's RoI max pooling (Python floats, loops), with one slip switched on."""
    ph, pw = output_size
    height, width = features.shape[-2:]

    def cell(v):
        v *= spatial_scale
        if slip == "python_round":
            return round(v)
        if slip == "half_up":                              # right for v >= 0 only
            return math.floor(v + 0.5)
        return int(math.copysign(math.floor(abs(v) + 0.5), v))

    def bins(start, end, pooled, size):
        step = (end - start + 1) / pooled
        edges = []
        for p in range(pooled):
            lo, hi = math.floor(p * step), math.ceil((p + 1) * step)
            if slip == "rounded_bins":                     # rounding instead of floor / ceil
                lo, hi = round(p * step), round((p + 1) * step)
            if slip == "inclusive_bin_end":                # off by one at the bin's end
                hi += 1
            edges.append((min(max(start + lo, 0), size), min(max(start + hi, 0), size)))
        return edges

    out = features.new_zeros(len(rois), features.shape[1], ph, pw)
    for r, (n, x1, y1, x2, y2) in enumerate(rois.tolist()):
        image = features[0 if slip == "batch" else int(n)]
        for i, (top, bottom) in enumerate(bins(cell(y1), cell(y2), ph, height)):
            for j, (left, right) in enumerate(bins(cell(x1), cell(x2), pw, width)):
                if bottom > top and right > left:
                    out[r, :, i, j] = image[:, top:bottom, left:right].amax(dim=(1, 2))
    return out


def test_pool_cases_cover_the_edges_with_a_local_generator():
    state = torch.random.get_rng_state()
    cases = L._pool_cases()
    assert torch.equal(state, torch.random.get_rng_state()), "the global RNG was used"
    assert len(cases) >= 29                                # 20+ seeded, the edge cases first
    outputs = [torchvision.ops.roi_pool(*c) for c in cases]
    assert any(len(c[1]) == 0 for c in cases)                                   # R = 0
    assert any(c[0].shape[-2:] == (1, 1) for c in cases)                        # a 1 x 1 map
    assert any((c[1][:, 0] > 0).any() for c in cases)                           # images 1, 2
    assert any(c[0].shape[0] == 3 for c in cases)
    whole_off = [(o == 0).flatten(1).all(1) & (c[0].abs().sum() > 0).expand(len(o))
                 for c, o in zip(cases, outputs) if len(o)]
    assert any(w.any() for w in whole_off)                                      # wholly off
    assert any(((c[1][:, 1:] * c[3]) < 0).any() for c in cases)                 # partly off
    assert any((c[1][:, 1] == c[1][:, 3]).any() for c in cases)                 # one cell
    assert any((o < 0).any() for o in outputs)                                  # negative maxima
    assert any(c[2][0] * c[2][1] > 4 for c in cases)


def test_slip_pool_without_a_slip_is_torchvision():
    """The hints compare with _slip_pool's slips: with none it must give torchvision's values
    (float64 bin edges agree with torchvision's float32 ones on these cases)."""
    for case in L._pool_cases():
        assert torch.equal(L._slip_pool(*case), torchvision.ops.roi_pool(*case).double())
        assert torch.equal(_roi_max_pool(*case), torchvision.ops.roi_pool(*case))


def test_check_roi_max_pool_right_and_positional():
    res = L.check_roi_max_pool(_roi_max_pool)
    assert res and res.exercise == "lesson02.roi_max_pool" and "33 batches" in res.message

    def renamed(fmap, boxes, size, scale):                 # called positionally
        return _roi_max_pool(fmap, boxes, size, scale).double()

    assert L.check_roi_max_pool(renamed)


@pytest.mark.parametrize("slip, hint", [
    ("inclusive_bin_end", "already exclusive (a slice end)"),
    ("rounded_bins", "rounded outwards, not to the nearest cell"),
    ("python_round", "Python's round() sends halves to the even number"),
    ("half_up", "halves go away from zero for negative coordinates too"),
    ("batch", "index of its image in the batch")])
def test_check_roi_max_pool_names_the_slip(slip, hint):
    res = L.check_roi_max_pool(lambda *a: _roi_max_pool(*a, slip=slip))
    assert not res and hint in res.message, res.message
    # the smallest failing case: its inputs, the expected answer and the student's
    assert "the smallest: roi_max_pool(features [N, C, H, W]" in res.message
    assert " gave tensor(" in res.message and "expected tensor(" in res.message


def test_check_roi_max_pool_other_slips():
    res = L.check_roi_max_pool(lambda *a: _roi_max_pool(*a).clamp(min=0))
    assert not res and "maximum can be negative" in res.message
    res = L.check_roi_max_pool(lambda f, r, o, s: _roi_max_pool(f.transpose(2, 3), r, o[::-1], s)
                               .transpose(2, 3))
    assert not res and "rows come from y1, y2" in res.message
    res = L.check_roi_max_pool(lambda *a: _roi_max_pool(*a)[:, :1])
    assert not res and "should have shape" in res.message


def test_check_roi_max_pool_refuses_the_library():
    from frcnn_edu import roi_ops
    for fn in (torchvision.ops.roi_pool, lambda *a: torchvision.ops.roi_pool(*a),
               lambda f, r, o, s: torchvision.ops.RoIPool(o, s)(f, r)):
        res = L.check_roi_max_pool(fn)
        assert not res and res.forbidden, res.message
        assert "calls torchvision.ops.roi_pool" in res.message or \
            "calls torchvision.ops.RoIPool" in res.message, res.message
    for name in ("roi_pool", "roi_pool_loop"):
        res = L.check_roi_max_pool(lambda *a, name=name: getattr(roi_ops, name)(*a))
        assert not res and f"calls frcnn_edu.roi_ops.{name}" in res.message
    assert torch.equal(torchvision.ops.roi_pool(*L._pool_cases()[0]),   # put back afterwards
                       roi_pool(*L._pool_cases()[0]))


def test_check_roi_max_pool_stub_none_and_crash():
    assert L.check_roi_max_pool(_stub).status == "todo"
    assert L.check_roi_max_pool(None).status == "todo"
    res = L.check_roi_max_pool(lambda *a: a[0][a[1]])
    assert not res and res.status == "error"


# ------------------------------------------------------------------ exercise 5: mini-batch

def test_expected_minibatch_matches_sample_proposals():
    (fg_a, bg_a, _), (fg_b, bg_b, _) = L.MINIBATCH_IMAGES
    cap = int(L.ROIS_PER_IMAGE * L.FG_FRACTION)
    fg = min(fg_a, cap) + min(fg_b, cap)
    bg = min(bg_a, L.ROIS_PER_IMAGE - min(fg_a, cap)) + min(bg_b, L.ROIS_PER_IMAGE - min(fg_b, cap))
    assert L.expected_minibatch() == (fg, bg) == (25, 88)
    labels = torch.tensor([1] * 3 + [0] * 100)
    assert len(sample_proposals(labels, 64, 0.25)) == 64


def test_check_minibatch():
    assert L.check_minibatch(25, 88)
    assert L.check_minibatch(torch.tensor(25), 88.0)
    res = L.check_minibatch(32, 96)
    assert not res and "each image" in res.message
    res = L.check_minibatch(49, 79)
    assert not res and "at most 16" in res.message
    res = L.check_minibatch(25, 96)
    assert not res and "left over" in res.message
    res = L.check_minibatch(25, 103)
    assert not res and "cannot give more background" in res.message
    res = L.check_minibatch(25, 90)
    assert not res and "min(background" in res.message
    res = L.check_minibatch("a", 3)
    assert not res and "whole numbers" in res.message
    res = L.check_minibatch(None, None)               # the student copy's stub
    assert not res and res.status == "todo" and "not filled in" in res.message


# ------------------------------------------------------------------ exercise 6: SVD params

def test_check_svd_params():
    assert L.check_svd_params(lambda u, v, t: (u * v, t * (u + v)))
    res = L.check_svd_params(lambda u, v, t: (u * v, t * u))
    assert not res and "both new layers" in res.message
    res = L.check_svd_params(lambda u, v, t: (u * v, t * (u + v + 1)))
    assert not res and "singular values" in res.message
    res = L.check_svd_params(lambda u, v, t: (u * v + u, t * (u + v)))
    assert not res and "u * v" in res.message
    res = L.check_svd_params(lambda u, v, t: u * v)
    assert not res and "pair" in res.message
    res = L.check_svd_params(_stub)
    assert not res and "NotImplementedError" in res.message


def test_library_svd_weights_follow_the_formula():
    assert L._library_svd_weights(12, 40, 5) == (12 * 40, 5 * (12 + 40))


# ------------------------------------------------------------------ exercise 4: the multi-task loss

def _sl1(x, beta=1.0):
    x = x.abs()
    return torch.where(x < beta, 0.5 * x * x / beta, x - 0.5 * beta)


def _loss(class_logits, box_regression, labels, targets, slip=None):
    """The lesson's answer, or the same with one slip."""
    R = len(labels)
    cls = F.cross_entropy(class_logits, labels, reduction="sum" if slip == "cls_sum" else "mean")
    deltas = box_regression.reshape(R, -1, 4)
    fg = torch.where(labels > 0)[0]
    if slip == "all_classes":
        box = _sl1(deltas[fg] - targets[fg][:, None]).sum()
    elif slip == "background":
        box = _sl1(deltas[torch.arange(R), labels] - targets).sum()
    elif slip == "off_by_one":
        box = _sl1(deltas[fg, labels[fg] - 1] - targets[fg]).sum()
    elif slip == "beta_ninth":
        box = _sl1(deltas[fg, labels[fg]] - targets[fg], 1 / 9).sum()
    else:
        box = _sl1(deltas[fg, labels[fg]] - targets[fg]).sum()
    box = box / max(len(fg), 1) if slip == "mean_fg" else box / R
    return cls, box


def test_check_fast_rcnn_loss_right():
    res = L.check_fast_rcnn_loss(_loss)
    assert res and "26 cases" in res.message and res.exercise == "lesson02.fast_rcnn_loss"
    assert L.check_fast_rcnn_loss(lambda *a: tuple(t.double() for t in _loss(*a)))


def test_fast_rcnn_loss_cases_cover_the_edges():
    cases = L._loss_cases()
    assert len(cases) >= 26
    assert any(int((c[2] > 0).sum()) == 0 for c in cases)             # no foreground RoI
    assert any(bool((c[2] > 0).all()) and len(c[2]) > 1 for c in cases)  # all foreground
    assert sum(len(c[2]) == 1 for c in cases) >= 2                      # one RoI, fg and bg


def test_check_fast_rcnn_loss_calls_positionally():
    def renamed(scores, deltas, u, v):
        return _loss(scores, deltas, u, v)

    assert L.check_fast_rcnn_loss(renamed)


def test_check_fast_rcnn_loss_wrong_with_hints():
    res = L.check_fast_rcnn_loss(lambda *a: _loss(*a, slip="all_classes"))
    assert not res and "only the 4 outputs of the RoI's true class" in res.message
    res = L.check_fast_rcnn_loss(lambda *a: _loss(*a, slip="background"))
    assert not res and "switches the box loss off for background" in res.message
    res = L.check_fast_rcnn_loss(lambda *a: _loss(*a, slip="mean_fg"))
    assert not res and "not by the number of foreground RoIs" in res.message
    res = L.check_fast_rcnn_loss(lambda *a: _loss(*a, slip="off_by_one"))
    assert not res and "slot for the background" in res.message
    res = L.check_fast_rcnn_loss(lambda *a: _loss(*a, slip="beta_ninth"))
    assert not res and "beta = 1, the paper's" in res.message
    res = L.check_fast_rcnn_loss(lambda *a: _loss(*a, slip="cls_sum"))
    assert not res and "MEAN cross-entropy" in res.message
    res = L.check_fast_rcnn_loss(lambda *a: _loss(*a)[::-1])
    assert not res and "wrong order" in res.message


def test_check_fast_rcnn_loss_checks_the_gradient():
    def leaky(class_logits, box_regression, labels, targets):
        cls, box = _loss(class_logits, box_regression.detach(), labels, targets)
        return cls, box + box_regression.sum() - box_regression.sum().detach()   # same value

    res = L.check_fast_rcnn_loss(leaky)
    assert not res and "gradient" in res.message and "not zero" in res.message
    res = L.check_fast_rcnn_loss(lambda *a: tuple(float(t.detach()) for t in _loss(*a)))
    assert not res and "keeps the graph" in res.message


def test_check_fast_rcnn_loss_refuses_the_library_and_smooth_l1():
    res = L.check_fast_rcnn_loss(fast_rcnn_loss)
    assert not res and "calls frcnn_edu.losses.fast_rcnn_loss" in res.message
    res = L.check_fast_rcnn_loss(lambda *a: fast_rcnn_loss(*a))
    assert not res and "calls frcnn_edu.losses.fast_rcnn_loss" in res.message

    def torch_smooth(c, b, u, v):
        fg = torch.where(u > 0)[0]
        t_u = b.reshape(len(u), -1, 4)[fg, u[fg]]
        return F.cross_entropy(c, u), F.smooth_l1_loss(t_u, v[fg], reduction="sum") / len(u)

    res = L.check_fast_rcnn_loss(torch_smooth)
    assert not res and "calls torch.nn.functional.smooth_l1_loss" in res.message

    def library_smooth(c, b, u, v):
        fg = torch.where(u > 0)[0]
        return F.cross_entropy(c, u), smooth_l1(b.reshape(len(u), -1, 4)[fg, u[fg]], v[fg]) / len(u)

    res = L.check_fast_rcnn_loss(library_smooth)
    assert not res and "calls frcnn_edu.losses.smooth_l1" in res.message


def test_check_fast_rcnn_loss_stub_and_none():
    assert L.check_fast_rcnn_loss(_stub).status == "todo"
    assert L.check_fast_rcnn_loss(None).status == "todo"


def test_fast_rcnn_loss_reference_keeps_tensors():
    cls, box = checks.use_or_reference(None, "lesson02.fast_rcnn_loss")(*L.EX_LOSS_ARGS)
    assert torch.is_tensor(cls) and torch.is_tensor(box)
