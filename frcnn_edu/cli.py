"""Command line: `python -m frcnn_edu {train, evaluate, detect, pretrain, export, grade}`.

    python -m frcnn_edu train --method joint --out runs/joint --minutes 5
    python -m frcnn_edu train --method joint --out runs/paper --paper   # the paper's settings
    python -m frcnn_edu train --method joint-exact --out runs/exact     # non-approximate joint
    python -m frcnn_edu train --masks --out runs/mask                  # Mask R-CNN
    python -m frcnn_edu evaluate runs/joint
    python -m frcnn_edu detect runs/joint image.png --save detections.png
    python -m frcnn_edu pretrain --out frcnn_edu/assets/tiny_vgg_shapes.pt
    python -m frcnn_edu pretrain --stride 8 --out frcnn_edu/assets/tiny_vgg_shapes_s8.pt
    python -m frcnn_edu export --to voc:data/shapes_voc          # the shapes as a VOC folder
    python -m frcnn_edu train --data voc:data/VOC2007 --backbone vgg16 --out runs/voc
    python -m frcnn_edu grade submissions/ --out grades.csv        # see frcnn_edu/checks/grade.py

`--data` names the data (shapes, voc:ROOT[:SPLIT], coco:ANNOTATIONS.json:IMAGES_DIR or
pennfudan:ROOT; see frcnn_edu.data.spec): its folder is checked before training, and its class
names are kept in the training folder's classes.json (evaluate checks them, detect draws them).
`--backbone` and `--weights` pick the shared conv layers (frcnn_edu.models.build).

A training folder holds config.json (how to rebuild the model), the checkpoints of each stage
(a second `train` with the same --out resumes), model.pt (the final weights) and metrics.json
(mAP@0.5 on the held-out split, AP per class, training and inference images/s; with --masks
also COCO's mask AP at IoU 0.5, `mask_mAP`, and over 0.5:0.95, `mask_AP`, and the box's).

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
from .data.transforms import ColorJitter
from .data.spec import SYNTAX, DataError, held_out_spec, open_dataset, split_spec
from .inference import evaluate
from .models.build import BACKBONES, PAPER_FREEZE, WeightsError
# RECIPES: kept for the saved lessons; new code imports from frcnn_edu.models.recipes
from .models.recipes import (RECIPES, UsageError, build_model, build_run_model,  # noqa: F401
                             load_trained, run_classes)
from .training import distributed, save_atomic, train_four_step, train_joint
from .training.checkpoint import write_text_atomic


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


def _bounded(low, high, what, closed=True):
    """argparse type: a float in [low, high] (or [low, high) when not `closed`)."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}")
        if not (low <= value <= high if closed else low <= value < high):
            raise argparse.ArgumentTypeError(
                f"{what} must lie in [{low}, {high}{']' if closed else ')'}, got {text}")
        return value
    return parse


_probability = _bounded(0.0, 1.0, "a score threshold")
_jitter = _bounded(0.0, 1.0, "a jitter strength (factors in [1 - S, 1 + S])", closed=False)
_hue = _bounded(0.0, 0.5, "a hue shift (a share of the colour circle)")


# config.json keys -> the flags that set them (for the messages of a refused resume)
FLAGS = {"method": "--method", "minutes": "--minutes", "seed": "--seed", "lr": "--lr",
         "optimizer": "--optimizer", "train_images": "--train-images", "model.stride": "--stride",
         "model.pooler": "--pooler", "model.image_scale": "--image-scale",
         "model.num_classes": "the dataset's number of classes", "data": "--data",
         "eval_data": "--eval-data", "steps": "--steps", "model.backbone": "--backbone",
         "weights": "--weights", "freeze": "--freeze", "masks": "--masks",
         "processes": "the number of processes (torchrun --nproc_per_node)",
         "color_jitter": "--color-jitter", "hue": "--hue", "batch_size": "--batch-size"}
# what a config.json written before these settings existed trained with
LEGACY = {"data": "shapes", "model.backbone": "tinyvgg", "weights": "imagenet", "freeze": 0,
          "masks": False, "processes": 1, "color_jitter": 0.0, "hue": 0.0,
          "batch_size": 2}


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
        old = {**LEGACY, **_flat(json.loads(path.read_text()))}
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


# --image-scale and --stride when not given: the recipe's, or what the data and backbone need
FROM_RECIPE = object()
PAPER_IMAGE_SCALE = 600  # Fast R-CNN 5.2, Faster R-CNN 4: shorter side 600, longer <= 1000


def _resolve_settings(args):
    """Fill the flags left to the recipe (--paper or the fast one), the data and the backbone."""
    shapes = args.data == "shapes"
    recipe = RECIPES["paper" if args.paper else "fast"]
    if args.paper:
        args.pooler, args.optimizer = recipe["model"]["pooler"], recipe["optimizer"]
    if args.paper or args.image_scale is FROM_RECIPE:  # real photos: the paper's 600 either way
        args.image_scale = recipe["model"]["image_scale"] if shapes else PAPER_IMAGE_SCALE
    if args.paper or args.stride is FROM_RECIPE:       # torchvision's backbones: stride 16 only
        args.stride = recipe["model"]["stride"] if args.backbone == "tinyvgg" else 16
    if args.backbone != "tinyvgg" and args.stride != 16:
        raise UsageError(f"--stride {args.stride}: {args.backbone} is built at stride 16 (its "
                         "conv4 / layer3); only tinyvgg offers stride 8")
    if args.lr is None:
        args.lr = next(r["lr"] for r in RECIPES.values() if r["optimizer"] == args.optimizer)
    if args.masks and args.method != "joint":
        raise UsageError("--masks trains Mask R-CNN jointly: use it with --method joint")
    if args.method == "joint-exact" and args.pooler != "roi_align":
        raise UsageError("--method joint-exact back-propagates the detector loss into the proposal "
                         "coordinates, which needs --pooler roi_align (RoI max pooling has no "
                         "gradient with respect to the box)" + (
                             "; --paper sets --pooler roi_pool: drop --paper and give its other "
                             "settings alone (--stride 16 --image-scale none --optimizer sgd)"
                             if args.paper else ""))
    if args.steps is not None and args.minutes is not None:
        raise UsageError("--steps and --minutes are two budgets: give one")
    if args.steps is None and args.minutes is None:
        args.minutes = 5.0
    if not shapes and args.train_images is not None:
        raise UsageError(f"--train-images sets the shapes' length; --data {args.data} trains on "
                         "all the images of its split")
    if shapes and args.train_images is None:
        args.train_images = 1000


def _train_config(args, data):
    freeze = args.freeze if args.freeze is not None else PAPER_FREEZE[args.backbone]
    return {"method": args.method, "minutes": args.minutes, "steps": args.steps, "seed": args.seed,
            "lr": args.lr, "optimizer": args.optimizer, "train_images": args.train_images,
            "data": args.data, "eval_data": args.eval_data, "weights": args.weights,
            "freeze": freeze, "masks": args.masks, "processes": distributed.world()[1],
            "color_jitter": args.color_jitter, "hue": args.hue, "batch_size": args.batch_size,
            "model": {"num_classes": data.num_classes, "pooler": args.pooler,
                      "stride": args.stride, "image_scale": args.image_scale,
                      "backbone": args.backbone}}


def _dataset(spec, split, num_images=None, masks=False, transforms=None):
    """`open_dataset`, with the shapes made here (so a test can swap in smaller ones)."""
    if spec == "shapes":
        extra = {"masks": True} if masks else {}  # box-only: the plain call (tests swap it)
        if transforms is not None:
            extra["transforms"] = transforms
        return ShapesDataset(split, num_images=num_images, **extra)
    if masks:
        raise UsageError(f"--masks trains on the shapes' instance masks; --data {spec} is read "
                         "with boxes only: drop --masks, or train Mask R-CNN on --data shapes")
    return open_dataset(spec, split, num_images, transforms=transforms)


def _training_transforms(args):
    """`--color-jitter` / `--hue` as a `ColorJitter` of the training images (lesson 08: a
    detector trained on one photograph's light learns it as part of the object), or None.
    Its draws come from a generator seeded with --seed (and the process's rank); a resumed run
    starts them afresh, so it sees other colours than an uninterrupted one would."""
    if not (args.color_jitter or args.hue):
        return None
    generator = torch.Generator().manual_seed(args.seed * 1000 + distributed.world()[0])
    return ColorJitter(args.color_jitter, args.color_jitter, args.color_jitter, args.hue,
                       generator=generator)


def _held_out(args, data):
    """The data `train` scores the model on at the end (checked now, before training), or None."""
    spec = args.eval_data or held_out_spec(args.data)
    if spec is None:
        return None, None
    held = _dataset(spec, "test", masks=args.masks)
    if tuple(held.classes) != tuple(data.classes):
        raise DataError(f"--eval-data {spec} has the classes {list(held.classes[1:])}, the "
                        f"training data {list(data.classes[1:])}: evaluate on data of the same "
                        "classes")
    return spec, held


def cmd_train(args):
    out = Path(args.out)
    device = distributed.init_from_env(_device(args.device))  # under torchrun: join the others
    rank, world = distributed.world()
    _resolve_settings(args)
    data = _dataset(args.data, "train", args.train_images, masks=args.masks,  # bad folder: here
                    transforms=_training_transforms(args))
    if len(data) < args.batch_size * world:  # the loop refuses it too, but after config.json
        raise UsageError(f"--batch-size {args.batch_size} takes {args.batch_size * world} images "
                         f"a step{f' ({world} processes)' if world > 1 else ''}, but --data "
                         f"{args.data} holds {len(data)} training images: lower --batch-size"
                         f"{' or raise --train-images' if args.data == 'shapes' else ''}")
    eval_spec, held = _held_out(args, data)
    config = _train_config(args, data)
    _check_resume(out, config)  # before anything in the folder is written

    joint = "exact" if args.method == "joint-exact" else "approximate"

    def make_model():  # the weights are found (or refused) at the first call, before training
        return build_run_model(config["model"], args.weights, config["freeze"], masks=args.masks,
                               joint=joint)
    budget = {"minutes": args.minutes} if args.steps is None else {"steps": args.steps}
    common = dict(out=out, device=device, seed=args.seed, lr=args.lr, optimizer=args.optimizer,
                  batch_size=args.batch_size)
    if args.method == "four-step":
        make_model()  # the same check; the seed is set after it, so the run is unchanged
    torch.manual_seed(args.seed)
    model = make_model() if args.method != "four-step" else None
    if rank == 0:  # process 0 writes; the others train beside it (training/distributed.py)
        out.mkdir(parents=True, exist_ok=True)
        write_text_atomic(json.dumps(config, indent=2) + "\n", out / "config.json")
        write_text_atomic(json.dumps(list(data.classes)) + "\n", out / "classes.json")
    if args.method in ("joint", "joint-exact"):
        histories = [train_joint(model, data, **budget, **common)]
    else:
        model, hist = train_four_step(make_model, data, **budget, **common)
        histories = list(hist.values())
    if rank > 0:
        distributed.close()  # waits for process 0's evaluation
        return
    steps, seconds = training_steps_and_seconds(histories)
    save_atomic(model.state_dict(), out / "model.pt")
    metrics = (evaluate(model, held, device=device) if held is not None else
               {"mAP": None, "note": f"no held-out data for --data {args.data}: pass --eval-data, "
                                     f"or run `python -m frcnn_edu evaluate {out} --data ...`"})
    metrics.update(method=args.method, train_seconds=round(seconds, 1), train_steps=steps,
                   train_images_per_second=(round(args.batch_size * world * steps / seconds, 2)
                                            if seconds > 0 else None),
                   device=device, threads=torch.get_num_threads(),
                   omp_wait_policy=os.environ.get("OMP_WAIT_POLICY"), evaluated_on=eval_spec,
                   settings=config)
    write_text_atomic(json.dumps(metrics, indent=2) + "\n", out / "metrics.json")
    print(json.dumps(metrics, indent=2))
    distributed.close()


def training_steps_and_seconds(histories):
    """Steps and seconds of training over all runs of a folder (a resume included).

    Each history entry's "time" counts the seconds of training so far, across resumed runs (the
    checkpoint carries the elapsed time), so the last entry of each stage's history holds its
    seconds; steps and seconds then cover the same runs. (Timing only the last call would divide
    all the steps by the seconds of the last run and inflate the rate after every resume.)"""
    steps = sum(len(h) for h in histories)
    seconds = sum(h[-1]["time"] for h in histories if h)
    return steps, seconds


def _evaluation_data(folder, spec, split, masks=False):
    """--data, or the run's own data at `split` (refused for COCO: its file is the training set)."""
    if spec is None:
        run = json.loads((Path(folder) / "config.json").read_text()).get("data", "shapes")
        spec = split_spec(run, split)
        if spec is None:
            raise UsageError(f"{folder} was trained on --data {run}, which holds no held-out "
                             "split: name the data to evaluate on with --data coco:JSON:IMAGES")
    data = _dataset(spec, split, masks=masks)
    if tuple(data.classes) != run_classes(folder):
        raise DataError(f"--data {spec} has the classes {list(data.classes[1:])}; the model in "
                        f"{folder} was trained on {list(run_classes(folder)[1:])}")
    return data


def cmd_evaluate(args):
    device = _device(args.device)
    model = load_trained(args.dir, device)
    masks = hasattr(model, "mask_head")  # Mask R-CNN: box and mask AP
    metrics = evaluate(model, _evaluation_data(args.dir, args.data, args.split, masks),
                       device=device)
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
    show_detections(image.cpu(), pred, run_classes(args.dir), score_threshold=args.threshold, ax=ax)
    fig.savefig(args.save, bbox_inches="tight", dpi=120)
    kept = int((pred["scores"] >= args.threshold).sum())
    print(f"{kept} detections with score >= {args.threshold} drawn into {args.save}")


def cmd_pretrain(args):
    from .training.pretrain import pretrain
    _, metrics = pretrain(out=args.out, seed=args.seed, stride=args.stride, epochs=args.epochs)
    print(json.dumps(metrics, indent=2))


def cmd_export(args):
    from .data.export import export_shapes
    kind, _, root = args.to.partition(":")
    if kind not in ("voc", "coco") or not root:
        raise UsageError(f"--to {args.to}: expected voc:DIR or coco:DIR")
    splits = {"train": args.train_images, "test": args.test_images}
    for split, spec in export_shapes(kind, root, splits).items():
        print(f"{split}: --data {spec}")


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
    t.add_argument("--method", choices=["joint", "joint-exact", "four-step"], default="joint",
                   help="joint: approximate joint training (default; the detector treats the "
                        "proposals as constants); joint-exact: non-approximate joint training "
                        "(the detector loss also trains the RPN's box regression through "
                        "RoIAlign's box gradient; needs --pooler roi_align); four-step: the "
                        "paper's 4-step alternating training (Faster R-CNN sec. 3.2)")
    t.add_argument("--out", required=True, help="folder for checkpoints, model.pt, metrics.json")
    t.add_argument("--data", default="shapes", help=f"{SYNTAX} (default shapes)")
    t.add_argument("--eval-data", default=None,
                   help="data to score the model on at the end (default: the held-out split of "
                        "--data: shapes' and Penn-Fudan's test split, a VOC folder's test.txt)")
    t.add_argument("--minutes", type=_positive(float), default=None,
                   help="training time budget (default 5)")
    t.add_argument("--steps", type=_positive(int), default=None,
                   help="a budget in steps instead of minutes (same steps, same run)")
    t.add_argument("--train-images", type=_positive(int), default=None,
                   help="length of the shapes training set (default 1000)")
    t.add_argument("--backbone", choices=BACKBONES, default="tinyvgg",
                   help="tinyvgg (ours, default), vgg16 (the paper's), resnet18 or resnet50")
    t.add_argument("--weights", default="imagenet",
                   help="imagenet (default: torchvision's ImageNet weights from the torch cache, "
                        "downloaded if missing; for tinyvgg our shapes pre-training), none "
                        "(from scratch) or the PATH of a state dict")
    t.add_argument("--freeze", type=int, default=None,
                   help="keep the first N blocks of the backbone fixed (default: the paper's, "
                        "2 for vgg16 (conv1-conv2) and resnet (conv1, layer1), 0 for tinyvgg)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--batch-size", type=_positive(int), default=2, metavar="N",
                   help="images per training step, per process (default 2, Fast R-CNN's N = 2); "
                        "steps of 4 learn as much per image and cost 5-10%% less per image on a "
                        "CPU, so --steps N of them see twice the images (benchmarks/RESULTS.md)")
    t.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    t.add_argument("--paper", action="store_true",
                   help="the paper's settings: --stride 16 --pooler roi_pool --optimizer sgd")
    fast = RECIPES["fast"]
    t.add_argument("--stride", type=int, choices=[8, 16], default=FROM_RECIPE,
                   help="16: VGG's conv5 (the paper); 8: conv5 dilated (default, finds small shapes)")
    t.add_argument("--pooler", choices=["roi_pool", "roi_align"], default=fast["model"]["pooler"],
                   help="RoI max pooling (Fast R-CNN) or RoIAlign (Mask R-CNN, default), "
                        "which localises small objects better")
    t.add_argument("--image-scale", type=lambda v: None if v == "none" else int(v),
                   default=FROM_RECIPE,
                   help="resize images so their shorter side has this many pixels, the longer at "
                        "most 1000 (the paper's s; default 240 for the shapes: the 160-pixel "
                        "images 1.5x, small shapes gain feature cells; 600 for other data); "
                        "none keeps them as they are")
    t.add_argument("--optimizer", choices=["sgd", "adam"], default=fast["optimizer"],
                   help="SGD with momentum 0.9 (the papers) or Adam (default, fewer steps)")
    t.add_argument("--lr", type=_positive(float), default=None,
                   help="learning rate (default 0.0005 for Adam, 0.01 for SGD)")
    t.add_argument("--color-jitter", type=_jitter, default=0.0, metavar="S",
                   help="scale each training image's brightness, contrast and saturation by a "
                        "random factor in [1 - S, 1 + S] (lesson 08 uses 0.3; default 0: off)")
    t.add_argument("--hue", type=_hue, default=0.0, metavar="H",
                   help="shift each training image's hue by up to H of the colour circle "
                        "(lesson 08 uses 0.05; default 0: off)")
    t.add_argument("--masks", action="store_true",
                   help="train Mask R-CNN (a mask branch beside the box head) on the shapes' "
                        "instance masks; metrics.json adds mask AP")
    t.set_defaults(func=cmd_train)
    e = sub.add_parser("evaluate", help="mAP@0.5 (and mask AP) of a trained model on the held-out split")
    e.add_argument("dir")
    e.add_argument("--data", default=None,
                   help=f"{SYNTAX} (default: the run's own data, at --split)")
    e.add_argument("--split", default="test", choices=["val", "test"])
    e.add_argument("--device", default="auto")
    e.set_defaults(func=cmd_evaluate)
    d = sub.add_parser("detect", help="draw a trained model's detections (and masks) on an image")
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
    x = sub.add_parser("export", help="write the shapes data as a VOC or COCO folder (PNG, exact "
                                      "boxes), to try --data voc: and coco: on known data")
    x.add_argument("--to", required=True, help="voc:DIR or coco:DIR")
    x.add_argument("--train-images", type=_positive(int), default=1000)
    x.add_argument("--test-images", type=_positive(int), default=200)
    x.set_defaults(func=cmd_export)
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
        return 2 if isinstance(e, (UsageError, DataError, WeightsError)) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
