"""The training loop every scheme shares: SGD with momentum, a step schedule, checkpoints.

The papers train with SGD (momentum 0.9, weight decay 0.0005) and drop the learning rate by 10x
for the last part of training (Faster R-CNN sec. 3.1.3: 60k iterations, then 20k at a tenth).
`train` does the same for a budget given in steps, epochs or minutes (then the drop comes after
that share of the time, and the run stops when its minutes are spent), with a short linear
warm-up (so a from-scratch head does not diverge in its first steps), a progress bar, a loss
history, a NaN check that names the step and the loss, and a checkpoint after every epoch that a
second call with the same `out` folder resumes from.

A resume must continue the same run: the checkpoint stores the settings that shape the run (the
budget, the optimizer and its hyper-parameters, batch size, seed, warm-up, drops, flips) as plain
values, and a call with other settings is refused, naming each one (old -> new), before anything
is loaded or written. A finished run is not extended by a larger budget: its schedule (the
learning-rate drop at 75 % of the budget) was spent on the old one, so more steps would not be
the run that a fresh call with the larger budget trains. It says it is finished instead.

Shape key:
    B  images per step (the paper's N = 2 for Fast R-CNN, 1 for the RPN)
"""
import functools
import math
import numbers
import time
import warnings

import torch
from tqdm.auto import tqdm

from ..data.batching import check_image
from ..data.targets import check_targets
from ..data.transforms import RandomHorizontalFlip
from ..losses import NonFiniteError
from . import distributed
from .checkpoint import read_checkpoint, restore_checkpoint, save_checkpoint


def default_forward(model, images, targets):
    return model(images, targets)


def check_dataset(dataset, num_classes):
    """Validate every item once, before the first step (bad data fails fast and clearly).

    Each image must be a finite float32 [3, H, W] tensor and each target must hold its boxes
    inside its image (no clipping here: clip when reading, e.g. ``VOCDataset(..., clip=True)``,
    ``read_coco(..., clip=True)`` or ``check_target(target, image_size, clip=True)``). Images
    whose pixels look like 0-255 get one warning for the whole dataset.
    """
    looks_255 = []
    for i in range(len(dataset)):
        image, target = dataset[i]
        try:
            if check_image(image, "its image", warn=False) > 1.5:
                looks_255.append(i)
            check_targets([target], num_classes, 1, image_sizes=[tuple(image.shape[-2:])])
        except (ValueError, TypeError) as e:
            raise type(e)(f"dataset item {i}: {e}") from None
    if looks_255:
        warnings.warn(f"{len(looks_255)} of {len(dataset)} dataset images (first: item "
                      f"{looks_255[0]}) have pixel values above 1.5: they look like 0-255; "
                      "divide them by 255 (the model expects [0, 1])", stacklevel=2)


def check_budget(steps=None, epochs=None, minutes=None):
    """Exactly one budget, and a positive one: whole steps or epochs >= 1, minutes > 0."""
    given = {k: v for k, v in (("steps", steps), ("epochs", epochs), ("minutes", minutes))
             if v is not None}
    if len(given) != 1:
        raise ValueError("give exactly one budget: steps=, epochs= or minutes=")
    (name, value), = given.items()
    if name == "minutes":
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or \
                not math.isfinite(value) or value <= 0:
            raise ValueError(f"minutes must be a positive, finite number of minutes, got {value!r}")
    elif not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return name, value


def epoch_order(n, seed, epoch):
    """The shuffled order of epoch `epoch`: fixed by (seed, epoch), so a resumed run matches."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))


def lr_at(step, progress, lr, warmup, drops):
    """Linear warm-up over `warmup` steps, then lr / 10 once `progress` (the fraction of the
    budget used: of the steps, or of the minutes) reaches each fraction in `drops`."""
    factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
    return lr * factor * 0.1 ** sum(progress >= d for d in drops)


def _batches(dataset, batch_size, seed, epoch, flip, rank=0, world=1):
    """Mini-batches of one epoch; random horizontal flips (Fast R-CNN sec. 2.3) when `flip`.

    With `world` processes, each global batch holds world x batch_size images and process
    `rank` gets the rank-th slice; the flip of every image of the global batch is drawn in every
    process (one draw per image, in order), so the processes together see the images and flips
    of a one-process run with batch_size world x batch_size."""
    order = epoch_order(len(dataset), seed, epoch).tolist()
    flipper = RandomHorizontalFlip(0.5 if flip else 0.0,
                                   generator=torch.Generator().manual_seed(seed * 7919 + epoch))
    step = batch_size * world
    for start in range(0, len(order) - step + 1, step):
        mine = range(start + rank * batch_size, start + (rank + 1) * batch_size)
        indices, items = [], []
        for k in range(start, start + step):
            if k in mine:
                indices.append(order[k])
                items.append(flipper(*dataset[order[k]]))
            else:  # another process's image: draw its flip all the same
                torch.rand((), generator=flipper.generator)
        yield indices, [img for img, _ in items], [t for _, t in items]


def _check_batch(images, indices, step):
    """NaN or inf pixels are an input problem: name the dataset item, not the loss."""
    for img, i in zip(images, indices):
        if torch.is_tensor(img) and img.is_floating_point() and not torch.isfinite(img).all():
            raise ValueError(f"training stopped at step {step}: dataset item {i} holds NaN or inf "
                             "pixels; that is an input problem (the file or a transform), not a "
                             "diverging model: fix or drop that image")


# the loss term each RPN output feeds (the proposal layer checks them before any loss is computed)
_TERM_OF_OUTPUT = {"objectness": "loss_objectness", "deltas": "loss_rpn_box_reg"}


def training_step(model, images, targets, optimizer, forward=default_forward):
    """One SGD step on the sum of the named losses; returns the dict of losses (tensors).

    `forward(model, images, targets)` gives the losses: for a `FasterRCNN` the default is its
    training forward, the four losses of joint training (the model's `joint` setting decides
    whether the detector treats the proposals as constants). A NaN or inf loss raises a
    FloatingPointError before the backward pass, so the weights are not spoiled.
    """
    losses = forward(model, images, targets)
    for name, value in losses.items():
        if not torch.isfinite(value):
            raise FloatingPointError(f"{name} is {value.item()}; lower the learning rate or "
                                     "check the data")
    optimizer.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    optimizer.step()
    return losses


def _step(model, optimizer, step_fn, images, targets, step, lr):
    """Set the learning rate, run `step_fn(model, images, targets, optimizer)` and turn its
    losses into floats; failures name the step."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    try:
        losses = step_fn(model, images, targets, optimizer)
    except FloatingPointError as e:
        raise FloatingPointError(f"training stopped at step {step}: {e}") from e
    except NonFiniteError as e:  # a loss's input (a model output) became NaN or inf
        raise FloatingPointError(f"training stopped at step {step}: {e}; the training diverged: "
                                 f"lower the learning rate (now {lr:.3g})") from e
    except ValueError as e:
        if "NaN" in str(e):  # e.g. the RPN's proposal layer, which runs before the losses
            output = str(e).split(" ", 1)[0]
            term = _TERM_OF_OUTPUT.get(output)
            what = f"{term}: its input, the RPN's {output}," if term else output
            raise FloatingPointError(f"training stopped at step {step}: {what} contains NaN or "
                                     "inf; the training diverged: lower the learning rate "
                                     f"(now {lr:.3g})") from e
        raise
    if not isinstance(losses, dict) or not losses:
        raise TypeError(f"step_fn must return the dict of named losses, got {type(losses).__name__}")
    record = {name: value.item() if torch.is_tensor(value) else float(value)
              for name, value in losses.items()}
    for name, value in record.items():   # a step_fn of one's own: checked after its step
        if not math.isfinite(value):
            raise FloatingPointError(f"training stopped at step {step}: {name} is {value}; "
                                     "lower the learning rate or check the data")
    return record


def make_optimizer(params, name, lr, momentum, weight_decay):
    """The paper's SGD (momentum, weight decay) or Adam, which needs fewer steps on a small budget.

    Adam gets no weight decay: its per-parameter step sizes make L2 act differently (AdamW), and
    minutes-long runs do not overfit the shapes data.
    """
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f'optimizer must be "sgd" (the papers) or "adam", got {name!r}')


def _plan(steps, epochs, minutes, steps_per_epoch):
    """Total steps of a steps or epochs budget; None for minutes (the clock decides)."""
    check_budget(steps, epochs, minutes)
    if steps_per_epoch == 0:
        raise ValueError("the dataset holds fewer images than one step takes (batch_size, times "
                         "the number of processes when training on several)")
    if minutes is not None:
        return None
    return steps if steps is not None else epochs * steps_per_epoch


def _estimate_total(minutes, step, elapsed, since):
    """Steps a minutes budget will reach, at the pace since `since` = (step, elapsed); for the
    progress bar only. A minutes run is scheduled by the clock, not by a plan in steps: steps
    change speed as the RPN learns (its proposal layer's NMS stops sooner or later), and a plan
    in steps made early ran a 5-minute run 10 % over."""
    per_step = (elapsed - since[1]) / max(1, step - since[0])
    return max(step, step + int((minutes * 60 - elapsed) / per_step))


def _progress(state, total, minutes, elapsed):
    """Fraction of the budget used (>= 1: done)."""
    return elapsed / (minutes * 60) if minutes is not None else state["step"] / total


def _to(device, images, targets):
    """Images and targets on `device`; float64/float16 target boxes become float32, as
    torchvision accepts any float boxes (the model computes in float32)."""
    def move(k, v):
        if not torch.is_tensor(v):
            return v
        if k in ("boxes", "proposals") and v.is_floating_point():
            return v.to(device, torch.float32)
        return v.to(device)
    return ([img.to(device) for img in images],
            [{k: move(k, v) for k, v in t.items()} for t in targets])


def run_settings(steps, epochs, minutes, optimizer, lr, momentum, weight_decay, batch_size,
                 seed, warmup, lr_drops, flip):
    """The settings that shape a run, as plain values (stored in the checkpoint)."""
    kind, value = check_budget(steps, epochs, minutes)
    settings = {"budget": f"{kind}={value}", "optimizer": optimizer, "lr": float(lr)}
    if optimizer == "sgd":  # Adam uses neither (see make_optimizer)
        settings.update(momentum=float(momentum), weight_decay=float(weight_decay))
    settings.update(batch_size=int(batch_size), seed=int(seed), warmup=int(warmup),
                    lr_drops=[float(d) for d in lr_drops], flip=bool(flip))
    return settings


def check_resume(stored, settings, out, state):
    """Refuse to resume `out` with settings other than its own (ValueError naming each)."""
    if stored is None:  # a checkpoint from before settings were stored: nothing to compare
        return
    diff = [f"{k} {stored.get(k)!r} -> {settings.get(k)!r}"
            for k in sorted(set(stored) | set(settings)) if stored.get(k) != settings.get(k)]
    if not diff:
        return
    finished = state["total_steps"] is not None and state["step"] >= state["total_steps"]
    what = (f"holds a finished run ({state['step']} steps); a finished run is not extended"
            if finished else f"holds a run stopped at step {state['step']}")
    raise ValueError(f"{out} {what}, and its settings differ: {'; '.join(diff)}. Train into a new "
                     "out folder, or call again with the same settings to resume or read it "
                     f"(nothing in {out} was changed)")


def train(model, dataset, *, steps=None, epochs=None, minutes=None, batch_size=2, lr=0.01,
          momentum=0.9, weight_decay=5e-4, optimizer="sgd", warmup=50, lr_drops=(0.75,), params=None,
          forward=default_forward, flip=True, out=None, device=None, seed=0,
          progress=True, desc="train", calibration_steps=10, step_fn=None):
    """Train `model` on `dataset` for a budget of steps, epochs or minutes; returns the history.

    The history is a list of dicts, one per step: step, epoch, lr, time (seconds of training so
    far, over all resumed runs), loss (the sum) and each named loss. With `out`, a checkpoint is
    written after every epoch and at the end; calling again with the same `out` and the same
    settings resumes (or returns at once when the run had finished); other settings (another
    budget, optimizer or hyper-parameter) raise a ValueError naming them, before anything in
    `out` or the model is touched. The budget must be positive. `params` restricts what is
    trained (4-step training freezes layers).
    `optimizer` is "sgd" (the papers' SGD with momentum) or "adam" (lr ~5e-4). With `minutes`
    the clock schedules the run: the learning rate drops after `lr_drops` of the time and the
    last step starts before the minutes are spent.
    `step_fn(model, images, targets, optimizer)`, when given, replaces `training_step` (the
    default: `forward`'s losses, summed, one optimizer step): it must do the whole step and
    return the dict of named losses. The loop still sets the learning rate before each call,
    batches, flips, checkpoints and records the history (lesson 05's exercise trains with it).
    """
    rank, world = distributed.world()
    if step_fn is None:
        step_fn = functools.partial(training_step, forward=forward)
    elif forward is not default_forward:
        raise ValueError("give forward= or step_fn=, not both: a step_fn computes its own losses")
    elif world > 1:
        raise ValueError("step_fn runs the model's parts itself, outside DistributedDataParallel, "
                         "so the processes' gradients would not be averaged: train it in one "
                         "process")
    settings = run_settings(steps, epochs, minutes, optimizer, lr, momentum, weight_decay,
                            batch_size, seed, warmup, lr_drops, flip)
    if world > 1:  # a resume must split the batches the same way
        settings["processes"] = world
    device = torch.device(device) if device is not None else next(model.parameters()).device
    payload = read_checkpoint(out, map_location=device) if out else None
    if payload is not None:  # compare first: a refused resume touches neither model nor folder
        check_resume(payload.get("settings"), settings, out, payload)
    model.to(device).train()
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    optimizer = make_optimizer(params, optimizer, lr, momentum, weight_decay)
    state = restore_checkpoint(payload, model, optimizer) if payload is not None else None
    state = state or {"step": 0, "epoch": 0, "total_steps": None, "history": [], "elapsed": 0.0}
    state["settings"] = settings
    per_epoch = len(dataset) // (batch_size * world)
    total = state["total_steps"] or _plan(steps, epochs, minutes, per_epoch)
    runner = distributed.wrap(model, device) if world > 1 else model  # averages the gradients
    bar = tqdm(total=total, initial=state["step"], desc=desc, disable=not progress or rank > 0,
               leave=False)
    started = time.perf_counter() - state["elapsed"]
    since = (state["step"], state["elapsed"])  # where the bar's estimate is timed from
    finished = state["total_steps"] is not None and state["step"] >= state["total_steps"]
    while not finished:
        for indices, images, targets in _batches(dataset, batch_size, seed, state["epoch"], flip,
                                                 rank, world):
            # process 0's clock decides for all (a minutes budget ends on the same step)
            done = distributed.agree(_progress(state, total, minutes, time.perf_counter() - started))
            if done >= 1:
                break
            _check_batch(images, indices, state["step"])
            rate = lr_at(state["step"], done, lr, warmup, lr_drops)
            record = _step(runner, optimizer, step_fn, *_to(device, images, targets), state["step"], rate)
            record = distributed.mean_over_processes(record)
            state["step"] += 1
            state["history"].append({"step": state["step"], "epoch": state["epoch"], "lr": rate,
                                     "time": time.perf_counter() - started,
                                     "loss": sum(record.values()), **record})
            bar.update(1)
            if minutes is not None and state["step"] % calibration_steps == 0:
                if state["step"] > calibration_steps:  # the first steps are slow: not timed
                    bar.total = _estimate_total(minutes, state["step"], time.perf_counter() - started, since)
                    bar.refresh()
                if state["step"] == calibration_steps:
                    since = (state["step"], time.perf_counter() - started)
            bar.set_postfix(loss=f"{state['history'][-1]['loss']:.3f}")
        state["epoch"] += 1
        elapsed = distributed.agree(time.perf_counter() - started)
        finished = _progress(state, total, minutes, elapsed) >= 1
        if finished:
            total = state["step"]
        state["elapsed"], state["total_steps"] = elapsed, total
        if out and rank == 0:
            save_checkpoint(out, model, optimizer, state)
    bar.close()
    model.eval()
    return state["history"]
