"""The training recipes and the loading of a trained run: what `train` builds, what
`evaluate` and `detect` load back.

    RECIPES          the two settings `train` offers (model kwargs + optimizer): "fast" and "paper"
    build_run_model  a run's model from its config (TinyVGG on the shapes, or a torchvision backbone)
    load_trained     the model a `train` folder saved, in eval mode; run_classes its class names

A bad folder or config raises `UsageError` (the command line prints it in one line and exits 2).

Shape key: none (models and settings, no tensors).
"""
import json
from pathlib import Path

from ..data import ShapesDataset
from ..training.checkpoint import load_weights
from . import shapes_faster_rcnn, shapes_mask_rcnn
from .build import build_faster_rcnn, freeze_blocks


class UsageError(Exception):
    """A bad flag or folder: on the command line one line on stderr, exit status 2 (argparse's
    own). Defined here, where the run folders are read; `frcnn_edu.cli` raises it too."""


# The two settings `train` offers (model kwargs + optimizer); benchmarks/ladder.py and
# paper_tables.py use them too.
RECIPES = {
    "fast": {"model": {"stride": 8, "pooler": "roi_align", "image_scale": 240},
             "optimizer": "adam", "lr": 0.0005},
    "paper": {"model": {"stride": 16, "pooler": "roi_pool", "image_scale": None},
              "optimizer": "sgd", "lr": 0.01},
}


def build_run_model(model_config, weights, freeze, masks=False, **extra):
    """The model of a `train` run from its config's "model" settings, its --weights and
    --freeze: `build_faster_rcnn` (Mask R-CNN with `masks`); the shapes model made here (so a
    test can swap in a smaller one: patch this module's `shapes_faster_rcnn`)."""
    kwargs = dict(model_config, **extra)
    backbone = kwargs.pop("backbone", "tinyvgg")  # a config.json from before --backbone
    if masks and not (backbone == "tinyvgg" and weights in ("imagenet", "none")):
        raise UsageError(f"--masks builds Mask R-CNN on tinyvgg with its shapes weights; got "
                         f"--backbone {backbone} --weights {weights}: drop --masks or those")
    if backbone == "tinyvgg" and weights in ("imagenet", "none"):
        build = shapes_mask_rcnn if masks else shapes_faster_rcnn
        model = build(pretrained=weights == "imagenet", **kwargs)
        freeze_blocks(model.backbone, freeze)
        return model
    return build_faster_rcnn(backbone, weights, freeze, **kwargs)


def build_model(config, pretrained):
    """Faster R-CNN, or Mask R-CNN for a config with "masks": true, at the config's settings."""
    build = shapes_mask_rcnn if config.get("masks") else shapes_faster_rcnn
    return build(pretrained=pretrained, **config["model"])


def load_trained(folder, device="cpu"):
    """The trained Faster R-CNN (or Mask R-CNN) saved by `train` in `folder`, in eval mode."""
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
    model = build_run_model(config["model"], "none", 0, masks=config.get("masks", False))
    model.load_state_dict(load_weights(folder / "model.pt", map_location=device))
    return model.to(device).eval()


def run_classes(folder):
    """The class names a `train` folder was trained on (background first)."""
    path = Path(folder) / "classes.json"
    return tuple(json.loads(path.read_text())) if path.exists() else ShapesDataset.classes
