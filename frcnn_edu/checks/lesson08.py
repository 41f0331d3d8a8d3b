"""Checkers for lesson 08 (your own data: photographs of tree crowns).

    check_anchor_sizes(fn)   fn(boxes [G, 4], n) -> n anchor sizes read off the boxes
    check_cut_crown(fn)      fn(box, window, min_visible) -> (piece, difficult): the tiling rule

The checker runs the student's function (positionally) on hand-made edge cases and 20 seeded
sets of boxes, compares with `frcnn_edu.anchors.anchor_sizes_from_boxes`, refuses an answer that
calls it, and on a wrong answer names the smallest failing case with the hint of the slip that
explains the answers (widths instead of sqrt(area), areas, the minimum-to-maximum spread, the
nearest box instead of interpolation, no rounding, largest first).

Shape key:
    G  ground-truth boxes
"""
import torch

from ..anchors import anchor_sizes_from_boxes
from ..data.tiling import boxes_in_window
from . import harness
from .result import REFERENCES, exercise

__all__ = ["check_anchor_sizes", "check_cut_crown", "EX_BOXES"]

#: The lesson's worked example: five boxes (x1, y1, x2, y2), one of them long and thin.
EX_BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 0.0, 40.0, 20.0], [0.0, 30.0, 30.0, 60.0],
                         [50.0, 50.0, 90.0, 90.0], [100.0, 0.0, 110.0, 90.0]])

REFERENCES["lesson08.anchor_sizes"] = anchor_sizes_from_boxes


def _library(boxes, n):
    return torch.tensor(anchor_sizes_from_boxes(boxes, n), dtype=torch.float64)


def _cases():
    """(boxes [G, 4], n): edge cases first, then 20 seeded sets of boxes of log-normal sizes."""
    cases = [(EX_BOXES.clone(), 3),
             (torch.tensor([[5.0, 5.0, 25.0, 45.0]]), 3),              # one box: three equal sizes
             (EX_BOXES.clone(), 1),                                     # n = 1: the median
             (torch.tensor([[0.0, 0.0, 4.0, 100.0], [0.0, 0.0, 100.0, 4.0],
                            [0.0, 0.0, 20.0, 20.0], [0.0, 0.0, 31.0, 31.0]]), 2),  # thin boxes
             (torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 6 + [[0.0, 0.0, 300.0, 300.0]]), 3)]  # outlier
    g = harness.seeded(80)
    for i in range(20):
        count = 1 + int(torch.randint(60, (1,), generator=g))
        side = torch.exp(3.4 + 0.5 * torch.randn(count, 1, generator=g))           # ~30 px
        aspect = torch.exp(0.2 * torch.randn(count, 1, generator=g))
        wh = torch.cat([side / aspect.sqrt(), side * aspect.sqrt()], 1).round().clamp_min(1)
        xy = (torch.rand(count, 2, generator=g) * 300).round()
        cases.append((torch.cat([xy, xy + wh], 1), 1 + i % 5))
    return cases


def _sizes(boxes):
    return (boxes[:, 2:] - boxes[:, :2]).double().prod(1).sqrt()


def _variants(boxes, n):
    """(hint, the answer that slip gives) for the usual slips."""
    wh = (boxes[:, 2:] - boxes[:, :2]).double()
    q = (torch.arange(n, dtype=torch.float64) + 0.5) / n
    ends = torch.linspace(0, 1, n, dtype=torch.float64) if n > 1 else torch.tensor([0.5],
                                                                                  dtype=torch.float64)
    sizes = _sizes(boxes)
    return [
        ("an anchor's size is the side of a square of its area, sqrt(w * h): you used the widths",
         torch.quantile(wh[:, 0], q).round()),
        ("an anchor's size is sqrt(w * h), not the mean of w and h (they differ for thin boxes)",
         torch.quantile(wh.mean(1), q).round()),
        ("sizes are lengths: take sqrt(w * h), not the area w * h",
         torch.quantile(wh.prod(1), q).round()),
        ("quantiles from 0 to 1 give the smallest and the largest box a size of their own; take "
         "the middle of each of n equal shares, q = (i + 0.5) / n",
         torch.quantile(sizes, ends).round()),
        ("interpolate between the two nearest sizes (torch.quantile's default, "
         "interpolation='linear'), not the nearest box's size",
         torch.quantile(sizes, q, interpolation="nearest").round()),
        ("round the sizes to whole pixels (torch.round)", torch.quantile(sizes, q)),
        ("give the sizes smallest first", torch.quantile(sizes, q).round().flip(0)),
        ("one mean size for all n says nothing about the spread: take n quantiles of the sizes",
         lambda got: None if n == 1 or len(sizes.unique()) == 1 else bool((got == got[0]).all())),
    ]


def _describe(args):
    boxes, n = args
    shown = harness.show(boxes) if len(boxes) <= 7 else f"{len(boxes)} boxes"
    return f"{shown}, n={n}"


@exercise("lesson08.anchor_sizes")
def check_anchor_sizes(fn):
    """fn(boxes float [G, 4], n) -> n sizes (ints, smallest first): the quantiles of sqrt(w * h)
    at (i + 0.5) / n, linearly interpolated and rounded to whole pixels."""
    cases = _cases()
    return harness.check_function(
        fn, _library, cases, harness.close(rtol=0, atol=1e-6),
        convert=harness.as_float_tensor(lambda args: (args[1],), "your sizes"),
        variants=lambda boxes, n: _variants(boxes, n),
        hint="sizes = sqrt(w * h) of every box; torch.quantile(sizes, (i + 0.5) / n for i in "
             "range(n)), rounded",
        forbidden=["frcnn_edu.anchors.anchor_sizes_from_boxes"], name="anchor_sizes",
        describe=_describe,
        passed=f"your sizes equal anchor_sizes_from_boxes on {len(cases)} sets of boxes (one "
               "box, n = 1, thin boxes, an outlier and 20 seeded sets): each size stands for an "
               "equal share of the objects.")


def expected_sizes(boxes, n):
    """The library's answer, for the lesson's text (a tuple of ints)."""
    return anchor_sizes_from_boxes(boxes, n)



# ----------------------------------------------------------------------------- exercise 2
def _library_cut(box, window, min_visible):
    index, clipped, small = boxes_in_window(torch.tensor([box], dtype=torch.float64), window,
                                            min_visible)
    return (None, None) if len(index) == 0 else (clipped[0].tolist(), bool(small[0]))


def _cut_cases():
    """(box, window, min_visible): inside, cut, exactly half, a corner, outside, touching, then
    12 seeded boxes around a tile's corner."""
    tile = (100, 100, 200, 200)
    cases = [((120.0, 130.0, 150.0, 160.0), tile, 0.5),      # inside
             ((70.0, 120.0, 110.0, 140.0), tile, 0.5),       # 25 % inside: difficult
             ((80.0, 120.0, 120.0, 140.0), tile, 0.5),       # exactly half: not difficult
             ((190.0, 190.0, 230.0, 230.0), tile, 0.5),      # a corner, 1/16 inside
             ((10.0, 10.0, 40.0, 40.0), tile, 0.5),          # outside: not in the tile
             ((60.0, 120.0, 100.0, 150.0), tile, 0.5),       # touches the edge: not in the tile
             ((70.0, 120.0, 110.0, 140.0), tile, 0.2)]       # 25 % inside, min_visible 0.2
    g = harness.seeded(81)
    for _ in range(12):
        xy = 60 + torch.rand(2, generator=g) * 120
        wh = 10 + torch.rand(2, generator=g) * 60
        cases.append((tuple(round(float(v), 1) for v in torch.cat([xy, xy + wh])), tile, 0.5))
    return cases


def _convert_cut(got, args):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise harness.Wrong("return two things, (piece, difficult): the piece as 4 numbers "
                            "(or None when the tile does not show the box) and a bool")
    piece, difficult = got
    if piece is None:
        return None, None
    values = torch.as_tensor(piece, dtype=torch.float64).flatten().tolist()
    if len(values) != 4:
        raise harness.Wrong(f"the piece should be 4 numbers (x1, y1, x2, y2), got {len(values)}")
    return values, bool(difficult)


def _same_cut(got, want, args):
    if want[0] is None or got[0] is None:
        return got[0] is None and want[0] is None
    return all(abs(a - b) < 1e-6 for a, b in zip(got[0], want[0])) and got[1] == want[1]


_CUT_HINTS = (
    "a box that only touches the tile, or lies outside it, is not in the tile: return "
    "(None, None) when the clipped box has no area",
    "give the piece in the tile's pixels: subtract the tile's top-left corner (x1, y1) from the "
    "clipped box",
    "a piece with exactly min_visible of its box inside counts as whole: difficult is "
    "visible < min_visible, not <=",
    "visible is the share of the BOX's area inside the tile, not of the tile's area",
    "clip the box to the tile: min(max(x, tile x1), tile x2) for each coordinate")


def _cut_variants(box, window, min_visible):
    """(hint, the answer that slip gives, or a predicate, or None where it says nothing)."""
    b = torch.tensor(box, dtype=torch.float64)
    x1, y1, x2, y2 = (float(v) for v in window)
    lo, hi = torch.tensor([x1, y1, x1, y1]), torch.tensor([x2, y2, x2, y2])
    c = torch.maximum(torch.minimum(b, hi), lo)
    inside = float((c[2] - c[0]) * (c[3] - c[1]))
    area = float((b[2] - b[0]) * (b[3] - b[1]))
    if inside <= 0:
        answers = [lambda got: got[0] is not None, None, None, None, None]
    else:
        answers = [None, (c.tolist(), inside / area < min_visible),
                   ((c - lo).tolist(), inside / area <= min_visible),
                   ((c - lo).tolist(), inside / ((x2 - x1) * (y2 - y1)) < min_visible),
                   ((b - lo).tolist(), inside / area < min_visible)]
    return list(zip(_CUT_HINTS, answers))


@exercise("lesson08.cut_crown")
def check_cut_crown(fn):
    """fn(box (x1, y1, x2, y2), window (x1, y1, x2, y2), min_visible) -> (piece, difficult):
    the box clipped to the window in the window's pixels and whether less than min_visible of
    its area is inside, or (None, None) when the window does not show it."""
    cases = _cut_cases()
    return harness.check_function(
        fn, _library_cut, cases, _same_cut, convert=_convert_cut,
        variants=lambda box, window, mv: _cut_variants(box, window, mv),
        hint="clip the box to the window, shift it by the window's (x1, y1), and compare the "
             "clipped area over the box's area with min_visible",
        forbidden=["frcnn_edu.data.tiling.boxes_in_window"], name="cut_crown",
        passed=f"your rule matches frcnn_edu.data.tiling on {len(cases)} boxes (inside, cut, "
               "exactly half, a corner, outside, touching the edge, 12 seeded): pieces in the "
               "tile's pixels, difficult under min_visible.")
