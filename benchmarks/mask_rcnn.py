"""Mask R-CNN on the shapes: the command line's runs with and without masks, and the mask-branch
study of the paper's Table 2b / 2c; writes benchmarks/results/mask_rcnn.json.

    python benchmarks/mask_rcnn.py [--runs runs/mask_bench] [--minutes 10 | --cli-steps 2000] [--steps 150]
    python benchmarks/mask_rcnn.py --target [--seeds 0 1] [--runs runs/mask_target]

1. `python -m frcnn_edu train --minutes M` and `train --masks --minutes M` (seed 0; or both
   `--steps S`, the same work whatever the machine's load), one after
   the other, into <runs>/boxes and <runs>/masks; a folder that already holds a finished run is
   read, not retrained. Box mAP@0.5 (VOC), COCO box and mask AP, steps, seconds.
2. `frcnn_edu.training.mask_branch.mask_branch_study`: each variant's mask head trained for
   `--steps` steps on frozen features (200 training images), scored on 100 test images.
3. The cost of a training step with and without the mask branch, timed alternately in one
   process (`--step-cost-only` re-times it alone).
The machine's load average (uptime) is recorded beside each part: on a shared machine the
minutes budget buys fewer steps.

`--target` runs issue 16's target instead: `train --minutes 10 --seed S` with and without
`--masks` for each seed, into <runs>/masks_sS and <runs>/boxes_sS (finished folders are read),
and writes benchmarks/results/mask_target.json: the runs, and per seed whether mask AP@0.5 >=
0.85 and the box mAP within 2 points of the run without masks. README's Mask R-CNN row quotes
it (tests/test_story.py).
"""
import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from frcnn_edu.data import ShapesDataset  # noqa: E402
from frcnn_edu.training.mask_branch import mask_branch_study  # noqa: E402

KEEP = ("mAP", "mask_mAP", "mask_AP", "mask_AP75", "box_AP50", "box_AP", "box_AP75",
        "train_steps", "train_seconds", "images_per_second", "threads")


def _load():
    return [round(x, 2) for x in os.getloadavg()]


def cli_run(folder, minutes, masks, steps=None, seed=0):
    """Train (unless finished) and return the run's metrics that the results keep: a budget of
    `steps` when given (the same work on a busy machine), else of `minutes`."""
    metrics = folder / "metrics.json"
    load_before = _load()
    if not metrics.exists():
        budget = ["--steps", str(steps)] if steps else ["--minutes", str(minutes)]
        cmd = [sys.executable, "-m", "frcnn_edu", "train", "--out", str(folder), *budget,
               "--seed", str(seed)] + (["--masks"] if masks else [])
        subprocess.run(cmd, check=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    m = json.loads(metrics.read_text())
    row = {k: m[k] for k in KEEP if k in m}
    row.update(minutes=None if steps else minutes, steps_budget=steps, masks=masks, seed=seed,
               load_average_at_read=load_before, load_average_after=_load())
    return row


def step_cost(steps=6, seed=0):
    """Seconds per training step of the command line's model with and without the mask branch,
    timed in one process, alternating step by step (a busy machine slows both alike)."""
    import torch
    from frcnn_edu.models.recipes import RECIPES
    from frcnn_edu.models import shapes_faster_rcnn, shapes_mask_rcnn
    from frcnn_edu.training.loop import make_optimizer

    data = ShapesDataset("train", num_images=2 * steps, masks=True)
    torch.manual_seed(seed)
    models = {"boxes": shapes_faster_rcnn(**RECIPES["fast"]["model"]).train(),
              "masks": shapes_mask_rcnn(**RECIPES["fast"]["model"]).train()}
    opts = {k: make_optimizer(m.parameters(), "adam", 5e-4, 0.9, 0.0) for k, m in models.items()}
    seconds = {k: [] for k in models}
    for s in range(steps):
        items = [data[2 * s], data[2 * s + 1]]
        for name, model in models.items():
            targets = [t if name == "masks" else {k: v for k, v in t.items() if k != "masks"}
                       for _, t in items]
            start = time.perf_counter()
            loss = sum(model([i for i, _ in items], targets).values())
            opts[name].zero_grad()
            loss.backward()
            opts[name].step()
            seconds[name].append(time.perf_counter() - start)
    per_step = {k: round(sum(v[1:]) / (len(v) - 1), 3) for k, v in seconds.items()}  # 1st: warm-up
    return dict(per_step, ratio=round(per_step["masks"] / per_step["boxes"], 3),
                steps=steps - 1, load_average=_load())


#: Issue 16's target: mask AP@0.5 of a 10-minute `train --masks`, and the box mAP it may lose
MASK_TARGET, BOX_DROP = 0.85, 0.02


def target_runs(runs, seeds, minutes=10.0):
    """Issue 16's target for each seed: the two runs and whether each half of it holds."""
    result = {}
    for seed in seeds:
        boxes = cli_run(runs / f"boxes_s{seed}", minutes, False, seed=seed)
        masks = cli_run(runs / f"masks_s{seed}", minutes, True, seed=seed)
        result[str(seed)] = {"boxes": boxes, "masks": masks,
                             "mask_target_met": masks["mask_mAP"] >= MASK_TARGET,
                             "box_drop": round(boxes["mAP"] - masks["mAP"], 4),
                             "box_target_met": boxes["mAP"] - masks["mAP"] <= BOX_DROP}
    return {"runs": result, "minutes": minutes, "mask_target": MASK_TARGET, "box_drop": BOX_DROP,
            "machine": {"cpu_count": os.cpu_count(), "note": "2 torch threads, one run at a "
                        "time; the load averages are those when the folder was read"}}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", default="runs/mask_bench")
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--cli-steps", type=int, default=None,
                   help="budget the two command-line runs in steps instead of --minutes")
    p.add_argument("--steps", type=int, default=150)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mask_rcnn.json"))
    p.add_argument("--step-cost-only", action="store_true",
                   help="only time a step with and without masks; update the results file")
    p.add_argument("--target", action="store_true",
                   help="issue 16's target: 10-minute runs with and without masks per --seeds")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = p.parse_args(argv)
    if args.target:
        result = target_runs(Path(args.runs), args.seeds, args.minutes)
        out = ROOT / "benchmarks" / "results" / "mask_target.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
        return
    if args.step_cost_only:
        result = json.loads(Path(args.out).read_text())
        result["step_cost"] = step_cost()
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result["step_cost"], indent=2))
        return
    runs = Path(args.runs)
    result = {"cli": {"boxes": cli_run(runs / "boxes", args.minutes, False, args.cli_steps),
                      "masks": cli_run(runs / "masks", args.minutes, True, args.cli_steps)}}
    load, start = _load(), time.perf_counter()
    study = mask_branch_study(ShapesDataset("train", num_images=200, masks=True),
                              ShapesDataset("test", num_images=100, masks=True), steps=args.steps)
    result["study"] = {"rows": study, "train_images": 200, "test_images": 100,
                       "steps": args.steps, "seconds": round(time.perf_counter() - start, 1),
                       "load_average": [load, _load()]}
    result["paper"] = {"source": "He et al., Mask R-CNN, ICCV 2017, Table 2 (COCO mask AP, "
                                 "ResNet-50-C4)",
                       "RoIAlign + sigmoid (paper)": 30.3, "RoIPool + sigmoid (Table 2c)": 26.9,
                       "RoIAlign + softmax (Table 2b)": 24.8}
    result["step_cost"] = step_cost()
    result["machine"] = {"cpu_count": os.cpu_count(),
                         "note": "shared with other jobs; load averages as recorded"}
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
