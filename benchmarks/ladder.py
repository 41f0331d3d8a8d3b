"""The accuracy ladder: R-CNN, Fast R-CNN and Faster R-CNN trained under one budget rule on the
same shapes images, scored on the same held-out images. Writes benchmarks/results/ladder.json,
the one source the lessons and the README quote.

The budget rule (the same for every rung):
* every detector learns from the same 1,000 `train` images and starts from the same
  pre-trained TinyVGG and fc6/fc7 (our ImageNet stand-in);
* R-CNN has no SGD stage: one pass of its CNN over every proposal of every image, then its
  per-class SVMs (hard negatives) and ridge box regressors (R-CNN sec. 2.3); no fine-tuning;
* Fast R-CNN and Faster R-CNN train for the same S SGD steps of 2 images (S = 3,000: six
  epochs), in the same image order with the same flips, with the command line's recipe
  (stride 8, RoIAlign, images resized to 240 px, Adam 5e-4, lr / 10 after 75 % of the steps).
  They are the same network: Fast R-CNN is Faster R-CNN with its RPN unused, trained and tested
  on selective-search boxes, so the two differ only in where the proposals come from;
* all three are scored on the same 200 `test` images (mAP@0.5, VOC area method). Fast R-CNN is
  tested with all its selective-search boxes, Faster R-CNN with the paper's 300 RPN proposals.

The RPN's claim (Faster R-CNN sec. 4.1, Table 2 and fig. 4): each detector is also tested with
its proposer's top N boxes for N in 100, 300, 1000, 2000, and the recall of both proposers is
measured against IoU for the same N. Selective search on a 160 x 160 image finds about 120
boxes (at most ~480), so from N = 300 on it gives all it has. Each detector head is also tested
on the other's proposals (`swapped_proposals`), and `by_steps` keeps the two CNN detectors' mAP
at the budgets of earlier runs (`--history`): Faster R-CNN has to learn its proposals, so it needs
more steps than Fast R-CNN to draw level (RESULTS.md).

    python benchmarks/ladder.py --steps 1000 --out /tmp/ladder_s1000.json
    python benchmarks/ladder.py --steps 3000 --reuse-rcnn /tmp/ladder_s1000.json \
        --history /tmp/ladder_s1000.json [--probe-every 500]      # -> benchmarks/results/ladder.json
"""
import argparse
import datetime
import json
import platform
import time
from pathlib import Path

import torch

from frcnn_edu.models.recipes import RECIPES
from frcnn_edu.data import ShapesDataset
from frcnn_edu.evaluation import COCO_IOU_THRESHOLDS, proposal_recall
from frcnn_edu.inference import evaluate
from frcnn_edu.models import shapes_faster_rcnn, shapes_rcnn
from frcnn_edu.proposals import selective_search_dataset
from frcnn_edu.results import RESULTS_DIR, format_ladder
from frcnn_edu.training import fit_rcnn, save_atomic, train_fast_rcnn, train_joint

SS = dict(mode="fast", min_size=6)       # lesson 01's and 02's: 20 px * 160 / 500, as R-CNN's 20
TOP_N = (100, 300, 1000, 2000)
RESULTS = RESULTS_DIR / "ladder.json"


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def with_test_top_n(model, n):
    """Set the RPN's test-time top-N after NMS (the paper's 300) to n; returns the old value."""
    old = model.rpn.post_nms_top_n
    model.rpn.post_nms_top_n = (old[0], n)
    return old


def recall_curve(proposals, gt_boxes, n):
    return [round(float(r), 4) for r in proposal_recall(proposals, gt_boxes, COCO_IOU_THRESHOLDS, top_n=n)]


def rpn_proposals(model, dataset, n, batch_size=8):
    """The RPN's top-n test-time proposals of every image, in input pixels."""
    old = with_test_top_n(model, n)
    boxes = []
    try:
        for start in range(0, len(dataset), batch_size):
            images = [dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))]
            boxes += model.propose(images)[0]
    finally:
        model.rpn.post_nms_top_n = old
    return boxes


def probe(test, every, curve, spent):
    """A forward for `train` that scores the model on `test` every `every` steps (eval mode, no
    gradient, no random numbers drawn), to find how many steps reach a given mAP. The seconds
    the probes take are added to spent[0], so the step time can leave them out."""
    calls = {"n": 0}

    def forward(m, images, targets):
        if every and calls["n"] and calls["n"] % every == 0:
            start = time.perf_counter()
            m.eval()
            curve.append((calls["n"], evaluate(m, test)["mAP"]))
            m.train()
            spent[0] += time.perf_counter() - start
        calls["n"] += 1
        return m(images, targets)
    return forward


def steps_to(curve, level):
    return next((s for s, m in curve if m >= level), None)


def run_rcnn(train, train_props, test, test_props):
    torch.manual_seed(0)
    model, secs = _timed(lambda: fit_rcnn(shapes_rcnn(pretrained=True), train, train_props, progress=False))
    return model, dict(train_seconds=round(secs, 1), **evaluate(model, test, proposals=test_props))


def run_fast_rcnn(train, train_props, test, test_props, steps, recipe):
    torch.manual_seed(0)
    model = shapes_faster_rcnn(pretrained=True, **recipe["model"])
    hist, secs = _timed(lambda: train_fast_rcnn(model, train, train_props, steps=steps,
                                                optimizer=recipe["optimizer"], lr=recipe["lr"]))
    row = dict(steps=len(hist), train_seconds=round(secs, 1), **evaluate(model, test, proposals=test_props))
    row["top_n"] = {str(n): evaluate(model, test, proposals=[p[:n] for p in test_props])["mAP"] for n in TOP_N}
    return model, row


def run_faster_rcnn(train, test, steps, recipe, probe_every):
    torch.manual_seed(0)
    model = shapes_faster_rcnn(pretrained=True, **recipe["model"])
    curve, spent = [], [0.0]
    hist, secs = _timed(lambda: train_joint(model, train, steps=steps, optimizer=recipe["optimizer"],
                                            lr=recipe["lr"], forward=probe(test, probe_every, curve, spent)))
    row = dict(steps=len(hist), train_seconds=round(secs - spent[0], 1), **evaluate(model, test))
    curve.append((len(hist), row["mAP"]))
    row.update(seconds_per_step=round((secs - spent[0]) / len(hist), 4), map_by_step=[list(c) for c in curve],
               steps_to_0_90=steps_to(curve, 0.90))
    row["top_n"] = {}
    for n in TOP_N:
        old = with_test_top_n(model, n)
        row["top_n"][str(n)] = evaluate(model, test)["mAP"]
        model.rpn.post_nms_top_n = old
    return model, row


def swapped_proposals(fast_model, faster_model, test, test_props, rpn):
    """Each detector head tested on the other's proposals (Faster R-CNN Table 2's question,
    which part makes the difference: the proposals or the detector trained with them)."""
    return {"faster_rcnn_head_with_selective_search": evaluate(faster_model, test, proposals=test_props)["mAP"],
            "fast_rcnn_head_with_rpn_300": evaluate(fast_model, test, proposals=[p[:300] for p in rpn])["mAP"]}


def by_steps(result):
    """The part of a result that changes with the step budget, for the training-length table."""
    return {"fast_rcnn": result["fast_rcnn"]["mAP"], "faster_rcnn": result["faster_rcnn"]["mAP"],
            "rpn_recall_at_0.7_top_300": result["recall"]["rpn"]["300"][4]}


def merge_history(result, paths):
    """result["by_steps"]: this run's budget and those of earlier results files (same images)."""
    table = {}
    for path in paths:
        old = json.loads(Path(path).read_text())
        if old["settings"]["train_images"] == result["settings"]["train_images"]:
            table.update(old.get("by_steps", {}))
            table[str(old["settings"]["steps"])] = by_steps(old)
    table[str(result["settings"]["steps"])] = by_steps(result)
    result["by_steps"] = dict(sorted(table.items(), key=lambda kv: int(kv[0])))
    return result


def reused_rcnn(path, train_images, test_images):
    """R-CNN's row from an earlier results file, or None when there is none that matches."""
    if path is None or not Path(path).exists():
        return None
    old = json.loads(Path(path).read_text())
    same = (old["settings"]["train_images"], old["settings"]["test_images"],
            old["settings"]["selective_search"]) == (train_images, test_images, SS)
    return old["rcnn"] if same else None


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=3000, help="SGD steps of Fast and Faster R-CNN")
    p.add_argument("--train-images", type=int, default=1000)
    p.add_argument("--probe-every", type=int, default=500, help="score Faster R-CNN every N steps")
    p.add_argument("--cache", default="build/cache", help="folder for selective-search boxes")
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--reuse-rcnn", default=None, metavar="JSON",
                   help="take R-CNN's row from this earlier results file (it has no SGD steps, so "
                        "--steps does not change it) when its images and selective search match")
    p.add_argument("--models", default="build/ladder", help="where the trained models are saved")
    p.add_argument("--history", nargs="*", default=[], metavar="JSON",
                   help="earlier results files (other --steps) whose mAPs join the by_steps table")
    args = p.parse_args()
    recipe = RECIPES["fast"]
    train, test = ShapesDataset("train", num_images=args.train_images), ShapesDataset("test")
    cache = Path(args.cache)
    (train_props, test_props), ss_s = _timed(lambda: (
        selective_search_dataset(train, cache=cache / f"ladder_ss_train_{len(train)}.pt", progress=False, **SS),
        selective_search_dataset(test, cache=cache / "ladder_ss_test.pt", progress=False, **SS)))
    print(f"selective search: {ss_s:.0f} s (cached after the first run); "
          f"{sum(map(len, test_props)) / len(test):.0f} boxes per test image")

    rcnn = reused_rcnn(args.reuse_rcnn, len(train), len(test))
    if rcnn is None:
        _, rcnn = run_rcnn(train, train_props, test, test_props)
    print(f"R-CNN: mAP {rcnn['mAP']:.3f} ({rcnn['train_seconds']:.0f} s)")
    fast_model, fast = run_fast_rcnn(train, train_props, test, test_props, args.steps, recipe)
    print(f"Fast R-CNN: mAP {fast['mAP']:.3f} ({fast['train_seconds']:.0f} s)")
    faster_model, faster = run_faster_rcnn(train, test, args.steps, recipe, args.probe_every)
    print(f"Faster R-CNN: mAP {faster['mAP']:.3f} ({faster['train_seconds']:.0f} s)")
    for name, model in (("fast_rcnn", fast_model), ("faster_rcnn", faster_model)):
        save_atomic(model.state_dict(), Path(args.models) / f"{name}_s{args.steps}.pt")

    gt = [test.get_target(i)["boxes"] for i in range(len(test))]
    rpn = rpn_proposals(faster_model, test, max(TOP_N))
    recall = {"iou_thresholds": [round(t, 2) for t in COCO_IOU_THRESHOLDS],
              "rpn": {str(n): recall_curve(rpn, gt, n) for n in TOP_N},
              "selective_search": {str(n): recall_curve(test_props, gt, n) for n in TOP_N}}
    result = {
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "date": datetime.date.today().isoformat()},
        "settings": {"steps": args.steps, "images_per_step": 2, "train_images": len(train),
                     "test_images": len(test), "recipe": recipe, "selective_search": SS,
                     "faster_rcnn_test_proposals": 300, "seed": 0},
        "rcnn": rcnn, "fast_rcnn": fast, "faster_rcnn": faster, "recall": recall,
        "ss_boxes_per_test_image": round(sum(map(len, test_props)) / len(test), 1),
        "swapped_proposals": swapped_proposals(fast_model, faster_model, test, test_props, rpn),
    }
    result = merge_history(result, args.history)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(format_ladder(result))


if __name__ == "__main__":
    main()
