"""Checkers for lesson 07 (Mask R-CNN).

    check_mask_target(fn)   exercise 1: fn(mask, box, m) -> the m x m mask target of one RoI
    check_mask_loss(fn)     exercise 2: fn(mask_logits, labels, targets) -> the mask loss

Each checker runs the student's function (positionally) on 24 seeded cases and the edge cases,
compares with the library (`project_masks_on_boxes`, `mask_rcnn_loss`), refuses an answer that
calls the library function it replaces, and on a wrong answer names the smallest failing case
with a hint for the usual slip.
"""
import contextlib

import torch
import torch.nn.functional as F

from .result import Result, exercise, not_filled_in, run_safely

__all__ = ["check_mask_target", "check_mask_loss"]


class _LibraryCalled(BaseException):
    """Not an Exception: `run_safely` must not report it as the student's crash."""


def _names_used(fn):
    """The global names `fn`'s code (and the functions nested in it) reads."""
    code, seen = getattr(fn, "__code__", None), set()
    stack = [code] if code is not None else []
    while stack:
        c = stack.pop()
        seen.update(c.co_names)
        stack.extend(k for k in c.co_consts if hasattr(k, "co_names"))
    return seen


@contextlib.contextmanager
def _forbid(fn, *targets):
    """While the student's `fn` runs, each (module, name) in `targets` raises _LibraryCalled, and
    a `fn` whose globals already hold the library function is refused."""
    originals = [(m, n, getattr(m, n)) for m, n in targets]
    names = {k: v for k, v in getattr(fn, "__globals__", {}).items() if k in _names_used(fn)}
    code = getattr(fn, "__code__", None)
    for name, cell in zip(code.co_freevars if code else (), getattr(fn, "__closure__", None) or ()):
        with contextlib.suppress(ValueError):        # an empty cell
            names[name] = cell.cell_contents
    # only the names the function's code reads: the lesson itself imports the library function
    held = [o.__name__ for _, _, o in originals if any(v is o for v in names.values())]
    if held:
        raise _LibraryCalled(held[0])

    def trap(*args, **kwargs):
        raise _LibraryCalled("the library's function")
    for m, n, _ in originals:
        setattr(m, n, trap)
    try:
        yield
    finally:
        for m, n, o in originals:
            setattr(m, n, o)


def _run(fn, args, targets):
    """(answer, None) or (None, Result) for a crash or a call of the library function."""
    try:
        with _forbid(fn, *targets):
            return run_safely(fn, *args)
    except _LibraryCalled as e:
        return None, Result(False, f"your answer uses {e} that the exercise asks you to write; "
                                   "write it from the building blocks named in the exercise")


# ----------------------------------------------------------------------------- exercise 1
def _target_cases():
    """(mask [H, W] uint8, box (x1, y1, x2, y2), m): 24 seeded cases, smallest first, then edge
    cases (the object's own box, a box past the image border, a tiny box, m = 14)."""
    from ..data import ShapesDataset

    ds = ShapesDataset("val", num_images=24, masks=True)
    g = torch.Generator().manual_seed(7)
    cases = []
    for i in range(24):
        t = ds.get_target(i)
        j = int(torch.randint(len(t["boxes"]), (1,), generator=g))
        box = t["boxes"][j]
        size = (box[2:] - box[:2]).repeat(2)
        jittered = box + 0.15 * size * torch.randn(4, generator=g)
        jittered[2:] = torch.maximum(jittered[2:], jittered[:2] + 2)
        cases.append((t["masks"][j], tuple(round(float(v), 2) for v in jittered), 28))
    cases.sort(key=lambda c: (c[1][2] - c[1][0]) * (c[1][3] - c[1][1]))
    t = ds.get_target(0)
    cases += [(t["masks"][0], tuple(float(v) for v in t["boxes"][0]), 28),
              (t["masks"][1], (150.0, 140.0, 175.0, 170.0), 28),
              (t["masks"][0], (60.0, 40.0, 62.0, 41.5), 28),
              (t["masks"][2], tuple(float(v) for v in t["boxes"][2]), 14)]
    return cases


def _library_target(mask, box, m, aligned=True, threshold=0.5):
    from ..models.mask_rcnn import project_masks_on_boxes

    return project_masks_on_boxes(mask[None], torch.tensor([box], dtype=torch.float32),
                                  torch.zeros(1, dtype=torch.int64), m, aligned, threshold)[0]


def _target_hint(got, mask, box, m):
    from ..roi_ops import roi_align

    rois = torch.tensor([[0.0, *box]])
    frac = roi_align(mask[None, None].float(), rois, m, 1.0, -1, aligned=True)[0, 0]
    if not torch.equal(got, got.round()) or got.max() > 1:
        return "the target is binary: threshold RoIAlign's output at 0.5 (>= 0.5 is 1)"
    if torch.equal(got, (frac > 0.5).float()):
        return "a cell covered exactly half counts as inside: use >= 0.5, not > 0.5"
    if torch.equal(got, _library_target(mask, box, m, aligned=False)):
        return ("use aligned=True: our boxes put pixel i at [i, i + 1), so its centre is at "
                "i + 0.5; aligned=False samples half a pixel off")
    if torch.equal(got, (frac >= 0.5).float().t()):
        return "rows are y and columns are x: the grid is [m, m] = [y, x], not transposed"
    return ("RoIAlign the full-image mask [1, 1, H, W] on the box (batch index 0, "
            "spatial_scale 1, the m x m output), then threshold at 0.5")


@exercise("lesson07.mask_target")
def check_mask_target(fn):
    """fn(mask uint8 [H, W], box (x1, y1, x2, y2), m) -> float [m, m] of 0 / 1: the mask target
    of one RoI. May use frcnn_edu.roi_ops.roi_align, not project_masks_on_boxes."""
    if fn is None:
        return not_filled_in()
    from ..models import mask_rcnn

    cases = _target_cases()
    for k, (mask, box, m) in enumerate(cases):
        got, err = _run(fn, (mask.clone(), box, m), [(mask_rcnn, "project_masks_on_boxes")])
        if err is not None:
            return err
        want = _library_target(mask, box, m)
        try:
            got = torch.as_tensor(got, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError):
            return Result(False, f"return a tensor [{m}, {m}], got {type(got).__name__}")
        if got.shape != want.shape:
            return Result(False, f"for box {box} and m = {m} the target should have shape "
                                 f"[{m}, {m}], got {list(got.shape)}")
        if not torch.equal(got, want):
            n = int((got != want).sum())
            return Result(False, f"case {k} (box {box}, m = {m}, mask {list(mask.shape)}): "
                                 f"{n} of {m * m} cells differ; {_target_hint(got, mask, box, m)}.")
    return Result(True, f"your mask targets equal project_masks_on_boxes on {len(cases)} RoIs "
                        "(jittered boxes, the object's own box, a box past the border, a tiny "
                        "box, m = 14).")


# ----------------------------------------------------------------------------- exercise 2
def _loss_cases():
    """(mask_logits [R, K+1, m, m], labels [R], targets [R, m, m]): 24 seeded cases, smallest
    first, then no positive RoI (R = 0) and large logits (saturated sigmoids)."""
    g = torch.Generator().manual_seed(11)
    cases = []
    for i in range(24):
        R, K1, m = 1 + i % 5, 2 + i % 4, (4, 7, 28)[i % 3]
        logits = 2 * torch.randn(R, K1, m, m, generator=g)
        labels = torch.randint(1, K1, (R,), generator=g)
        targets = (torch.rand(R, m, m, generator=g) > 0.5).float()
        cases.append((logits, labels, targets))
    cases.sort(key=lambda c: c[0].numel())
    cases.append((torch.zeros(0, 6, 28, 28), torch.zeros(0, dtype=torch.int64), torch.zeros(0, 28, 28)))
    big = 40 * torch.randn(2, 6, 28, 28, generator=g)
    cases.append((big, torch.tensor([3, 5]), (torch.rand(2, 28, 28, generator=g) > 0.5).float()))
    return cases


def _loss_variants(logits, labels, targets):
    """(value, hint) of the usual slips."""
    R = len(labels)
    x_k = logits[torch.arange(R), labels]
    all_channels = F.binary_cross_entropy_with_logits(
        logits, targets[:, None].expand_as(logits))
    softmax = F.cross_entropy(logits, targets.long() * labels[:, None, None])
    return (
        (all_channels, "only the ground-truth class's channel k enters the loss; you applied "
                       "the binary cross-entropy to all K + 1 channels"),
        (softmax, "the paper's loss is a per-pixel SIGMOID on channel k, not a softmax over "
                  "the classes (that is Table 2b's weaker alternative)"),
        (F.binary_cross_entropy_with_logits(x_k, targets, reduction="sum"),
         "average over the pixels and RoIs (the 1/m^2 of the equation, then the mean over RoIs); "
         "you summed"),
        (F.binary_cross_entropy_with_logits(logits[torch.arange(R), labels - 1], targets),
         "labels are 1..K and channel k is mask_logits[:, k]; you took channel k - 1"),
        (F.binary_cross_entropy(x_k.clamp(1e-7, 1 - 1e-7), targets),
         "the logits are not probabilities: apply the sigmoid (or use "
         "F.binary_cross_entropy_with_logits, which is also stable for large logits)"),
    )


@exercise("lesson07.mask_loss")
def check_mask_loss(fn):
    """fn(mask_logits [R, K+1, m, m], labels [R], targets [R, m, m]) -> scalar tensor: the mean
    per-pixel binary cross-entropy of sigmoid(mask_logits[r, labels[r]]) against targets[r];
    0 when R = 0. May use torch.nn.functional, not frcnn_edu.losses.mask_rcnn_loss."""
    if fn is None:
        return not_filled_in()
    from .. import losses

    for k, (logits, labels, targets) in enumerate(_loss_cases()):
        got, err = _run(fn, (logits.clone(), labels.clone(), targets.clone()),
                        [(losses, "mask_rcnn_loss")])
        if err is not None:
            return err
        want = losses.mask_rcnn_loss(logits, labels, targets)
        shape = f"R = {len(labels)}, K + 1 = {logits.shape[1]}, m = {logits.shape[2]}"
        try:
            got = torch.as_tensor(got, dtype=torch.float64)
        except (TypeError, ValueError, RuntimeError):
            return Result(False, f"return a scalar tensor, got {type(got).__name__}")
        if got.numel() != 1:
            return Result(False, f"case {k} ({shape}): return one number (a scalar), got shape "
                                 f"{list(got.shape)}; average the per-pixel losses")
        if not torch.isfinite(got):
            hint = ("with no positive RoI (R = 0) the mean of nothing is NaN: return 0"
                    if len(labels) == 0 else
                    "large logits overflow log(sigmoid(x)): use F.binary_cross_entropy_with_logits")
            return Result(False, f"case {k} ({shape}): your loss is {got.item()}; {hint}.")
        if abs(got.item() - want.item()) <= 1e-4 * max(1.0, abs(want.item())):
            continue
        hint = next((text for value, text in _loss_variants(logits, labels, targets)
                     if abs(got.item() - value.item()) <= 1e-4 * max(1.0, abs(value.item()))),
                    "mean over RoIs and pixels of BCE(sigmoid(x_k), y), k = the RoI's label")
        return Result(False, f"case {k} ({shape}): you gave {got.item():.5f}, mask_rcnn_loss "
                             f"gives {want.item():.5f}; {hint}.")
    return Result(True, f"your loss equals mask_rcnn_loss on {len(_loss_cases())} cases "
                        "(including no positive RoI and saturated logits): one sigmoid mask per "
                        "class, only the ground-truth class's counts.")
