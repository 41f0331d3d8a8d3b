"""Tests for the lesson 01 checkers: a right answer passes, wrong ones fail with a useful hint,
a stub (NotImplementedError) is reported, never raised."""
import torch

from frcnn_edu import checks
from frcnn_edu.boxes import encode_boxes
from frcnn_edu.checks import lesson01 as L


def _stub(*args, **kwargs):
    raise NotImplementedError("replace this line with your answer")


def test_lesson_module_is_reachable_from_checks():
    assert checks.lesson01 is L


# ----------------------------------------------------------------------------- exercise 1
def test_check_xywh_to_xyxy_right():
    assert L.check_xywh_to_xyxy(lambda r: torch.cat([r[:, :2], r[:, :2] + r[:, 2:]], 1))
    # a plain-Python answer (list of lists) also passes
    assert L.check_xywh_to_xyxy(lambda r: [[x, y, x + w, y + h] for x, y, w, h in r.tolist()])


def test_check_xywh_to_xyxy_wrong():
    res = L.check_xywh_to_xyxy(lambda r: r)
    assert not res and "unchanged" in res.message
    res = L.check_xywh_to_xyxy(lambda r: torch.cat([r[:, :2], r[:, :2] + r[:, 2:] - 1], 1))
    assert not res and "no -1" in res.message
    res = L.check_xywh_to_xyxy(lambda r: torch.cat([r[:, :2] - r[:, 2:] / 2, r[:, :2] + r[:, 2:] / 2], 1))
    assert not res and "top-left" in res.message
    res = L.check_xywh_to_xyxy(lambda r: r[:, :2])
    assert not res and "shape" in res.message


def test_check_xywh_to_xyxy_stub_and_crash():
    res = L.check_xywh_to_xyxy(_stub)
    assert not res and "NotImplementedError" in res.message
    res = L.check_xywh_to_xyxy(lambda r: r.nope)
    assert not res and "AttributeError" in res.message


# ----------------------------------------------------------------------------- exercise 2
def _context_box(box, size, context, scale=None, both_sides=True):
    x1, y1, x2, y2 = box
    sx = context * (x2 - x1) / (size - 2 * context) if scale is None else scale
    sy = context * (y2 - y1) / (size - 2 * context) if scale is None else scale
    if not both_sides:
        return [x1, y1, x2 + 2 * sx, y2 + 2 * sy]
    return [x1 - sx, y1 - sy, x2 + sx, y2 + sy]


def test_check_context_box_right():
    assert L.check_context_box(_context_box)
    assert L.check_context_box(lambda b, s, c: torch.tensor(_context_box(b, s, c)))


def test_check_context_box_wrong():
    res = L.check_context_box(lambda b, s, c: _context_box(b, s, c, scale=c))
    assert not res and "WARPED crop" in res.message
    res = L.check_context_box(lambda b, s, c: [b[0] - c * (b[2] - b[0]) / s, b[1] - c * (b[3] - b[1]) / s,
                                               b[2] + c * (b[2] - b[0]) / s, b[3] + c * (b[3] - b[1]) / s])
    assert not res and "size - 2 * context" in res.message
    res = L.check_context_box(lambda b, s, c: _context_box(b, s, c, both_sides=False))
    assert not res and "both sides" in res.message
    res = L.check_context_box(lambda b, s, c: list(b))
    assert not res and "pad =" in res.message
    res = L.check_context_box(lambda b, s, c: [1.0, 2.0])
    assert not res and "4 numbers" in res.message


def test_reference_context_box_is_what_warp_regions_crops():
    """The checker's reference box, warped without context, gives warp_regions' crop with it."""
    from frcnn_edu.models.rcnn import warp_regions
    from frcnn_edu.roi_ops import roi_align
    image = torch.rand(3, 160, 240, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for box, size, context in L._context_cases():
        want = warp_regions(image, torch.tensor([box], dtype=torch.float64), size, context)
        mine = roi_align(image[None], [L._library_context_box(box, size, context)[None]], size,
                         1.0, sampling_ratio=1, aligned=True)
        assert torch.allclose(mine, want, atol=1e-6)


def test_check_context_box_stub():
    res = L.check_context_box(_stub)
    assert not res and "NotImplementedError" in res.message


# ---------------------------------------------------------- exercise 4 (regression targets)
def _targets(p, g, corner=False):
    pw, ph = p[:, 2] - p[:, 0], p[:, 3] - p[:, 1]
    gw, gh = g[:, 2] - g[:, 0], g[:, 3] - g[:, 1]
    if corner:
        px, py, gx, gy = p[:, 0], p[:, 1], g[:, 0], g[:, 1]
    else:
        px, py = p[:, 0] + pw / 2, p[:, 1] + ph / 2
        gx, gy = g[:, 0] + gw / 2, g[:, 1] + gh / 2
    return torch.stack([(gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)], 1)


def test_check_regression_targets_right():
    assert L.check_regression_targets(_targets)
    res = L.check_regression_targets(encode_boxes)          # the function it replaces
    assert not res and "calls frcnn_edu.boxes.encode_boxes" in res.message


def test_check_regression_targets_wrong():
    res = L.check_regression_targets(lambda p, g: _targets(p, g, corner=True))
    assert not res and "CENTRE" in res.message
    res = L.check_regression_targets(lambda p, g: _targets(g, p))
    assert not res and "swapped" in res.message
    res = L.check_regression_targets(lambda p, g: torch.cat([_targets(p, g)[:, :2], _targets(p, g)[:, 2:].exp()], 1))
    assert not res and "log space" in res.message
    res = L.check_regression_targets(lambda p, g: _targets(p, g)[:, :2])
    assert not res and "shape" in res.message


def test_check_regression_targets_stub():
    res = L.check_regression_targets(_stub)
    assert not res and "NotImplementedError" in res.message


# -------------------------------------------------------------- exercise 3 (hard negatives)
def test_expected_hard_negatives_follow_fit_svms():
    assert L.NEG_IOU == 0.3
    idx = L.expected_hard_negatives().tolist()
    assert idx == [1, 2, 4, 9]
    assert all(L.EX_IOUS[i] < 0.3 and L.EX_SCORES[i] > -1 for i in idx)


def test_check_hard_negatives_right():
    assert L.check_hard_negatives(lambda s, u: torch.nonzero((u < 0.3) & (s > -1)).squeeze(1))
    assert L.check_hard_negatives(lambda s, u: (u < 0.3) & (s > -1))              # a mask
    assert L.check_hard_negatives(lambda s, u: torch.nonzero((u < 0.3) & (s > -1)).flip(0))  # any order


def test_check_hard_negatives_refuses_the_exercise_answer_typed_in():
    res = L.check_hard_negatives(lambda s, u: [9, 4, 2, 1])     # right on the exercise only
    assert not res and "cases fail" in res.message


def test_check_hard_negatives_wrong():
    res = L.check_hard_negatives(lambda s, u: torch.nonzero(s > -1).squeeze(1))
    assert not res and "only negatives" in res.message
    res = L.check_hard_negatives(lambda s, u: torch.nonzero((u < 0.3) & (s > 0)).squeeze(1))
    assert not res and "not only above 0" in res.message
    res = L.check_hard_negatives(lambda s, u: torch.nonzero((u < 0.3) & (s < -1)).squeeze(1))
    assert not res and "HIGH score" in res.message
    res = L.check_hard_negatives(lambda s, u: torch.nonzero((u <= 0.3) & (s > -1)).squeeze(1))
    assert not res and "strictly" in res.message
    res = L.check_hard_negatives(lambda s, u: torch.nonzero((u < 0.3) & (s >= -1)).squeeze(1))
    assert not res and "ON the margin" in res.message
    res = L.check_hard_negatives(lambda s, u: s[(u < 0.3) & (s > -1)])
    assert not res and "INDICES" in res.message
    res = L.check_hard_negatives(lambda s, u: (u < 0.3)[:1])
    assert not res and "mask" in res.message


def test_check_hard_negatives_stub():
    res = L.check_hard_negatives(_stub)
    assert not res and "NotImplementedError" in res.message
