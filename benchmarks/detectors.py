"""R-CNN, Fast R-CNN and Faster R-CNN trained on the same shapes images, scored on the same test set.

The three papers' accuracy ladder in miniature (VOC 2007 test mAP, VGG-16: R-CNN 66.0 with box
regression, Fast R-CNN 66.9, Faster R-CNN 69.9 trained on VOC 2007 trainval). All three start
from the same pre-trained TinyVGG and fc6/fc7:

* R-CNN: selective search, a CNN pass per warped proposal, per-class SVMs with hard negatives
  and ridge box regressors (`fit_rcnn`); no fine-tuning (the paper fine-tunes first). Its
  features cost a CNN pass per region, so it learns from `--rcnn-images` training images.
* Fast R-CNN: the same selective-search proposals, one conv pass per image, RoI pooling, the
  multi-task loss, trained end to end for `--minutes`.
* Faster R-CNN: approximate joint training for `--minutes` (what `python -m frcnn_edu train`
  does), proposals from its own RPN.

Fast and Faster R-CNN use the same network and settings (stride, pooler, optimizer): they
differ only in where the proposals come from.

    python benchmarks/detectors.py [--minutes 5] [--rcnn-images 200] [--paper]
"""
import argparse
import json
import platform
import time
from pathlib import Path

import torch

from frcnn_edu.cli import RECIPES
from frcnn_edu.data import ShapesDataset
from frcnn_edu.inference import evaluate
from frcnn_edu.models import shapes_fast_rcnn, shapes_faster_rcnn, shapes_rcnn
from frcnn_edu.proposals import selective_search_dataset
from frcnn_edu.training import fit_rcnn, train_fast_rcnn, train_joint

SS = dict(mode="fast", max_proposals=100, min_size=6)  # lesson 01's settings for 160 x 160 images


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=5.0, help="training budget of each CNN detector")
    p.add_argument("--rcnn-images", type=int, default=200, help="training images for R-CNN")
    p.add_argument("--paper", action="store_true", help="stride 16, RoI max pooling, SGD lr 0.01")
    p.add_argument("--cache", default="build/cache", help="folder for selective-search boxes")
    p.add_argument("--out", default=None, help="write the results as JSON here")
    args = p.parse_args()
    recipe = RECIPES["paper" if args.paper else "fast"]
    net, opt = recipe["model"], {"optimizer": recipe["optimizer"], "lr": recipe["lr"]}
    train, test = ShapesDataset("train"), ShapesDataset("test")
    cache = Path(args.cache)
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}; {len(train)} train / {len(test)} test images; {net}, {opt}")
    (train_props, test_props), ss_s = _timed(lambda: (
        selective_search_dataset(train, cache=cache / "ss_train.pt", progress=False, **SS),
        selective_search_dataset(test, cache=cache / "ss_test.pt", progress=False, **SS)))
    rows = {}

    torch.manual_seed(0)
    rcnn_train = ShapesDataset("train", num_images=args.rcnn_images)
    rcnn, secs = _timed(lambda: fit_rcnn(shapes_rcnn(pretrained=True), rcnn_train,
                                         train_props[:args.rcnn_images], progress=False))
    rows["R-CNN"] = dict(train_images=args.rcnn_images, train_seconds=secs,
                         **evaluate(rcnn, test, proposals=test_props))

    torch.manual_seed(0)
    # Fast R-CNN takes the selective-search boxes of the images as they are: no resizing.
    fast = shapes_fast_rcnn(pretrained=True, **{k: v for k, v in net.items() if k != "image_scale"})
    hist, secs = _timed(lambda: train_fast_rcnn(fast, train, train_props, minutes=args.minutes,
                                                progress=False, **opt))
    rows["Fast R-CNN"] = dict(train_images=len(train), train_seconds=secs, steps=len(hist),
                              **evaluate(fast, test, proposals=test_props))

    torch.manual_seed(0)
    faster = shapes_faster_rcnn(pretrained=True, **net)
    hist, secs = _timed(lambda: train_joint(faster, train, minutes=args.minutes, progress=False, **opt))
    rows["Faster R-CNN"] = dict(train_images=len(train), train_seconds=secs, steps=len(hist),
                                **evaluate(faster, test))

    print(f"selective search ({SS}): {ss_s:.0f} s for {len(train) + len(test)} images (cached after)")
    print(f"{'detector':<14} {'train imgs':>10} {'train s':>8} {'steps':>6} {'mAP@0.5':>8}  AP per class")
    for name, r in rows.items():
        ap = " / ".join(f"{v:.2f}" for v in r["ap"].values())
        print(f"{name:<14} {r['train_images']:>10} {r['train_seconds']:>8.0f} "
              f"{r.get('steps', '-'):>6} {r['mAP']:>8.3f}  {ap}")
    print("papers (VOC 2007 test, VGG-16): R-CNN 66.0, Fast R-CNN 66.9, Faster R-CNN 69.9")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
