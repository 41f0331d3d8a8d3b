"""Command line: `python -m frcnn_edu {train, evaluate, detect, pretrain}`.

    python -m frcnn_edu train --method joint --out runs/joint --minutes 5
    python -m frcnn_edu train --method joint --out runs/paper --paper   # the paper's settings
    python -m frcnn_edu evaluate runs/joint
    python -m frcnn_edu detect runs/joint image.png --save detections.png
    python -m frcnn_edu pretrain --out frcnn_edu/assets/tiny_vgg_shapes.pt
    python -m frcnn_edu pretrain --stride 8 --out frcnn_edu/assets/tiny_vgg_shapes_s8.pt

A training folder holds config.json (how to rebuild the model), the checkpoints of each stage
(a second `train` with the same --out resumes), model.pt (the final weights) and metrics.json
(mAP@0.5 on the held-out split, AP per class, training and inference images/s).

The defaults are the fast recipe measured in benchmarks/RESULTS.md: TinyVGG at stride 8 (dilated
conv5), RoIAlign, images upsampled to 240 pixels and Adam. `--paper` gives the paper's stride 16,
RoI max pooling, the images as they are and SGD
(lr 0.01); each setting can also be chosen alone.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

from .data import ShapesDataset
from .inference import evaluate
from .models import shapes_faster_rcnn
from .training import load_weights, save_atomic, train_four_step, train_joint


def _device(name):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda was asked for, but torch sees no CUDA device; use --device cpu")
    return name


# The two settings `train` offers (model kwargs + optimizer); benchmarks/ladder.py and paper_tables.py use them too.
RECIPES = {
    "fast": {"model": {"stride": 8, "pooler": "roi_align", "image_scale": 240},
             "optimizer": "adam", "lr": 0.0005},
    "paper": {"model": {"stride": 16, "pooler": "roi_pool", "image_scale": None},
              "optimizer": "sgd", "lr": 0.01},
}


def cmd_train(args):
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    if args.paper:
        paper = RECIPES["paper"]
        args.stride, args.pooler = paper["model"]["stride"], paper["model"]["pooler"]
        args.image_scale = paper["model"]["image_scale"]
        args.optimizer = paper["optimizer"]
    if args.lr is None:
        args.lr = next(r["lr"] for r in RECIPES.values() if r["optimizer"] == args.optimizer)
    config = {"method": args.method, "minutes": args.minutes, "seed": args.seed, "lr": args.lr,
              "optimizer": args.optimizer, "train_images": args.train_images,
              "model": {"num_classes": ShapesDataset.num_classes, "pooler": args.pooler,
                        "stride": args.stride, "image_scale": args.image_scale}}
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    data = ShapesDataset("train", num_images=args.train_images)
    device = _device(args.device)
    t0 = time.perf_counter()
    if args.method == "joint":
        model = shapes_faster_rcnn(pretrained=True, **config["model"])
        history = train_joint(model, data, minutes=args.minutes, out=out, device=device,
                              seed=args.seed, lr=args.lr, optimizer=args.optimizer)
        steps = len(history)
    else:
        model, hist = train_four_step(lambda: shapes_faster_rcnn(pretrained=True, **config["model"]),
                                      data, minutes=args.minutes, out=out, device=device,
                                      seed=args.seed, lr=args.lr, optimizer=args.optimizer)
        steps = sum(len(h) for h in hist.values())
    seconds = time.perf_counter() - t0
    save_atomic(model.state_dict(), out / "model.pt")
    metrics = evaluate(model, ShapesDataset("test"), device=device)
    metrics.update(method=args.method, train_seconds=round(seconds, 1), train_steps=steps,
                   train_images_per_second=round(2 * steps / seconds, 2), device=device,
                   threads=torch.get_num_threads(), settings=config)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    print(json.dumps(metrics, indent=2))


def load_trained(folder, device="cpu"):
    """The trained Faster R-CNN saved by `train` in `folder`, in eval mode."""
    folder = Path(folder)
    if not (folder / "model.pt").exists():
        raise SystemExit(f"{folder}/model.pt not found: run `python -m frcnn_edu train --out {folder}`")
    config = json.loads((folder / "config.json").read_text())
    model = shapes_faster_rcnn(pretrained=False, **config["model"])
    model.load_state_dict(load_weights(folder / "model.pt", map_location=device))
    return model.to(device).eval()


def cmd_evaluate(args):
    device = _device(args.device)
    metrics = evaluate(load_trained(args.dir, device), ShapesDataset(args.split), device=device)
    print(json.dumps(metrics, indent=2))


def cmd_detect(args):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from PIL import Image

    from .viz import show_detections

    device = _device(args.device)
    model = load_trained(args.dir, device)
    image = torch.from_numpy(np.asarray(Image.open(args.image).convert("RGB")).copy())
    image = image.permute(2, 0, 1).float().div(255).to(device)
    with torch.no_grad():
        pred = {k: v.cpu() for k, v in model([image])[0].items()}
    fig, ax = plt.subplots(figsize=(6, 6))
    show_detections(image.cpu(), pred, ShapesDataset.classes, score_threshold=args.threshold, ax=ax)
    fig.savefig(args.save, bbox_inches="tight", dpi=120)
    kept = int((pred["scores"] >= args.threshold).sum())
    print(f"{kept} detections with score >= {args.threshold} drawn into {args.save}")


def cmd_pretrain(args):
    from .pretrain import pretrain
    _, metrics = pretrain(out=args.out, seed=args.seed, stride=args.stride, epochs=args.epochs)
    print(json.dumps(metrics, indent=2))


def build_parser():
    p = argparse.ArgumentParser(prog="python -m frcnn_edu", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train Faster R-CNN on the shapes data")
    t.add_argument("--method", choices=["joint", "four-step"], default="joint")
    t.add_argument("--out", required=True, help="folder for checkpoints, model.pt, metrics.json")
    t.add_argument("--minutes", type=float, default=5.0, help="training time budget")
    t.add_argument("--train-images", type=int, default=1000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    t.add_argument("--paper", action="store_true",
                   help="the paper's settings: --stride 16 --pooler roi_pool --optimizer sgd")
    fast = RECIPES["fast"]
    t.add_argument("--stride", type=int, choices=[8, 16], default=fast["model"]["stride"],
                   help="16: VGG's conv5 (the paper); 8: conv5 dilated (default, finds small shapes)")
    t.add_argument("--pooler", choices=["roi_pool", "roi_align"], default=fast["model"]["pooler"],
                   help="RoI max pooling (Fast R-CNN) or RoIAlign (Mask R-CNN, default), "
                        "which localises small objects better")
    t.add_argument("--image-scale", type=lambda v: None if v == "none" else int(v),
                   default=fast["model"]["image_scale"],
                   help="resize images so their shorter side has this many pixels (the paper's s; "
                        "default 240: the 160-pixel shapes 1.5x, small shapes gain feature cells); "
                        "none keeps them as they are")
    t.add_argument("--optimizer", choices=["sgd", "adam"], default=fast["optimizer"],
                   help="SGD with momentum 0.9 (the papers) or Adam (default, fewer steps)")
    t.add_argument("--lr", type=float, default=None,
                   help="learning rate (default 0.0005 for Adam, 0.01 for SGD)")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("evaluate", help="mAP@0.5 of a trained model on the held-out split")
    e.add_argument("dir")
    e.add_argument("--split", default="test", choices=["val", "test"])
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_evaluate)
    d = sub.add_parser("detect", help="draw a trained model's detections on an image")
    d.add_argument("dir")
    d.add_argument("image")
    d.add_argument("--save", required=True)
    d.add_argument("--threshold", type=float, default=0.5)
    d.add_argument("--device", default="auto")
    d.set_defaults(func=cmd_detect)
    r = sub.add_parser("pretrain", help="pre-train TinyVGG to classify shapes (our 'ImageNet')")
    r.add_argument("--out", required=True)
    r.add_argument("--seed", type=int, default=2014)
    r.add_argument("--stride", type=int, choices=[8, 16], default=16,
                   help="16: the paper's network (tiny_vgg_shapes.pt); 8: dilated conv5 "
                        "(tiny_vgg_shapes_s8.pt, the train command's default)")
    r.add_argument("--epochs", type=int, default=8, help="passes over the 3,000 images")
    r.set_defaults(func=cmd_pretrain)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
