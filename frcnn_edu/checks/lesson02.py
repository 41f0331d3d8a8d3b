"""Checkers for lesson 02 (Fast R-CNN: RoI pooling, the multi-task loss, hierarchical sampling,
truncated SVD).

    check_bin_edges(fn)          fn(x1, x2, pooled, stride) -> [(start, end), ...] bins along one axis
    check_roi_pool(answer)       RoI pooling of EX_ROI on FEATURE (EX_OUTPUT_SIZE), by hand
    check_roi_max_pool(fn)       fn(features [N, C, H, W], rois [R, 5], output_size, spatial_scale)
                                 -> [R, C, ph, pw], RoI max pooling of a batch (torchvision's)
    check_fast_rcnn_loss(fn)     fn(class_logits [R, K+1], box_regression [R, 4(K+1)], labels [R],
                                 regression_targets [R, 4]) -> (loss_cls, loss_box), eq. 1
    check_minibatch(n_fg, n_bg)  foreground / background RoIs in the mini-batch of MINIBATCH_IMAGES
    check_svd_params(fn)         fn(u, v, t) -> (weights before, weights after) truncated SVD

Each compares with the library (``frcnn_edu.roi_ops``, ``torchvision.ops.roi_pool``,
``frcnn_edu.losses.fast_rcnn_loss``, ``frcnn_edu.matching``,
``frcnn_edu.models.RoIHead.compress_fc``) and names the likely slip when the answer is wrong.
"""
import functools
import math

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from frcnn_edu import losses as _losses
from frcnn_edu.matching import sample_proposals
from frcnn_edu.models import RoIHead
from frcnn_edu.roi_ops import pool_bins, roi_pool

from . import harness
from .result import REFERENCES, Result, exercise, not_filled_in

__all__ = ["FEATURE", "STRIDE", "DEMO_ROI", "EX_ROI", "EX_OUTPUT_SIZE", "MINIBATCH_IMAGES",
           "ROIS_PER_IMAGE", "FG_FRACTION", "expected_roi_pool", "expected_minibatch",
           "check_bin_edges", "check_roi_pool", "POOL_ARGS", "check_roi_max_pool",
           "check_minibatch", "check_svd_params", "EX_LOSS_ARGS", "check_fast_rcnn_loss"]

#: A small one-channel feature map [6, 8] (integers, so it can be pooled by hand) ...
FEATURE = torch.tensor([[2, 2, 2, 6, 5, 0, 3, 4],
                        [8, 8, 1, 5, 7, 5, 7, 0],
                        [6, 6, 7, 0, 1, 8, 5, 0],
                        [3, 4, 5, 7, 0, 9, 5, 2],
                        [4, 6, 6, 3, 4, 5, 7, 3],
                        [4, 6, 2, 5, 5, 9, 8, 2]], dtype=torch.float32)
#: ... of stride 16: it belongs to a 96 x 128 image.
STRIDE = 16
#: The lesson's worked example (x1, y1, x2, y2) in image pixels, pooled to 2 x 2.
DEMO_ROI = (20.0, 24.0, 80.0, 56.0)
#: Exercise 2: this RoI pooled to EX_OUTPUT_SIZE (rows, columns).
EX_ROI = (24.0, 40.0, 104.0, 72.0)
EX_OUTPUT_SIZE = (2, 3)

#: Exercise 5: (foreground, background, ignored) proposals of the two images of a mini-batch.
MINIBATCH_IMAGES = ((40, 300, 150), (9, 40, 60))
ROIS_PER_IMAGE, FG_FRACTION = 64, 0.25

# (x1, x2, pooled, stride) cases for check_bin_edges: halves (2.5 -> 3, not 2), overlapping
# bins, more bins than cells, stride 1 and 32.
_BIN_CASES = ((20.0, 80.0, 2, 16), (24.0, 104.0, 3, 16), (8.0, 72.0, 2, 16), (40.0, 200.0, 7, 16),
              (100.0, 130.0, 4, 16), (3.0, 10.0, 3, 1), (0.0, 160.0, 7, 16), (48.0, 336.0, 7, 32),
              (5.4, 37.6, 2, 4))


# ----------------------------------------------------------------------------- helpers
def _library_bins(x1, x2, pooled, stride):
    lo, hi = pool_bins(torch.tensor([x1 / stride]), torch.tensor([x2 / stride]), pooled, 10**6)
    return list(zip(lo[0].tolist(), hi[0].tolist()))


def _variant_bins(x1, x2, pooled, stride, rounding="half_away", inclusive=True):
    """The bin edges with one rule changed: how the RoI is rounded, whether its end is
    inclusive (the +1), to name a student's slip."""
    rnd = {"half_away": lambda v: math.floor(v + 0.5), "python": round, "floor": math.floor,
           "trunc": int, "none": lambda v: v}[rounding]
    start, end = rnd(x1 / stride), rnd(x2 / stride)
    size = max(end - start + (1 if inclusive else 0), 1) / pooled
    return [(math.floor(p * size + start), math.ceil((p + 1) * size + start)) for p in range(pooled)]


def _variant_pool(feature, roi, output_size, stride, rounding="half_away", inclusive=True,
                  reduce="max", transpose=False):
    """RoI pooling of one RoI with one rule changed (for hints only; roi_pool is the reference)."""
    x1, y1, x2, y2 = roi
    if transpose:
        x1, y1, x2, y2 = y1, x1, y2, x2
    rows = _variant_bins(y1, y2, output_size[0], stride, rounding, inclusive)
    cols = _variant_bins(x1, x2, output_size[1], stride, rounding, inclusive)
    H, W = feature.shape
    out = torch.zeros(output_size)
    for i, (t, b) in enumerate(rows):
        for j, (le, r) in enumerate(cols):
            cells = feature[max(t, 0):min(b, H), max(le, 0):min(r, W)]
            if cells.numel():
                out[i, j] = cells.max() if reduce == "max" else cells.mean()
    return out


def _as_pairs(value, n):
    """A list of n (start, end) int pairs, or None."""
    try:
        pairs = [tuple(int(round(float(v))) for v in pair) for pair in value]
    except (TypeError, ValueError):
        return None
    return pairs if len(pairs) == n and all(len(p) == 2 for p in pairs) else None


def expected_roi_pool():
    """The library's answer to exercise 2: [ph, pw] float32."""
    return roi_pool(FEATURE[None, None], [torch.tensor([EX_ROI])], EX_OUTPUT_SIZE, 1 / STRIDE)[0, 0]


def expected_minibatch():
    """(foreground, background) RoIs that ``sample_proposals`` draws from MINIBATCH_IMAGES."""
    n_fg = n_bg = 0
    for fg, bg, ignored in MINIBATCH_IMAGES:
        labels = torch.cat([torch.full((fg,), 1), torch.zeros(bg, dtype=torch.int64),
                            torch.full((ignored,), -1)])
        keep = sample_proposals(labels, ROIS_PER_IMAGE, FG_FRACTION,
                                generator=torch.Generator().manual_seed(0))
        n_fg += int((labels[keep] >= 1).sum())
        n_bg += int((labels[keep] == 0).sum())
    return n_fg, n_bg


# -------------------------------------------------------------------------- exercise 1: bin edges
_BIN_HINTS = (
    (dict(rounding="python"), "Python's round() sends halves to the even number (round(2.5) == 2); "
                              "RoI pooling rounds halves away from zero (2.5 -> 3), like C's round()"),
    (dict(rounding="floor"), "round the scaled coordinates to the nearest cell, do not floor them"),
    (dict(rounding="trunc"), "round the scaled coordinates to the nearest cell, do not truncate them"),
    (dict(inclusive=False), "the RoI covers cells start..end *inclusive*: end - start + 1 cells"),
    (dict(rounding="none"), "round x1 / stride and x2 / stride to whole cells first"),
)


def _bin_cases():
    """(x1, x2, pooled, stride): the hand-made cases, a one-cell RoI, then 22 seeded random
    ones whose x / stride often ends in .5 (where the rounding rule matters)."""
    g = harness.seeded(20)
    cases = list(_BIN_CASES) + [(40.0, 40.0, 2, 16)]
    for i in range(22):
        stride = (1, 4, 8, 16, 32)[i % 5]
        halves = torch.randint(0, 40, (2,), generator=g).sort().values.tolist()
        x1, x2 = (stride * (h / 2) for h in halves)
        cases.append((x1, x2 + stride * (i % 3), 1 + i % 7, stride))
    return cases


def _bin_pairs(got, args):
    pairs = _as_pairs(got, args[2])
    if pairs is None:
        raise harness.Wrong(f"return {args[2]} pairs (start, end), got {got!r}")
    return pairs


@exercise("lesson02.bin_edges")
def check_bin_edges(fn):
    """fn(x1, x2, pooled, stride) -> ``pooled`` pairs (start, end) of feature cells, end exclusive."""
    cases = _bin_cases()
    return harness.check_function(
        fn, _library_bins, cases, lambda got, want, args: got == want, convert=_bin_pairs,
        variants=lambda x1, x2, pooled, stride: [
            (hint, _variant_bins(x1, x2, pooled, stride, **v)) for v, hint in _BIN_HINTS],
        hint="bin p spans floor(p * size) .. ceil((p + 1) * size) cells after the start, with "
             "size = (number of cells) / pooled",
        forbidden=["frcnn_edu.roi_ops.pool_bins", "frcnn_edu.widgets.roi_pooling.roi_pool_bins"],
        name="bin_edges",
        passed=f"your bin edges match frcnn_edu.roi_ops on {len(cases)} cases (halves, one-cell "
               "RoIs, more bins than cells, strides 1 to 32).")


# ---------------------------------------------------------------- exercise 2: RoI pooling by hand
_POOL_HINTS = (
    (dict(rounding="python"), "Python's round() sends halves to the even number; RoI pooling "
                              "rounds halves away from zero: 2.5 -> 3 and 4.5 -> 5 (round() gives 2 and 4)"),
    (dict(rounding="floor"), "round the RoI's coordinates / 16 to the nearest cell, do not floor"),
    (dict(inclusive=False), "the RoI covers cells start..end inclusive (end - start + 1 cells)"),
    (dict(reduce="mean"), "RoI pooling takes the maximum of each bin, not the average"),
    (dict(transpose=True), "x runs along the columns (width), y along the rows (height)"),
)


@exercise("lesson02.roi_pool_by_hand")
def check_roi_pool(answer):
    """``answer``: the EX_OUTPUT_SIZE output of RoI pooling EX_ROI on FEATURE (stride 16)."""
    want = expected_roi_pool()
    if answer is None:
        return not_filled_in()
    try:
        got = torch.as_tensor(answer, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError):
        return Result(False, f"give the output as a {list(want.shape)} tensor or nested list, "
                             f"got {answer!r}")
    if got.shape != want.shape:
        return Result(False, f"the output has {EX_OUTPUT_SIZE[0]} rows and {EX_OUTPUT_SIZE[1]} "
                             f"columns: shape {list(want.shape)}, got {list(got.shape)}")
    if torch.equal(got, want):
        return Result(True, "that is what frcnn_edu.roi_ops.roi_pool returns.")
    for variant, hint in _POOL_HINTS:
        if torch.allclose(got, _variant_pool(FEATURE, EX_ROI, EX_OUTPUT_SIZE, STRIDE, **variant)):
            return Result(False, hint)
    wrong = int((got != want).sum())
    return Result(False, f"{wrong} of the {want.numel()} values differ; find the RoI's cells "
                         "(round x / 16, ends inclusive), split them into bins with floor / ceil "
                         "edges, and take each bin's maximum")


# --------------------------------------------------------- exercise 3: RoI max pooling of a batch
# RoI max pooling of a batch of RoIs (the forward pass of torchvision.ops.roi_pool).
#: The order of the arguments of ``roi_max_pool`` (it is called positionally, as
#: ``torchvision.ops.roi_pool`` is): features [N, C, H, W], rois [R, 5] rows
#: (batch_index, x1, y1, x2, y2) in image pixels, output_size (ph, pw), spatial_scale.
POOL_ARGS = ("features", "rois", "output_size", "spatial_scale")

_ROUNDINGS = {"half_away": lambda v: int(math.copysign(math.floor(abs(v) + 0.5), v)),
              "half_up": lambda v: math.floor(v + 0.5), "python": round, "floor": math.floor}


def _slip_edges(start, end, pooled, size, rounding, inclusive, bins, clip_roi, clamp):
    """Bin edges [(start, end)] along one axis, end excluded, with one rule changed (the
    defaults give torchvision's edges; `start`, `end` already scaled to the feature map)."""
    first, last = _ROUNDINGS[rounding](start), _ROUNDINGS[rounding](end)
    if clip_roi:                                   # the RoI clipped to the map before splitting
        first, last = max(first, 0), min(last, size - 1)
    step = max(last - first + (1 if inclusive else 0), 1) / pooled
    lo_hi = {"outwards": lambda p: (math.floor(p * step), math.ceil((p + 1) * step)),
             "nearest": lambda p: (math.floor(p * step + 0.5), math.floor((p + 1) * step + 0.5)),
             "end_plus_one": lambda p: (math.floor(p * step), math.ceil((p + 1) * step) + 1)}[bins]
    edges = [(first + lo, first + hi) for lo, hi in map(lo_hi, range(pooled))]
    return [(min(max(a, 0), size), min(max(b, 0), size)) for a, b in edges] if clamp else edges


def _slip_pool(features, rois, output_size, spatial_scale, rounding="half_away", inclusive=True,
               bins="outwards", clip_roi=False, clamp=True, first_image=False, transpose=False,
               reduce="max", empty=0.0, floor_at_zero=False):
    """RoI max pooling written as loops, with one rule changed to name a student's slip (the
    defaults give torchvision's answer on the checker's cases; the tests hold it to that)."""
    (ph, pw), (H, W) = output_size, features.shape[-2:]
    out = torch.full((len(rois), features.shape[1], ph, pw), empty, dtype=torch.float64)
    axis = dict(rounding=rounding, inclusive=inclusive, bins=bins, clip_roi=clip_roi, clamp=clamp)
    for r, (n, x1, y1, x2, y2) in enumerate(rois.tolist()):
        if transpose:
            x1, y1, x2, y2 = y1, x1, y2, x2
        fmap = features[0 if first_image else int(n)].double()
        rows = _slip_edges(y1 * spatial_scale, y2 * spatial_scale, ph, H, **axis)
        cols = _slip_edges(x1 * spatial_scale, x2 * spatial_scale, pw, W, **axis)
        for i, (top, bottom) in enumerate(rows):
            for j, (left, right) in enumerate(cols):
                cells = fmap[:, top:bottom, left:right].flatten(1)     # [C, cells]
                if cells.shape[1]:
                    value = cells.amax(1) if reduce == "max" else cells.mean(1)
                    out[r, :, i, j] = value.clamp(min=0) if floor_at_zero else value
    return out


_ROI_POOL_SLIPS = (
    (dict(first_image=True), "each RoI's first number is the index of its image in the batch: "
                             "pool from features[int(roi[0])], not from the first image"),
    (dict(transpose=True), "x runs along the columns (W, the last axis) and y along the rows "
                           "(H): the rows come from y1, y2 and the columns from x1, x2"),
    (dict(rounding="python"), "Python's round() sends halves to the even number (round(2.5) == "
                              "2); RoI pooling rounds x * spatial_scale to the nearest cell with "
                              "halves away from zero (2.5 -> 3, -1.5 -> -2), like C's round()"),
    (dict(rounding="half_up"), "halves go away from zero for negative coordinates too: -1.5 -> "
                               "-2, where math.floor(v + 0.5) gives -1 (C's round(); "
                               "math.copysign(math.floor(abs(v) + 0.5), v) does it)"),
    (dict(rounding="floor"), "round x * spatial_scale to the nearest cell; do not floor it"),
    (dict(inclusive=False), "the RoI covers the cells start..end inclusive: end - start + 1 "
                            "cells, so a RoI inside one cell is 1 cell, not 0"),
    (dict(bins="nearest"), "bin edges are rounded outwards, not to the nearest cell: bin p "
                           "starts at floor(p * bin) and ends at ceil((p + 1) * bin) (after "
                           "the RoI's first cell), so neighbouring bins may share a cell"),
    (dict(bins="end_plus_one"), "a bin's end, start + ceil((p + 1) * bin), is already exclusive "
                                "(a slice end): do not add 1 to it"),
    (dict(clip_roi=True), "do not clip the RoI to the map before splitting it: the bins are "
                          "cut from the whole rounded RoI, and only the bins' edges are then "
                          "clamped to the map (a bin wholly off the map is empty)"),
    (dict(clamp=False), "clamp each bin's edges to the map (0..H, 0..W) before slicing: in "
                        "Python a negative start counts from the end of the axis"),
    (dict(floor_at_zero=True), "a bin's maximum can be negative: take the max over its cells "
                               "(starting from 0 caps it at 0); only an empty bin outputs 0"),
    (dict(empty=-math.inf), "an empty bin (wholly off the map) outputs 0, not -inf"),
    (dict(reduce="mean"), "RoI pooling takes the maximum of each bin, not the average"),
)


def _pool_case(g, N, C, H, W, R, output_size, stride, reach=2):
    """A seeded case: integer-valued features [N, C, H, W] (ties and negatives happen), R RoIs
    on random images whose corners fall on half and quarter cells, some off the map by up to
    `reach` cells (x2 >= x1, y2 >= y1)."""
    features = torch.randint(-9, 10, (N, C, H, W), generator=g).float()

    def quarters(n, lo, hi):                       # n cell coordinates in [lo, hi], 0.25 apart
        return (lo + torch.rand(n, generator=g) * (hi - lo)).mul(4).round() / 4
    x1, y1 = quarters(R, -reach, W + 1), quarters(R, -reach, H + 1)
    x2 = x1 + quarters(R, 0, W / 2 + reach)
    y2 = y1 + quarters(R, 0, H / 2 + reach)
    batch = torch.randint(0, N, (R,), generator=g).float()
    rois = torch.stack([batch, x1 * stride, y1 * stride, x2 * stride, y2 * stride], 1)
    return features, rois, tuple(output_size), 1.0 / stride


def _pool_cases():
    """The lesson's map with its two RoIs, the edge cases, then 24 seeded random batches."""
    g = harness.seeded(22)
    ints = lambda shape: torch.randint(-9, 10, shape, generator=g).float()   # noqa: E731
    grid = torch.arange(16.0).view(1, 1, 4, 4)
    rois = lambda *rows: torch.tensor(rows, dtype=torch.float32)             # noqa: E731
    cases = [
        (FEATURE[None, None], rois((0, *DEMO_ROI), (0, *EX_ROI)), (2, 3), 1 / STRIDE),
        (ints((2, 3, 4, 5)), torch.zeros(0, 5), (2, 2), 1 / 16),                  # R = 0
        (ints((2, 3, 1, 1)), rois((1, 0, 0, 16, 16), (0, 4, 4, 8, 8), (1, -20, -20, 40, 40)),
         (2, 2), 1 / 16),                                                         # a 1 x 1 map
        (grid, rois((0, 40, 24, 40, 24), (0, 17, 33, 20, 38)), (3, 3), 1 / 16),   # one cell
        (grid, rois((0, -24, -8, 30, 40), (0, 40, 20, 100, 90)), (2, 2), 1 / 16),  # partly off
        (grid, rois((0, 100, 100, 160, 160), (0, -80, -80, -40, -40)), (2, 2), 1 / 16),  # off
        (torch.arange(48.0).view(3, 1, 4, 4) - 20,                                # images 2, 0, 1
         rois((2, 0, 0, 32, 32), (0, 16, 16, 64, 48), (1, 8, 8, 56, 24)), (2, 2), 1 / 16),
        (-10 + ints((1, 2, 3, 4)).abs(), rois((0, 8, 8, 56, 40)), (2, 3), 1 / 16),  # all < 0
        (grid, rois((0, 2.5, 1.5, 5.5, 4.5)), (4, 4), 1.0),                      # bins > cells
    ]
    for i in range(24):
        N, C = 1 + i % 3, 1 + (i // 3) % 3
        H, W = (int(v) for v in torch.randint(1, 8, (2,), generator=g))
        size = tuple(int(v) for v in torch.randint(1, 5, (2,), generator=g))
        cases.append(_pool_case(g, N, C, H, W, 1 + i % 6, size, (1, 2, 4, 8, 16, 32)[i % 6]))
    return cases


def _library_pool(features, rois, output_size, spatial_scale):
    return torchvision.ops.roi_pool(features, rois, output_size, spatial_scale)


def _pool_shape(args):
    features, rois, (ph, pw), _ = args
    return len(rois), features.shape[1], ph, pw


def _pool_variants(*args):
    return [(text, _slip_pool(*args, **switches)) for switches, text in _ROI_POOL_SLIPS]


def _describe_pool(args):
    features, rois, output_size, scale = args
    return (f"features [N, C, H, W] = {list(features.shape)} {harness.show(features)}, "
            f"rois={harness.show(rois)}, output_size={output_size}, spatial_scale={scale:g}")


_POOL_FORBIDDEN = ["torchvision.ops.roi_pool", "torchvision.ops.RoIPool",
                   "frcnn_edu.roi_ops.roi_pool", "frcnn_edu.roi_ops.roi_pool_loop",
                   "frcnn_edu.roi_ops.RoIPool", "frcnn_edu.roi_ops.pool_bins",
                   "frcnn_edu.kernels.roi_pool.roi_pool_argmax",
                   "frcnn_edu.widgets.roi_pooling.roi_pool_bins"]


@exercise("lesson02.roi_max_pool")
def check_roi_max_pool(fn):
    """fn(features [N, C, H, W], rois [R, 5] (batch_index, x1, y1, x2, y2), output_size (ph, pw),
    spatial_scale) -> [R, C, ph, pw], the values of ``torchvision.ops.roi_pool``. Called
    positionally, in that order. torchvision's and the library's RoI pooling (and its bin edges)
    are refused; torch's tensor operations are not."""
    cases = _pool_cases()
    return harness.check_function(
        fn, _library_pool, cases, harness.close(rtol=0, atol=1e-6),
        convert=harness.as_float_tensor(_pool_shape, "the pooled output"),
        variants=_pool_variants, describe=_describe_pool, name="roi_max_pool",
        hint="for each RoI take its image features[n]; round x * spatial_scale to the nearest "
             "cell (halves away from zero): cells start..end inclusive; bin p spans start + "
             "floor(p * bin) up to start + ceil((p + 1) * bin) (excluded) with bin = cells / "
             "pooled; clamp the edges to the map; each bin's max per channel, 0 if it is empty",
        forbidden=_POOL_FORBIDDEN,
        passed=f"your RoI pooling equals torchvision.ops.roi_pool on {len(cases)} batches (no "
               "RoIs, a 1 x 1 map, one-cell RoIs, RoIs partly and wholly off the map, RoIs of "
               "images 1 and 2, negative features, more bins than cells).")


REFERENCES.update({"lesson02.roi_max_pool": _library_pool})


# ----------------------------------------------------------------------- exercise 5: a mini-batch
@exercise("lesson02.minibatch")
def check_minibatch(n_fg, n_bg):
    """(foreground, background) RoIs in the mini-batch built from MINIBATCH_IMAGES."""
    want_fg, want_bg = expected_minibatch()
    if n_fg is None or n_bg is None:
        return not_filled_in()
    try:
        n_fg, n_bg = int(n_fg), int(n_bg)
    except (TypeError, ValueError):
        return Result(False, f"give two whole numbers, got {n_fg!r} and {n_bg!r}")
    cap = int(ROIS_PER_IMAGE * FG_FRACTION)
    if (n_fg, n_bg) == (want_fg, want_bg):
        return Result(True, f"{n_fg} foreground + {n_bg} background = {n_fg + n_bg} RoIs "
                            f"(fewer than {2 * ROIS_PER_IMAGE}: the second image runs out).")
    if n_fg != want_fg:
        if n_fg == int(2 * ROIS_PER_IMAGE * FG_FRACTION):
            return Result(False, f"the 25% cap applies to each image ({cap} RoIs), and an image "
                                 "cannot give more foreground RoIs than it has")
        if n_fg == sum(fg for fg, _, _ in MINIBATCH_IMAGES):
            return Result(False, f"each image contributes at most {cap} foreground RoIs "
                                 f"(25% of {ROIS_PER_IMAGE})")
        return Result(False, f"foreground: per image min(foreground proposals, {cap}), summed")
    if n_bg == sum(ROIS_PER_IMAGE - min(fg, cap) for fg, _, _ in MINIBATCH_IMAGES):
        return Result(False, "the foreground count is right; but an image cannot give more "
                             "background RoIs than it has (ignored proposals are never sampled)")
    if n_bg == 2 * ROIS_PER_IMAGE - 2 * cap:
        return Result(False, "the foreground count is right; background fills each image's "
                             f"{ROIS_PER_IMAGE} slots left over by *its* foreground RoIs")
    return Result(False, "the foreground count is right; background per image: "
                         f"min(background proposals, {ROIS_PER_IMAGE} - its foreground RoIs)")


# ---------------------------------------------------------------------- exercise 6: truncated SVD
# (u outputs, v inputs, rank t): small layers compressed with the library (an SVD of a large
# layer can take seconds on a busy CPU), then the course's fc6 and the paper's fc6 and fc7.
_SVD_LIBRARY_CASES = ((64, 392, 16), (32, 32, 8), (12, 40, 5))
_SVD_FORMULA_CASES = ((256, 6272, 64), (4096, 25088, 1024), (4096, 4096, 256))


@functools.lru_cache(maxsize=None)
def _library_svd_weights(u, v, t):
    """Weights of a Linear(v -> u) before and after ``RoIHead.compress_fc`` at rank t."""
    torch.manual_seed(0)
    fc = nn.Sequential(nn.Linear(v, u), nn.ReLU())
    fc.out_features = u
    head = RoIHead(1, 2, fc=fc)
    before = head.fc[0].weight.numel()
    head.compress_fc((t, t))
    after = sum(m.weight.numel() for m in head.fc[0])
    return before, after


def _svd_cases():
    """(u, v, t): layers compressed with the library, the paper's, then 20 seeded random shapes
    (t = 1 and t = min(u, v) included)."""
    g = harness.seeded(21)
    cases = list(_SVD_LIBRARY_CASES) + list(_SVD_FORMULA_CASES) + [(10, 10, 1), (6, 9, 6)]
    for _ in range(20):
        u, v = (int(x) for x in torch.randint(1, 5000, (2,), generator=g))
        cases.append((u, v, int(torch.randint(1, min(u, v) + 1, (1,), generator=g))))
    return cases


def _svd_reference(u, v, t):
    """(before, after): RoIHead.compress_fc for the small layers, its rule t (u + v) for the
    others (tests/test_checks_lesson02.py checks the rule against compress_fc)."""
    if (u, v, t) in _SVD_LIBRARY_CASES:
        return _library_svd_weights(u, v, t)
    return u * v, t * (u + v)


def _svd_pair(got, args):
    try:
        return tuple(int(x) for x in got)
    except (TypeError, ValueError):
        raise harness.Wrong(f"return a pair (before, after), got {got!r}")


def _svd_hint(args, got, want):
    u, v, t = args
    if len(got) != 2:
        return "return two numbers: (before, after)"
    b, a = got
    if b != want[0]:
        return f"a u x v weight matrix has u * v = {want[0]} weights"
    if a == t * u * v or a == t * t:
        return "the two new layers hold S_t V_t^T (t x v) and U_t (u x t)"
    if a in (t * u, t * v):
        return "count both new layers: S_t V_t^T is t x v and U_t is u x t"
    if a == t * (u + v + 1):
        return "do not count the t singular values separately: they are folded into S_t V_t^T"
    return "after: t x v (first layer) plus u x t (second layer)"


@exercise("lesson02.svd_params")
def check_svd_params(fn):
    """fn(u, v, t) -> (weights of the u x v layer, weights after keeping t singular values);
    biases not counted."""
    cases = _svd_cases()
    return harness.check_function(
        fn, _svd_reference, cases, lambda got, want, args: got == tuple(want), convert=_svd_pair,
        hint=_svd_hint, name="svd_weights",
        passed=f"t (u + v) instead of u v on {len(cases)} layers: matches RoIHead.compress_fc.")


# ---------------------------------------------------------------- exercise 4: the multi-task loss
def _loss_case(seed, num_rois, num_classes, fg_fraction=0.4):
    """A reproducible case: logits [R, K+1], class-specific deltas [R, 4(K+1)], labels [R]
    (about fg_fraction of them foreground, 1..K), targets [R, 4] (zero for background RoIs, as
    the library's head makes them). Errors fall on both sides of smooth L1's beta = 1."""
    g = harness.seeded(seed)
    labels = torch.randint(1, num_classes + 1, (num_rois,), generator=g)
    labels[torch.rand(num_rois, generator=g) >= fg_fraction] = 0
    targets = torch.randn(num_rois, 4, generator=g) * 0.8
    targets[labels == 0] = 0.0
    return (torch.randn(num_rois, num_classes + 1, generator=g) * 2,
            torch.randn(num_rois, 4 * (num_classes + 1), generator=g) * 1.2, labels, targets)


#: Exercise 4's case: six RoIs, K = 2 classes (three columns of logits, 12 of deltas).
EX_LOSS_ARGS = _loss_case(30, 6, 2, fg_fraction=0.5)


def _loss_cases():
    """Edge cases (no foreground, all foreground, one RoI of each kind), then 20 seeded ones."""
    cases = [EX_LOSS_ARGS, _loss_case(31, 8, 3, fg_fraction=0.0), _loss_case(32, 7, 4, fg_fraction=1.0),
             _loss_case(33, 1, 2, fg_fraction=1.0), _loss_case(34, 1, 3, fg_fraction=0.0),
             _loss_case(35, 5, 1, fg_fraction=0.6)]
    for i in range(20):
        cases.append(_loss_case(100 + i, 2 + 3 * i % 37, 1 + i % 6, (0.25, 0.5, 0.1, 0.75)[i % 4]))
    return cases


def _library_loss(class_logits, box_regression, labels, regression_targets):
    cls, box = _losses.fast_rcnn_loss(class_logits, box_regression, labels, regression_targets)
    return float(cls), float(box)


def _loss_slips(class_logits, box_regression, labels, targets):
    """(hint, (loss_cls or None, loss_box or None)) of common slips; None: that term is right."""
    R, C = class_logits.shape
    deltas = box_regression.reshape(R, C, 4)
    fg = labels > 0
    n_fg = int(fg.sum())
    rows = torch.arange(R)

    def sl1(x, beta=1.0):
        x = x.abs()
        return torch.where(x < beta, 0.5 * x * x / beta, x - 0.5 * beta)

    t_u = deltas[rows, labels]                                  # [R, 4]: the true class's slots
    per_roi = sl1(t_u - targets).sum(1)
    box_fg = float(per_roi[fg].sum())
    ce = F.cross_entropy(class_logits, labels, reduction="none")
    off_by_one = deltas[rows, (labels - 1).clamp(min=0)]
    coord_major = box_regression.reshape(R, 4, C)[rows, :, labels]
    slips = [
        ("the [u >= 1] bracket switches the box loss off for background RoIs (label 0): sum "
         "smooth L1 over the foreground RoIs only", (None, float(per_roi.sum()) / R)),
        ("only the 4 outputs of the RoI's true class u are regressed (columns 4u to 4u + 3), "
         "not every class's", (None, float(sl1(deltas - targets[:, None]).sum((1, 2))[fg].sum()) / R)),
        ("the box term is divided by R, the number of all RoIs in the mini-batch (as "
         "fast_rcnn_loss does), not by the number of foreground RoIs",
         (None, box_fg / n_fg if n_fg else None)),
        ("sum the smooth L1 over the 4 coordinates; the only average is over the R RoIs",
         (None, box_fg / (4 * R))),
        ("sum the smooth L1 over the 4 coordinates and divide by R once (torch's mean over "
         "the foreground elements divides by 4 * number of foreground RoIs)",
         (None, box_fg / (4 * n_fg) if n_fg else None)),
        ("box_regression keeps a slot for the background (class 0): class u's deltas are "
         "columns 4u to 4u + 3, not 4(u - 1) to 4(u - 1) + 3",
         (None, float(sl1(off_by_one - targets).sum(1)[fg].sum()) / R)),
        ("box_regression is [R, K + 1, 4] flattened: the 4 deltas of class u sit next to each "
         "other, columns 4u to 4u + 3", (None, float(sl1(coord_major - targets).sum(1)[fg].sum()) / R)),
        ("the box loss is smooth L1 with beta = 1 (Fast R-CNN eq. 3), not the squared error",
         (None, float((0.5 * (t_u - targets) ** 2).sum(1)[fg].sum()) / R)),
        ("smooth L1 here uses beta = 1, the paper's (1/9 is torchvision's choice)",
         (None, float(sl1(t_u - targets, 1 / 9).sum(1)[fg].sum()) / R)),
        ("the box loss is smooth L1, not plain L1: 0.5 x^2 below |x| = 1",
         (None, float((t_u - targets).abs().sum(1)[fg].sum()) / R)),
        ("the classification term is the MEAN cross-entropy over all R RoIs, not their sum",
         (float(ce.sum()), None)),
        ("the classification term covers every RoI, background ones included (class 0 is a "
         "class of the softmax)", (float(ce[fg].mean()) if n_fg else None, None)),
        ("the two terms are in the wrong order: return (loss_cls, loss_box)", "swap"),
    ]
    return slips


def _loss_pair(got, args):
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise harness.Wrong(f"return a pair (loss_cls, loss_box), got {type(got).__name__}")
    out = []
    for what, value in zip(("loss_cls", "loss_box"), got):
        try:
            t = torch.as_tensor(value.detach() if torch.is_tensor(value) else value,
                                dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            raise harness.Wrong(f"{what} should be a number (a 0-d tensor), got "
                                f"{type(value).__name__}")
        if t.numel() != 1:
            raise harness.Wrong(f"{what} should be one number (a 0-d tensor), got shape "
                                f"{list(t.shape)}: reduce it")
        out.append(float(t))
    return tuple(out)


def _close_pair(got, want, args=None):
    return all(math.isclose(g, w, rel_tol=1e-5, abs_tol=1e-6) for g, w in zip(got, want))


def _loss_variants(*args):
    want = _library_loss(*args)
    out = []
    for hint, value in _loss_slips(*args):
        if value == "swap":
            out.append((hint, None if math.isclose(*want, rel_tol=1e-3) else want[::-1]))
            continue
        cls, box = value
        if (cls is None and box is None) or any(
                v is not None and math.isclose(v, w, rel_tol=1e-5, abs_tol=1e-6)
                for v, w in zip(value, want)):
            out.append((hint, None))        # the slip gives the right answer here: no evidence
            continue
        slip = (want[0] if cls is None else cls, want[1] if box is None else box)

        def matches(got, slip=slip, cls=cls, box=box):
            return (cls is None or math.isclose(got[0], slip[0], rel_tol=1e-5, abs_tol=1e-6)) and \
                (box is None or math.isclose(got[1], slip[1], rel_tol=1e-5, abs_tol=1e-6))
        out.append((hint, matches))
    return out


def _loss_hint(args, got, want):
    cls_ok = math.isclose(got[0], want[0], rel_tol=1e-5, abs_tol=1e-6)
    box_ok = math.isclose(got[1], want[1], rel_tol=1e-5, abs_tol=1e-6)
    part = "loss_box" if cls_ok else "loss_cls" if box_ok else "both terms"
    return (f"{part} differ{'s' * (part != 'both terms')}: loss_cls is the mean over the R RoIs "
            "of -log softmax(class_logits)[u]; loss_box is the smooth L1 (beta = 1) of the 4 "
            "deltas of class u against the targets, summed over the foreground RoIs and divided "
            "by R")


def _describe_loss(args):
    logits, deltas, labels, targets = args
    return (f"R = {len(labels)} RoIs, K + 1 = {logits.shape[1]} classes, labels={labels.tolist()}, "
            "... (checks.lesson02.EX_LOSS_ARGS holds the exercise's case)")


def _gradient_check(fn, cases, forbidden):
    """None, or a Result: loss_box must keep the graph, and its gradient w.r.t. box_regression
    must be zero on background rows and on the columns of the other classes."""
    with harness.tripwires(forbidden, fn) as calls:
        for logits, deltas, labels, targets in cases:
            deltas = deltas.clone().requires_grad_(True)
            try:
                got = fn(logits.clone(), deltas, labels.clone(), targets.clone())
            except harness.ForbiddenCall as e:
                return harness.forbidden_result(str(e))
            except Exception as e:
                return Result(False, f"your code raised {type(e).__name__}: {e} when box_regression "
                                     "requires a gradient", status="error")
            box = got[1]
            if not (torch.is_tensor(box) and box.requires_grad):
                return Result(False, "loss_box must stay a tensor that keeps the graph (the head "
                                     "is trained with it): do not call float(), .item() or "
                                     ".detach() on it")
            grad, = torch.autograd.grad(box, deltas, allow_unused=True)
            grad = torch.zeros_like(deltas) if grad is None else grad
            R = len(labels)
            mask = torch.zeros(R, deltas.shape[1] // 4, 4, dtype=torch.bool)
            mask[torch.arange(R), labels] = True
            mask[labels == 0] = False
            leaks = (grad != 0) & ~mask.reshape(R, -1)
            if bool(leaks.any()):
                where = ("on a background RoI's row" if bool(leaks[labels == 0].any())
                         else "on the columns of a class that is not the RoI's")
                return Result(False, f"loss_box's gradient with respect to box_regression is not zero "
                                     f"{where}: only the 4 outputs of the true class of each "
                                     "foreground RoI may be pulled")
        if calls:
            return harness.forbidden_result(calls[0])
    return None


_LOSS_FORBIDDEN = ["frcnn_edu.losses.fast_rcnn_loss", "frcnn_edu.losses.smooth_l1",
                   "torch.nn.functional.smooth_l1_loss", "torch.nn.functional.huber_loss",
                   "torch.nn.SmoothL1Loss", "torch.nn.HuberLoss"]


@exercise("lesson02.fast_rcnn_loss")
def check_fast_rcnn_loss(fn):
    """fn(class_logits [R, K+1], box_regression [R, 4(K+1)], labels [R] in 0..K,
    regression_targets [R, 4]) -> (loss_cls, loss_box) as `fast_rcnn_loss` (lambda = 1,
    beta = 1). Called positionally, in that order. F.cross_entropy is allowed; the library's loss,
    its smooth_l1 and torch's smooth L1 / Huber losses are refused."""
    cases = _loss_cases()
    result = harness.check_function(
        fn, _library_loss, cases, _close_pair, convert=_loss_pair, variants=_loss_variants,
        hint=_loss_hint, describe=_describe_loss, name="my_fast_rcnn_loss",
        forbidden=_LOSS_FORBIDDEN,
        passed=f"your loss matches fast_rcnn_loss on {len(cases)} cases (no foreground RoI, all "
               "foreground, a single RoI), and loss_box pulls only the true class's 4 outputs "
               "of the foreground RoIs.")
    if not result:
        return result
    grad_failure = _gradient_check(fn, [cases[0], cases[2], cases[5], cases[-1]], _LOSS_FORBIDDEN)
    return result if grad_failure is None else grad_failure


REFERENCES.update({"lesson02.fast_rcnn_loss": lambda *a: _losses.fast_rcnn_loss(*a)})

REFERENCES.update({"lesson02.bin_edges": _library_bins, "lesson02.svd_params": _svd_reference})
