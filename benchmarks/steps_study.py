"""Steps to mAP@0.5 0.90: `python -m frcnn_edu train --method joint --steps N` with one setting
changed (issue 14, benchmarks/RESULTS.md "Learning faster per step").

Runs the command line's own code path (`frcnn_edu.cli.main`), with keyword overrides patched into
the model builder (`recipes.shapes_faster_rcnn`, e.g. fg_fraction, rois_per_image) and into
`train_joint` (e.g. warmup, lr_drops), and optionally a cosine schedule in place of the step drop;
metrics.json is the command's own (held-out mAP on the 200 `test` images). Prints one RESULT line.

    PYTHONPATH=$PWD python benchmarks/steps_study.py OUT SEED STEPS MODEL_JSON TRAIN_JSON \
        [SCHEDULE [TRAIN FLAGS...]]
    e.g. ... /tmp/h12/roi128 0 800 '{"rois_per_image": 128}' '{}'
         ... /tmp/h12/cos 0 800 '{}' '{}' cosine        # cosine[:FLOOR], FLOOR a fraction of lr
         ... /tmp/s14/lr 0 800 '{}' '{}' step --lr 0.00075   # flags go to `train` itself
(`lr` and the other settings the command passes to `train_joint` are set by flags, not TRAIN_JSON,
whose keys the command's own keywords would override.)
"""
import functools
import json
import math
import sys
import time

from frcnn_edu import cli
from frcnn_edu.models import recipes
from frcnn_edu.training import loop, schemes


def cosine(floor):
    def lr_at(step, progress, lr, warmup, drops):  # same warm-up, then half a cosine to floor*lr
        factor = min(1.0, (step + 1) / warmup) if warmup else 1.0
        return lr * factor * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
    return lr_at


def main():
    out, seed, steps = sys.argv[1:4]
    model_kw, train_kw = json.loads(sys.argv[4]), json.loads(sys.argv[5])
    schedule = sys.argv[6] if len(sys.argv) > 6 else "step"
    flags = sys.argv[7:]
    recipes.shapes_faster_rcnn = functools.partial(recipes.shapes_faster_rcnn, **model_kw)
    cli.train_joint = functools.partial(schemes.train_joint, **train_kw)
    if schedule.startswith("cosine"):
        loop.lr_at = cosine(float(schedule.split(":")[1]) if ":" in schedule else 0.0)
    start = time.time()
    cli.main(["train", "--method", "joint", "--steps", steps, "--seed", seed, "--out", out, *flags])
    m = json.loads(open(f"{out}/metrics.json").read())
    print("RESULT", out, "mAP", m["mAP"], "steps", m["train_steps"], "train_s", m["train_seconds"],
          "threads", m["threads"], "wall", round(time.time() - start), model_kw, train_kw, schedule,
          *flags, flush=True)


if __name__ == "__main__":
    main()
