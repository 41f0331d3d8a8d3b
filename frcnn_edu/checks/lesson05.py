"""Checkers for lesson 05 (shared conv layers, the training schemes of Faster R-CNN sec. 3.2,
the speed ladder).

    check_trained_parts(parts)       {step: set of parts} trained in each step of 4-step training
    check_dropped_gradient(choice)   which gradient approximate joint training ignores (a-e)
    check_time_saved(fn)             fn(four_step_seconds, joint_seconds) -> share of time saved
    check_speedup_without_proposals(fn)  fn(times) -> R-CNN / Fast R-CNN, proposals excluded
    check_joint_step(fn)             fn(model, images, targets, optimizer): one approximate-joint
                                     training step built from the model's parts, returning the
                                     dict of the four losses

Parts are the attribute names of ``FasterRCNN``: "backbone" (the conv layers that become
shared), "rpn" (the RPN's own layers), "roi_heads" (the Fast R-CNN head's own layers). Each
checker compares with the library and names the likely slip when the answer is wrong.
"""
import copy
import functools
import math
import sys

import torch

from frcnn_edu.data import ShapesDataset
from frcnn_edu.models import SHAPES_ANCHOR_SIZES, FasterRCNN, shapes_faster_rcnn, tiny_vgg
from frcnn_edu.training import loop, schemes

from ._answers import answer_key
from .result import Result, exercise, not_filled_in, run_safely

__all__ = ["PARTS", "DROPPED_GRADIENT_CHOICES", "library_trained_parts", "check_trained_parts",
           "check_dropped_gradient", "check_time_saved", "check_speedup_without_proposals",
           "check_joint_step", "JOINT_STEP_CASES"]

PARTS = ("backbone", "rpn", "roi_heads")

#: Exercise 2: what does approximate joint training leave out of back-propagation?
DROPPED_GRADIENT_CHOICES = {
    "a": "every gradient that would reach the RPN or the shared conv layers: only the detector "
         "head's weights are updated",
    "b": "the gradient of the RPN loss with respect to the shared conv layers",
    "c": "the gradient of the detector loss with respect to the proposal box coordinates",
    "d": "the gradient of the detector loss through the RoI warping layer, which approximate "
         "joint training uses in place of RoI pooling",
    "e": "the gradient of the detector loss with respect to the shared conv layers",
}
# The right letter and the hints of the wrong ones are stored by `answer_key` (a salted hash),
# so that the answer cannot be read off this file.
_DROPPED_ID = "lesson05.dropped_gradient"
_DROPPED_RIGHT = "3b80083bd824ade1"
_DROPPED_HINTS = {
    "27be52a60ece6bee":
        "all weights are updated in approximate joint training: the RPN loss trains the RPN's "
        "layers and the shared conv layers, the detector loss trains the head and the shared "
        "conv layers (a common misreading of the paper)",
    "6002875342fb98f9":
        "the RPN loss does reach the shared conv layers; at the shared layers the gradients of "
        "the RPN loss and of the detector loss are added",
    "763c3dbc346058c6":
        "approximate joint training uses ordinary RoI pooling; an RoI warping layer, "
        "differentiable in the box coordinates, is what the NON-approximate scheme would need",
    "a2cc6864319d03e9":
        "RoI pooling passes the detector's gradient back to the feature map (lesson 02), so the "
        "detector loss does train the shared conv layers; what is lost is the path through the "
        "box coordinates of the proposals",
}

# (four_step_seconds, joint_seconds) cases for check_time_saved.
_TIME_CASES = ((100.0, 60.0), (10.0, 7.5), (3.2, 1.6), (240.0, 150.0), (50.0, 55.0), (8.0, 8.0))

# Per-image seconds for check_speedup_without_proposals: paper-like (Faster R-CNN's K40 table:
# selective search 1.51 s, SS + Fast R-CNN 1.83 s; R-CNN 47 s without proposals), then others.
_LADDER_CASES = (
    {"selective search": 1.51, "R-CNN": 48.51, "Fast R-CNN": 1.83, "Faster R-CNN": 0.198},
    {"selective search": 0.25, "R-CNN": 6.25, "Fast R-CNN": 0.29, "Faster R-CNN": 0.06},
    {"selective search": 0.4, "R-CNN": 2.4, "Fast R-CNN": 0.9, "Faster R-CNN": 0.1},
    {"selective search": 1.0, "R-CNN": 31.0, "Fast R-CNN": 1.2, "Faster R-CNN": 0.3,
     "conv layers": 0.1, "RPN proposals": 0.12},
)


# ----------------------------------------------------------------------------- exercise 1
def _tiny_model():
    return shapes_faster_rcnn(pretrained=False, rpn_pre_nms_top_n=(200, 100),
                              rpn_post_nms_top_n=(50, 20))


@functools.lru_cache(maxsize=1)
def library_trained_parts():
    """{1: parts, 2: ..., 3: ..., 4: ..., "joint": parts}: the parts whose weights change in each
    step of ``train_four_step`` and in ``train_joint``, found by running both on two tiny images
    (each stage calls ``train``; a wrapper notes which parameters it changed)."""
    changed, real_train = [], schemes.train

    def recording_train(model, dataset, **kwargs):
        before = {n: p.detach().clone() for n, p in model.named_parameters()}
        history = real_train(model, dataset, **kwargs)
        changed.append({n.split(".")[0] for n, p in model.named_parameters()
                        if not torch.equal(p.detach(), before[n])})
        return history

    data = ShapesDataset("train", num_images=2, image_size=(64, 64), scale_range=(16, 40))
    with torch.random.fork_rng(devices=[]):       # leave the lesson's random state alone
        torch.manual_seed(0)
        schemes.train = recording_train
        try:
            schemes.train_four_step(_tiny_model, data, steps=4, progress=False)
            schemes.train_joint(_tiny_model(), data, steps=1, progress=False)
        finally:
            schemes.train = real_train
    parts = {i + 1: frozenset(c) for i, c in enumerate(changed[:4])}
    return {**parts, "joint": frozenset(changed[4])}


_STEP_HINTS = {  # (step, part, the student included it?) -> why it is wrong
    (1, "roi_heads", True): "step 1 trains an RPN alone: no detector head is in its loss",
    (1, "backbone", False): "step 1 fine-tunes the RPN end to end, its conv layers included "
                            "(initialised from the pre-trained network)",
    (1, "rpn", False): "step 1 is the RPN's step: its 3x3 conv and two 1x1 layers are trained",
    (2, "rpn", True): "step 2 trains a separate Fast R-CNN on step 1's proposals, which are fixed "
                      "inputs: no RPN layer is in its loss",
    (2, "backbone", False): "step 2's detector fine-tunes its own conv layers (from the "
                            "pre-trained network): the two networks do not share them yet",
    (2, "roi_heads", False): "step 2 trains the Fast R-CNN detector, head included",
    (3, "backbone", True): "step 3 takes the detector's conv layers, FREEZES them, and "
                           "fine-tunes only the layers unique to the RPN",
    (3, "roi_heads", True): "step 3 fine-tunes only the RPN; the detector head is not in its loss",
    (3, "rpn", False): "step 3 fine-tunes the layers unique to the RPN",
    (4, "backbone", True): "step 4 keeps the shared conv layers frozen and fine-tunes only the "
                           "layers unique to Fast R-CNN",
    (4, "rpn", True): "in step 4 the RPN only proposes (its proposals are constants); its layers "
                      "are not trained",
    (4, "roi_heads", False): "step 4 fine-tunes the layers unique to Fast R-CNN",
}


def _as_parts(value):
    """A set of part names from a set / list / tuple of strings or one string; None if not."""
    if isinstance(value, str):
        value = [value]
    try:
        return {str(v).strip().lower() for v in value}
    except TypeError:
        return None


def _steps_of(answer):
    """{1..4: set of names} from a dict keyed 1..4 (int or str) or a sequence of four entries."""
    if isinstance(answer, dict):
        try:
            steps = {int(k): v for k, v in answer.items() if str(k).strip().isdigit()}
        except (TypeError, ValueError):
            return None
    elif isinstance(answer, (list, tuple)) and len(answer) == 4:
        steps = dict(enumerate(answer, start=1))
    else:
        return None
    if set(steps) != {1, 2, 3, 4}:
        return None
    parts = {k: _as_parts(v) for k, v in steps.items()}
    return None if any(p is None for p in parts.values()) else parts


@exercise("lesson05.trained_parts")
def check_trained_parts(parts):
    """parts: {1: {...}, 2: {...}, 3: {...}, 4: {...}}, each a set of names from PARTS: the parts
    of the network being trained whose weights that step of 4-step training updates."""
    got = _steps_of(parts)
    if got is None:
        return Result(False, "give a dict {1: {...}, 2: {...}, 3: {...}, 4: {...}} (or a list of "
                             f"four sets) of part names, got {parts!r}")
    unknown = sorted(set().union(*got.values()) - set(PARTS))
    if unknown:
        return Result(False, f"unknown part name(s) {unknown}: use the attributes of FasterRCNN, "
                             f"{', '.join(PARTS)}")
    want = library_trained_parts()
    for step in (1, 2, 3, 4):
        if got[step] == set(want[step]):
            continue
        wrong = [(p, True) for p in PARTS if p in got[step] and p not in want[step]]
        wrong += [(p, False) for p in PARTS if p not in got[step] and p in want[step]]
        part, included = wrong[0]
        return Result(False, f"step {step}: you wrote {sorted(got[step])}, the library trains "
                             f"{sorted(want[step])}: {_STEP_HINTS[(step, part, included)]}.")
    return Result(True, "these are the parts train_four_step updates: steps 1 and 2 train two "
                        "separate networks end to end (conv layers included), steps 3 and 4 "
                        "share the detector's conv layers, frozen, and fine-tune only the layers "
                        "unique to the RPN, then to Fast R-CNN.")


# ----------------------------------------------------------------------------- exercise 2
@exercise("lesson05.dropped_gradient")
def check_dropped_gradient(choice):
    """choice: one letter of DROPPED_GRADIENT_CHOICES."""
    key = str(choice).strip().strip("()").lower() if choice is not None else ""
    if key not in DROPPED_GRADIENT_CHOICES:
        return Result(False, f"answer with one letter of {', '.join(DROPPED_GRADIENT_CHOICES)}, "
                             f"got {choice!r}")
    if answer_key(_DROPPED_ID, key) != _DROPPED_RIGHT:
        return Result(False, f"({key}) is not it: {_DROPPED_HINTS[answer_key(_DROPPED_ID, key)]}.")
    return Result(True, "the proposals' coordinates depend on the RPN's and the shared layers' "
                        "weights, but the detector treats them as constants, so that term of "
                        "the chain rule is dropped; every weight is still updated.")


# ----------------------------------------------------------------------------- exercise 3
def _number(value, what):
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None, Result(False, f"{what} should be a number, got {value!r}")
    if not math.isfinite(x):
        return None, Result(False, f"{what} is {x}; check for a division by zero")
    return x, None


@exercise("lesson05.time_saved")
def check_time_saved(fn):
    """fn(four_step_seconds, joint_seconds) -> the fraction of the 4-step training time that
    joint training saves (0.25 means 25 % less time; negative if joint training is slower)."""
    close = lambda a, b: math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-6)  # noqa: E731
    for t4, tj in _TIME_CASES:
        value, err = run_safely(fn, t4, tj)
        if err is not None:
            return err
        got, err = _number(value, "the share of time saved")
        if err is not None:
            return err
        want = 1 - tj / t4
        if close(got, want):
            continue
        where = f"for {t4:g} s (4-step) and {tj:g} s (joint) you gave {got:g}, expected {want:g}"
        if close(got, tj / t4):
            hint = "that is the ratio of the two times; the share saved is 1 minus it"
        elif close(got, t4 / tj):
            hint = "that is the speed-up (how many times faster), not the share of time saved"
        elif close(got, 100 * want):
            hint = "give a fraction (0.4), not a percentage (40)"
        elif close(got, (t4 - tj) / tj):
            hint = ("divide the saving by the 4-step time: it is a share of what alternating "
                    "training takes")
        elif close(got, -want):
            hint = "the sign is reversed: a positive share means joint training is faster"
        else:
            hint = "saved = (t_4step - t_joint) / t_4step"
        return Result(False, f"{where}: {hint}.")
    return Result(True, "1 - t_joint / t_4step: the paper's 'cuts the training time by 25-50%' "
                        "is this number between 0.25 and 0.5.")


# ----------------------------------------------------------------------------- exercise 4
@exercise("lesson05.speedup_without_proposals")
def check_speedup_without_proposals(fn):
    """fn(times) -> how many times faster Fast R-CNN is than R-CNN when the selective search time
    is left out of both; `times` is a dict like ``speed_ladder``'s (seconds per image, proposals
    included in "R-CNN" and "Fast R-CNN")."""
    close = lambda a, b: math.isclose(a, b, rel_tol=1e-3)  # noqa: E731
    for times in _LADDER_CASES:
        value, err = run_safely(fn, dict(times))
        if err is not None:
            return err
        got, err = _number(value, "the speed-up")
        if err is not None:
            return err
        ss, rcnn, fast = times["selective search"], times["R-CNN"], times["Fast R-CNN"]
        want = (rcnn - ss) / (fast - ss)
        if close(got, want):
            continue
        where = f"for {times} you gave {got:.4g}, expected {want:.4g}"
        if close(got, rcnn / fast):
            hint = ("both times include selective search; subtract it from both, as the papers' "
                    "146x does (it excludes proposals)")
        elif close(got, (rcnn - ss) / fast) or close(got, rcnn / (fast - ss)):
            hint = "subtract the selective search time from BOTH detectors"
        elif close(got, 1 / want):
            hint = "the ratio is inverted: R-CNN's time divided by Fast R-CNN's"
        elif any(close(got, t / times["Faster R-CNN"]) for t in (rcnn - ss, rcnn)):
            hint = "the question compares R-CNN with Fast R-CNN, not with Faster R-CNN"
        else:
            hint = "(R-CNN - selective search) / (Fast R-CNN - selective search)"
        return Result(False, f"{where}: {hint}.")
    return Result(True, "without proposals Fast R-CNN's gain is large; the paper-like case gives "
                        "47 s / 0.32 s, about 146x. With selective search counted, the gain "
                        "shrinks, which is what the RPN addresses.")


# ----------------------------------------------------------------------------- exercise 5
LOSS_NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg")
RPN_LOSSES, DETECTOR_LOSSES = LOSS_NAMES[:2], LOSS_NAMES[2:]

# The cases of check_joint_step, smallest first: (number of images, boxes in the first image
# (None: as drawn, 0: an image with no objects), image_scale, optimizer). The model and the
# images change with the case's seed (its index).
JOINT_STEP_CASES = (
    [(1, 1, None, "sgd"), (1, 0, None, "sgd"), (1, 0, None, "adam"), (1, None, None, "adam")]
    + [(1, None, 96, "sgd"), (2, 0, None, "sgd"), (2, 0, 96, "adam")]
    + [(2, None, scale, opt) for scale in (None, 96) for opt in ("sgd", "adam")] * 3 + [(2, None, None, "sgd")]
)


@functools.lru_cache(maxsize=1)
def _step_images():
    data = ShapesDataset("train", num_images=8, image_size=(64, 64), scale_range=(16, 40))
    return [data[i] for i in range(len(data))]


def _case(index):
    """A seeded tiny model (RoIAlign, so that a missing detach changes the result), its inputs,
    the weights' leftover gradients from an earlier step, and an optimizer factory."""
    n_images, n_boxes, scale, opt = JOINT_STEP_CASES[index]
    items = _step_images()
    images, targets = [], []
    for k in range(n_images):
        image, target = items[(2 * index + k) % len(items)]
        if k == 0 and n_boxes is not None:
            target = {"boxes": target["boxes"][:n_boxes], "labels": target["labels"][:n_boxes]}
        images.append(image)
        targets.append(target)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(index)
        model = FasterRCNN(tiny_vgg(pretrained=False), ShapesDataset.num_classes,
                           anchor_sizes=SHAPES_ANCHOR_SIZES, pooler="roi_align",
                           representation_size=64, image_scale=scale,
                           rpn_pre_nms_top_n=(200, 100), rpn_post_nms_top_n=(50, 20),
                           rois_per_image=16).train()
        leftover = {n: torch.randn_like(p) * 0.01 for n, p in model.named_parameters()}

    def make_optimizer(net):
        if opt == "adam":
            return torch.optim.Adam(net.parameters(), lr=1e-3)
        return torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    what = (f"case {index}: {n_images} image(s) of 64 x 64"
            + (", the first with no objects" if n_boxes == 0 else
               f", the first with {len(targets[0]['boxes'])} box(es)")
            + (f", image_scale={scale}" if scale else "") + f", {opt}")
    return model, images, targets, leftover, make_optimizer, what


def _run(step, case, seed):
    """Run `step` on a fresh copy of the case's model; returns (model, returned value)."""
    model, images, targets, leftover, make_optimizer, _ = case
    net = copy.deepcopy(model)
    for n, p in net.named_parameters():   # gradients a previous step left behind
        p.grad = leftover[n].clone()
    optimizer = make_optimizer(net)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)            # the same RoI and anchor samples for every step
        value = step(net, [i.clone() for i in images], [dict(t) for t in targets], optimizer)
    return net, value


def _variant_step(detach=True, add_gt=True, zero_grad=True, keys=LOSS_NAMES):
    """The step with one ingredient changed: what a slip computes (for the hints only)."""
    def step(model, images, targets, optimizer):
        features, sizes, targets = model.shared_features(images, targets)
        proposals, _, rpn_losses = model.rpn(features, sizes, targets)
        proposals = [p.detach() if detach else p for p in proposals]
        if add_gt:
            proposals = [torch.cat([p, t["boxes"]]) for p, t in zip(proposals, targets)]
        losses = {**rpn_losses, **model.roi_heads(features, proposals, sizes, targets)}
        if zero_grad:
            optimizer.zero_grad()
        sum(losses[k] for k in keys).backward()
        optimizer.step()
        return losses
    return step


_SLIPS = (
    (dict(detach=False), "the detector loss reached the RPN's box-regression weights through the "
                         "proposal coordinates: that is NON-approximate joint training. Approximate "
                         "joint training treats the proposals as constants: detach them "
                         "(p.detach()) before handing them to the detector"),
    (dict(zero_grad=False), "the gradients left in .grad by the previous step were added to this "
                            "step's: call optimizer.zero_grad() before backward()"),
    (dict(add_gt=False), "the detector sampled its RoIs from the proposals alone: append each "
                         "image's ground-truth boxes to its proposals (torch.cat), as the model does"),
    (dict(keys=RPN_LOSSES), "only the RPN's two losses were back-propagated: the loss is the sum of "
                            "all four"),
    (dict(keys=DETECTOR_LOSSES), "only the detector's two losses were back-propagated: the loss is "
                                 "the sum of all four"),
)


def _same_weights(a, b):
    return all(torch.allclose(p, q, rtol=1e-4, atol=1e-6)
               for p, q in zip(a.parameters(), b.parameters()))


def _library_calls(model):
    """Record the calls of `model(...)` (the whole forward) while the student's step runs, and
    whether the library's training step (``training_step``, called under any name) made them."""
    calls = []
    library = {loop.training_step.__code__, loop._step.__code__, loop.train.__code__}

    def hook(module, args):
        frame, inside = sys._getframe(1), False
        while frame is not None and not inside:
            inside, frame = frame.f_code in library, frame.f_back
        calls.append("library step" if inside else "forward")
    return calls, model.register_forward_pre_hook(hook)


def _diagnose(fn, case, seed, net, value):
    """Why the student's step differs from the library's: the hint of the matching slip."""
    before = case[0]
    if _same_weights(net, before) and all(torch.equal(p.grad, case[3][n]) if p.grad is not None
                                          else False for n, p in net.named_parameters()):
        return "the weights and their gradients did not change: compute the losses, call " \
               "backward() on their sum and optimizer.step()"
    if _same_weights(net, before):
        return "the weights did not change: call optimizer.step() after backward()"
    for changes, hint in _SLIPS:
        other, _ = _run(_variant_step(**changes), case, seed)
        if _same_weights(net, other):
            return hint
    return "the weights after your step differ from the library's; compare your steps with " \
           "FasterRCNN.forward (shared features, RPN, proposals + ground truth, detector head)"


def _check_returned(value, reference, what):
    if not isinstance(value, dict):
        return Result(False, f"{what}: your step returned {type(value).__name__}; return the dict "
                             "of the four losses (train_joint records each)")
    if set(value) != set(LOSS_NAMES):
        return Result(False, f"{what}: your step returned the keys {sorted(value)}; return the dict "
                             f"with the four losses {list(LOSS_NAMES)}")
    for k in LOSS_NAMES:
        got, want = float(torch.as_tensor(value[k]).detach()), float(reference[k].detach())
        if not math.isclose(got, want, rel_tol=1e-4, abs_tol=1e-6):
            return Result(False, f"{what}: {k} is {got:.5f}, the library's {want:.5f}")
    return None


@exercise("lesson05.joint_step")
def check_joint_step(fn):
    """fn(model, images, targets, optimizer): one approximate-joint training step of a
    FasterRCNN in training mode, built from its parts (``model.shared_features``, ``model.rpn``,
    ``model.roi_heads``): the four losses, with the proposals treated as constants, summed and
    back-propagated, one optimizer step; returns the dict of the four losses.

    Runs it on the JOINT_STEP_CASES (seeded tiny models, one or two images, one with no objects,
    resized or not, SGD or Adam, stale gradients in .grad) against the library's
    ``training_step`` and reports the smallest case where the weights or the losses differ."""
    if fn is None:
        return not_filled_in()
    if not callable(fn):
        return Result(False, f"pass your function itself (check_joint_step(my_step)), got {fn!r}")
    for index in range(len(JOINT_STEP_CASES)):
        case, seed = _case(index), 1000 + index
        what = case[5]
        reference, ref_losses = _run(loop.training_step, case, seed)
        calls, handle = _library_calls(case[0])
        try:
            value, err = run_safely(_run, fn, case, seed)
        finally:
            handle.remove()
        if "library step" in calls:
            return Result(False, "your step calls the library's own training step "
                                 "(frcnn_edu.training.training_step); write it yourself from the "
                                 "model's parts")
        if "forward" in calls:
            return Result(False, "your step calls model(images, targets), which makes the "
                                 "approximate-joint choice for you; build it from the model's parts: "
                                 "model.shared_features, model.rpn, model.roi_heads")
        if err is not None:
            return Result(False, f"{what}: {err.message}")
        net, value = value
        if not _same_weights(net, reference):
            return Result(False, f"{what}: {_diagnose(fn, case, seed, net, value)}.")
        wrong = _check_returned(value, ref_losses, what)
        if wrong is not None:
            return wrong
    return Result(True, f"your step matches the library's on all {len(JOINT_STEP_CASES)} cases: "
                        "the RPN's and the detector's losses summed, the proposals detached (so "
                        "the detector loss does not reach the RPN through the box coordinates), "
                        "one optimizer step.")
