"""Command line: `python -m frcnn_edu {train, evaluate, detect, pretrain, grade}`.

    python -m frcnn_edu train --method joint --out runs/joint --minutes 5
    python -m frcnn_edu train --method joint --out runs/paper --paper   # the paper's settings
    python -m frcnn_edu evaluate runs/joint
    python -m frcnn_edu detect runs/joint image.png --save detections.png
    python -m frcnn_edu pretrain --out frcnn_edu/assets/tiny_vgg_shapes.pt
    python -m frcnn_edu pretrain --stride 8 --out frcnn_edu/assets/tiny_vgg_shapes_s8.pt
    python -m frcnn_edu grade submissions/ --out grades.csv        # see frcnn_edu/checks/grade.py

A training folder holds config.json (how to rebuild the model), the checkpoints of each stage
(a second `train` with the same --out resumes), model.pt (the final weights) and metrics.json
(mAP@0.5 on the held-out split, AP per class, training and inference images/s).

A second `train` with the same --out must ask for the same run: its flags are compared with the
folder's config.json before anything is written, and any difference (a model, optimizer or
budget setting) is refused with the differing flags (old -> new). A finished run is not
extended by a longer --minutes: it says it is finished (train into a new --out instead).
Errors print one line, `python -m frcnn_edu <command>: error: ...`, and exit with 2 for a bad
flag or folder and 1 for a failure while running (bad data, a diverging loss); set
FRCNN_EDU_TRACEBACK=1 to see the traceback instead.

The defaults are the fast recipe measured in benchmarks/RESULTS.md: TinyVGG at stride 8 (dilated
conv5), RoIAlign, images upsampled to 240 pixels and Adam. `--paper` gives the paper's stride 16,
RoI max pooling, the images as they are and SGD
(lr 0.01); each setting can also be chosen alone.
"""
import argparse
import json
import math
import os
import sys
from pathlib import Path

import torch

from .data import ShapesDataset
from .inference import evaluate
from .models import shapes_faster_rcnn
from .training import load_weights, save_atomic, train_four_step, train_joint
from .training.checkpoint import write_text_atomic


class UsageError(Exception):
    """A bad flag or folder: one line on stderr, exit status 2 (argparse's own)."""


def _device(name):
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {name}: unknown device; use cpu, cuda, cuda:N or auto")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name} was asked for, but torch sees no CUDA device; "
                             "use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: torch sees {torch.cuda.device_count()} CUDA "
                             "device(s), numbered from 0")
    return name


def _positive(kind):
    """argparse type: a positive int or finite float, with the flag's error on anything else."""
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a positive {kind.__name__}, got {text!r}")
        if not value > 0 or not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be positive, got {text}")
        return value
    return parse


def _probability(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a score threshold must lie in [0, 1], got {text}")
    return value


# config.json keys -> the flags that set them (for the messages of a refused resume)
FLAGS = {"method": "--method", "minutes": "--minutes", "seed": "--seed", "lr": "--lr",
         "optimizer": "--optimizer", "train_images": "--train-images", "model.stride": "--stride",
         "model.pooler": "--pooler", "model.image_scale": "--image-scale",
         "model.num_classes": "the dataset's number of classes"}


def _flat(config, prefix=""):
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _check_resume(out, config):
    """Refuse to reuse `out` for another run; reads only (nothing in `out` is written)."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; --out names a folder (it is created if missing)")
    path = out / "config.json"
    if not path.exists():
        return
    try:
        old = _flat(json.loads(path.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError) as e:
        raise UsageError(f"{path} is not a config.json written by `train` ({e}); "
                         "train into a new --out folder") from None
    new = _flat(config)
    diff = [f"{FLAGS.get(k, k)} {old.get(k)} -> {new.get(k)}"
            for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if not diff:
        return
    state = ("holds a finished run, which is not extended" if (out / "metrics.json").exists()
             else "holds an unfinished run")
    raise UsageError(f"--out {out} {state}, and its settings differ: {'; '.join(diff)}. "
                     f"Train into a new --out folder, or repeat the run's own flags to resume it "
                     f"(nothing in {out} was changed)")


# The two settings `train` offers (model kwargs + optimizer); benchmarks/ladder.py and paper_tables.py use them too.
RECIPES = {
    "fast": {"model": {"stride": 8, "pooler": "roi_align", "image_scale": 240},
             "optimizer": "adam", "lr": 0.0005},
    "paper": {"model": {"stride": 16, "pooler": "roi_pool", "image_scale": None},
              "optimizer": "sgd", "lr": 0.01},
}


def cmd_train(args):
    out = Path(args.out)
    device = _device(args.device)
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
    _check_resume(out, config)  # before anything in the folder is written
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(json.dumps(config, indent=2) + "\n", out / "config.json")
    torch.manual_seed(args.seed)
    data = ShapesDataset("train", num_images=args.train_images)
    if args.method == "joint":
        model = shapes_faster_rcnn(pretrained=True, **config["model"])
        histories = [train_joint(model, data, minutes=args.minutes, out=out, device=device,
                                 seed=args.seed, lr=args.lr, optimizer=args.optimizer)]
    else:
        model, hist = train_four_step(lambda: shapes_faster_rcnn(pretrained=True, **config["model"]),
                                      data, minutes=args.minutes, out=out, device=device,
                                      seed=args.seed, lr=args.lr, optimizer=args.optimizer)
        histories = list(hist.values())
    steps, seconds = training_steps_and_seconds(histories)
    save_atomic(model.state_dict(), out / "model.pt")
    metrics = evaluate(model, ShapesDataset("test"), device=device)
    metrics.update(method=args.method, train_seconds=round(seconds, 1), train_steps=steps,
                   train_images_per_second=round(2 * steps / seconds, 2) if seconds > 0 else None,
                   device=device, threads=torch.get_num_threads(), settings=config)
    write_text_atomic(json.dumps(metrics, indent=2) + "\n", out / "metrics.json")
    print(json.dumps(metrics, indent=2))


def training_steps_and_seconds(histories):
    """Steps and seconds of training over all runs of a folder (a resume included).

    Each history entry's "time" counts the seconds of training so far, across resumed runs (the
    checkpoint carries the elapsed time), so the last entry of each stage's history holds its
    seconds; steps and seconds then cover the same runs. (Timing only the last call would divide
    all the steps by the seconds of the last run and inflate the rate after every resume.)"""
    steps = sum(len(h) for h in histories)
    seconds = sum(h[-1]["time"] for h in histories if h)
    return steps, seconds


def load_trained(folder, device="cpu"):
    """The trained Faster R-CNN saved by `train` in `folder`, in eval mode."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder: pass the --out folder of a `train` run")
    for name in ("config.json", "model.pt"):
        if not (folder / name).exists():
            raise UsageError(f"{folder / name} not found: {folder} is not a finished training "
                             f"folder; run `python -m frcnn_edu train --out {folder}`")
    try:
        config = json.loads((folder / "config.json").read_text())
        if not isinstance(config["model"], dict):
            raise TypeError("'model' must hold the model's settings")
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise UsageError(f"{folder / 'config.json'} is not a config.json written by `train` "
                         f"({type(e).__name__}: {e})") from None
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
    from .data.image_io import load_image
    from .viz import show_detections

    device = _device(args.device)
    model = load_trained(args.dir, device)
    image = load_image(args.image).to(device)  # 8- or 16-bit files, scaled to [0, 1]
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


def cmd_grade(args):
    from .checks.grade import GraderMissing, grade_folder
    try:
        rows = grade_folder(args.submissions, args.out, timeout=args.timeout, jobs=args.jobs,
                            workdir=args.workdir)
    except GraderMissing as e:
        raise UsageError(str(e)) from None
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    full = sum(1 for r in rows if r["total"] and all(
        v == "pass" for k, v in r.items() if "." in k))
    print(f"{len(rows)} submissions graded into {args.out} ({full} with every exercise passed)")


def build_parser():
    p = argparse.ArgumentParser(prog="python -m frcnn_edu", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train Faster R-CNN on the shapes data")
    t.add_argument("--method", choices=["joint", "four-step"], default="joint")
    t.add_argument("--out", required=True, help="folder for checkpoints, model.pt, metrics.json")
    t.add_argument("--minutes", type=_positive(float), default=5.0, help="training time budget")
    t.add_argument("--train-images", type=_positive(int), default=1000)
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
    t.add_argument("--lr", type=_positive(float), default=None,
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
    d.add_argument("--threshold", type=_probability, default=0.5,
                   help="draw detections with at least this score, in [0, 1]")
    d.add_argument("--device", default="auto")
    d.set_defaults(func=cmd_detect)
    r = sub.add_parser("pretrain", help="pre-train TinyVGG to classify shapes (our 'ImageNet')")
    r.add_argument("--out", required=True)
    r.add_argument("--seed", type=int, default=2014)
    r.add_argument("--stride", type=int, choices=[8, 16], default=16,
                   help="16: the paper's network (tiny_vgg_shapes.pt); 8: dilated conv5 "
                        "(tiny_vgg_shapes_s8.pt, the train command's default)")
    r.add_argument("--epochs", type=_positive(int), default=8, help="passes over the 3,000 images")
    r.set_defaults(func=cmd_pretrain)
    g = sub.add_parser("grade", help="run a class's submitted notebooks and tabulate the "
                                     "exercises (needs the [instructor] extra)")
    g.add_argument("submissions", help="folder of submitted .ipynb files (one per student)")
    g.add_argument("--out", required=True, help="CSV to write: one row per submission")
    g.add_argument("--timeout", type=_positive(int), default=600,
                   help="seconds each notebook may run in all (default 600)")
    g.add_argument("--jobs", type=_positive(int), default=2,
                   help="notebooks run at the same time (default 2)")
    g.add_argument("--workdir", default=None,
                   help="folder the notebooks run in (default: the submissions folder; lesson 06 "
                        "needs the repository's notebooks/ folder)")
    g.set_defaults(func=cmd_grade)
    return p


def main(argv=None):
    """Run a command; returns the exit status (0, or 1/2 after a one-line error on stderr)."""
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (UsageError, ValueError, TypeError, FloatingPointError, OSError, RuntimeError) as e:
        if os.environ.get("FRCNN_EDU_TRACEBACK"):
            raise
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"python -m frcnn_edu {args.command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
