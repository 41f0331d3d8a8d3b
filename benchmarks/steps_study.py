"""Steps to mAP@0.5 0.90: `python -m frcnn_edu train --method joint --steps N` with one setting
changed (issue 14, benchmarks/RESULTS.md "Learning faster per step").

Runs the command line's own code path (`frcnn_edu.cli.main`), with keyword overrides patched into
the model builder (`recipes.shapes_faster_rcnn`, e.g. fg_fraction, rois_per_image) and into
`train_joint` (e.g. warmup, lr_drops), and optionally a cosine schedule in place of the step drop;
metrics.json is the command's own (held-out mAP on the 200 `test` images). Prints one RESULT line
and records the run in results/steps_study.json under its folder's name;
`steps_study.py --record FOLDER...` records plain `python -m frcnn_edu train` runs there.

    PYTHONPATH=$PWD python benchmarks/steps_study.py OUT SEED STEPS MODEL_JSON TRAIN_JSON \
        [SCHEDULE [TRAIN FLAGS...]]
    e.g. ... /tmp/h12/roi128 0 800 '{"rois_per_image": 128}' '{}'
         ... /tmp/h12/cos 0 800 '{}' '{}' cosine        # cosine[:FLOOR], FLOOR a fraction of lr
         ... /tmp/s14/lr 0 800 '{}' '{}' step --lr 0.00075   # flags go to `train` itself
         ... /tmp/s17/five 0 5min '{}' '{}'                   # STEPS "5min": --minutes 5
(`lr`, `batch_size` and the other settings the command passes to `train_joint` are set by flags
(`--lr`, `--batch-size`), not TRAIN_JSON, whose keys the command's own keywords would override.)

`--variant=NAME` first (before OUT) swaps in one of two changes that are not keywords:
    head_lr4  the layers trained from scratch (the RPN, cls_score, bbox_pred) at 4x the lr
    ohem      online hard example mining (Shrivastava et al. 2016, sec. 4): every proposal is
              scored by the head without gradient, NMS at 0.7 runs on the RoIs by their loss,
              and the head trains on the rois_per_image hardest (no foreground quota)
"""
import functools
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from frcnn_edu import cli
from frcnn_edu.boxes import encode_boxes, nms  # equal to torchvision.ops.nms (tests/test_boxes.py)
from frcnn_edu.losses import fast_rcnn_loss
from frcnn_edu.matching import label_proposals
from frcnn_edu.models import fast_rcnn, recipes
from frcnn_edu.training import loop, schemes

RESULTS = Path(__file__).resolve().parent / "results"
NEW_LAYERS = ("rpn.", "roi_heads.cls_score", "roi_heads.bbox_pred")  # not pre-trained


def cosine(floor):
    def lr_at(step, progress, lr, warmup, drops):  # same warm-up, then half a cosine to floor*lr
        factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
        return lr * factor * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
    return lr_at


def head_lr(scale):
    """A `train_joint` whose Adam steps the NEW_LAYERS at `scale` x the scheduled lr."""
    def step_fn(model, images, targets, optimizer):  # the loop has just set every group's lr
        for group in optimizer.param_groups:
            group["lr"] *= group["scale"]
        return loop.training_step(model, images, targets, optimizer)

    def train_joint(model, dataset, **kw):
        def make_optimizer(params, name, lr, momentum, weight_decay):
            new = {id(p) for n, p in model.named_parameters() if n.startswith(NEW_LAYERS)}
            groups = [[p for p in params if (id(p) in new) == is_new] for is_new in (False, True)]
            return torch.optim.Adam([{"params": groups[0], "scale": 1.0},
                                     {"params": groups[1], "scale": scale}], lr=lr)
        loop.make_optimizer = make_optimizer
        return schemes.train_joint(model, dataset, step_fn=step_fn, **kw)
    return train_joint


def ohem_forward(head, features, proposals, image_sizes, targets):
    """RoIHead's training forward with OHEM in place of the 25 %-foreground random sample."""
    rois, labels, deltas = [], [], []
    for props, t in zip(proposals, targets):  # label every proposal (the recipe's bg_iou starts
        # at 0, as OHEM's does: every proposal below fg_iou is a background candidate)
        lab, matched = label_proposals(props.detach(), t["boxes"], t["labels"], head.fg_iou,
                                       head.bg_iou)
        props, lab, matched = props.detach()[lab >= 0], lab[lab >= 0], matched[lab >= 0]
        d = torch.zeros_like(props)
        fg = lab > 0
        d[fg] = encode_boxes(props[fg], t["boxes"][matched[fg]], fast_rcnn.BOX_WEIGHTS)
        rois.append(props)
        labels.append(lab)
        deltas.append(d)
    with torch.no_grad():  # the read-only pass: each RoI's loss
        logits, pred = head.predict(features, rois)
        lab, gt = torch.cat(labels), torch.cat(deltas)
        loss = F.cross_entropy(logits, lab, reduction="none")
        pred = pred.view(len(lab), -1, 4)[torch.arange(len(lab)), lab]
        loss += head.lam * F.smooth_l1_loss(pred, gt, reduction="none").sum(1) * (lab > 0)
    losses = loss.split([len(r) for r in rois])
    hard = [nms(r, l, 0.7)[:head.rois_per_image] for r, l in zip(rois, losses)]  # the hardest
    logits, pred = head.predict(features, [r[k] for r, k in zip(rois, hard)])
    cls, box = fast_rcnn_loss(logits, pred, torch.cat([l[k] for l, k in zip(labels, hard)]),
                              torch.cat([d[k] for d, k in zip(deltas, hard)]), lam=head.lam)
    return {"loss_classifier": cls, "loss_box_reg": box}


def ohem():
    plain = fast_rcnn.RoIHead.forward

    def forward(head, features, proposals, image_sizes, targets=None):
        if targets is None:  # test time: unchanged
            return plain(head, features, proposals, image_sizes)
        return ohem_forward(head, features, proposals, image_sizes, targets)
    fast_rcnn.RoIHead.forward = forward


def record(out, **extra):
    """Add the `train` run in folder `out` to results/steps_study.json under the folder's name
    (what the README's steps-to-0.90 row quotes); returns its metrics.json."""
    out = Path(out)
    m = json.loads((out / "metrics.json").read_text())
    path = RESULTS / "steps_study.json"
    results = json.loads(path.read_text()) if path.exists() else {"runs": {}}
    settings = m["settings"]
    results["runs"][out.name] = {
        "mAP": m["mAP"], "steps": m["train_steps"], "seed": settings["seed"],
        "batch_size": settings.get("batch_size", 2), "train_seconds": m["train_seconds"],
        "threads": m["threads"], "date": time.strftime("%Y-%m-%d"), **extra}
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    return m


def main():
    if sys.argv[1] == "--record":  # a plain `train` run's folder(s): record them as they are
        for folder in sys.argv[2:]:
            record(folder)
        return
    variant = sys.argv.pop(1).split("=", 1)[1] if sys.argv[1].startswith("--variant=") else None
    out, seed, steps = sys.argv[1:4]
    model_kw, train_kw = json.loads(sys.argv[4]), json.loads(sys.argv[5])
    schedule = sys.argv[6] if len(sys.argv) > 6 else "step"
    flags = sys.argv[7:]
    recipes.shapes_faster_rcnn = functools.partial(recipes.shapes_faster_rcnn, **model_kw)
    cli.train_joint = functools.partial(schemes.train_joint, **train_kw)
    if variant == "head_lr4":
        cli.train_joint = functools.partial(head_lr(4.0), **train_kw)
    elif variant == "ohem":
        ohem()
    elif variant is not None:
        raise SystemExit(f"--variant takes head_lr4 or ohem, got {variant!r}")
    if schedule.startswith("cosine"):
        loop.lr_at = cosine(float(schedule.split(":")[1]) if ":" in schedule else 0.0)
    start = time.time()
    budget = ["--minutes", steps[:-3]] if steps.endswith("min") else ["--steps", steps]
    cli.main(["train", "--method", "joint", *budget, "--seed", seed, "--out", out, *flags])
    minutes = {"minutes": float(steps[:-3])} if steps.endswith("min") else {}
    m = record(out, variant=variant, model_kw=model_kw, train_kw=train_kw, schedule=schedule,
               **minutes)
    print("RESULT", out, "mAP", m["mAP"], "steps", m["train_steps"], "train_s", m["train_seconds"],
          "threads", m["threads"], "wall", round(time.time() - start), model_kw, train_kw, schedule,
          variant, *flags, flush=True)


if __name__ == "__main__":
    main()
