"""Lesson 08's detector on the tree-crown tiles: one recipe per call, held-out mAP every N steps.

    python benchmarks/treecrowns_study.py --name flips --flips --steps 1000 --eval-every 200

Trains `shapes_faster_rcnn` as lesson 08 does (TinyVGG stride 8, RoIAlign, the anchors from the
box statistics, tiles at their own scale, Adam, approximate joint) with one change at a time
(augmentation, backbone, learning rate, anchors), and every `--eval-every` steps scores the
splits: train, test (a second photograph, 13 km away) and othersites (two other forests), with
the model's score threshold (0.05, 100 detections per tile) and with none (0.0, 300). The
sliding-window baseline of the lesson is scored once. Each run is stored under its --name in
benchmarks/results/treecrowns_study.json (with the load average and the seconds of training),
which lesson 08 prints.
"""
import argparse
import json
import os
import time
from pathlib import Path

import torch

from frcnn_edu.anchors import anchor_sizes_from_boxes
from frcnn_edu.data import TREE_CLASSES, aerial_augmentation, tree_crowns
from frcnn_edu.evaluation import sliding_window_baseline, voc_eval
from frcnn_edu.inference import predict_dataset
from frcnn_edu.models import shapes_faster_rcnn
from frcnn_edu.models.build import freeze_blocks
from frcnn_edu.training import train_joint

OUT = Path(__file__).resolve().parent / "results" / "treecrowns_study.json"


def score(model, dataset, thresh, per_image):
    heads = model.roi_heads
    old = heads.score_thresh, heads.detections_per_image
    heads.score_thresh, heads.detections_per_image = thresh, per_image
    try:
        predictions, targets, _ = predict_dataset(model, dataset)
    finally:
        heads.score_thresh, heads.detections_per_image = old
    result = voc_eval(predictions, targets, len(TREE_CLASSES))
    return round(result["mAP"], 4), round(sum(len(p["boxes"]) for p in predictions) / len(dataset), 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--name", required=True)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--eval-every", type=int, default=200)
    ap.add_argument("--flips", action="store_true", help="vertical flips + 90-degree rotations")
    ap.add_argument("--jitter", type=float, default=0.0)
    ap.add_argument("--hue", type=float, default=0.0)
    ap.add_argument("--scratch", action="store_true", help="TinyVGG from scratch")
    ap.add_argument("--freeze", type=int, default=0, help="first TinyVGG blocks frozen")
    ap.add_argument("--lr", type=float, default=0.0005)
    ap.add_argument("--sizes", default="", help="anchor sizes, e.g. 16,32,64 (default: quantiles)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-train-eval", action="store_true")
    args = ap.parse_args()

    g = torch.Generator().manual_seed(args.seed)
    augment = aerial_augmentation(flips=args.flips, jitter=args.jitter, hue=args.hue, generator=g)
    train_set = tree_crowns("train", transforms=augment if augment.transforms else None)
    splits = {s: tree_crowns(s) for s in ("train", "test", "othersites")}
    boxes = torch.cat([splits["train"].get_annotation(i)["boxes"] for i in range(len(splits["train"]))])
    sizes = tuple(int(s) for s in args.sizes.split(",")) if args.sizes else \
        tuple(anchor_sizes_from_boxes(boxes, 3))
    baseline = {}
    for s in ("test", "othersites"):
        anns = [splits[s].get_annotation(i) for i in range(len(splits[s]))]
        baseline[s] = round(voc_eval(sliding_window_baseline(splits[s], 37), anns, 2)["mAP"], 4)
    print("baseline", baseline, "anchor sizes", sizes, flush=True)

    torch.manual_seed(args.seed)
    model = shapes_faster_rcnn(pretrained=not args.scratch, num_classes=2, stride=8, image_scale=None,
                               pooler="roi_align", anchor_sizes=sizes, anchor_ratios=(1.0,))
    freeze_blocks(model.backbone, args.freeze)
    load0, rows, done = os.getloadavg()[0], [], 0
    # one train() call per chunk would restart Adam and the warm-up; instead train the whole
    # budget once and score in a step_fn hook every eval_every steps
    from frcnn_edu.training.loop import training_step

    clock = {"t": time.perf_counter(), "eval": 0.0}

    def step_fn(model_, images, targets, optimizer):
        nonlocal done
        losses = training_step(model_, images, targets, optimizer)
        done += 1
        if done % args.eval_every == 0 or done == args.steps:
            t0 = time.perf_counter()
            model_.eval()
            row = {"step": done}
            for s in ("train", "test", "othersites"):
                if s == "train" and args.no_train_eval and done != args.steps:
                    continue
                row[s] = score(model_, splits[s], 0.05, 100)
                if s != "train":
                    row[s + "_thresh0"] = score(model_, splits[s], 0.0, 300)
            model_.train()
            clock["eval"] += time.perf_counter() - t0
            row["train_seconds"] = round(time.perf_counter() - clock["t"] - clock["eval"], 1)
            row["load"] = round(os.getloadavg()[0], 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
        return losses

    train_joint(model, train_set, steps=args.steps, optimizer="adam", lr=args.lr, step_fn=step_fn,
                progress=False)
    record = {"name": args.name, "args": vars(args), "anchor_sizes": sizes, "baseline": baseline,
              "rows": rows, "load_start": round(load0, 2), "load_end": round(os.getloadavg()[0], 2),
              "threads": torch.get_num_threads(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    save(record)


def save(record, path=OUT):
    """Add `record` to the results file under its name (a run of the same name is replaced)."""
    runs = json.loads(path.read_text())["runs"] if path.exists() else []
    runs = [r for r in runs if r["name"] != record["name"]] + [record]
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps({"runs": runs}, indent=1) + "\n")


if __name__ == "__main__":
    main()
