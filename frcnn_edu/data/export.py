"""Writing a dataset as a VOC or a COCO folder, so that `--data voc:` and `--data coco:` can be
tried (and tested) on data whose right answer is known: the shapes.

Both writers keep every pixel and every box: images are PNG (lossless; the 8-bit shapes images
come back bit for bit) and VOC boxes are written as exact decimals instead of VOC's whole pixels,
so a detector trained on the written folder sees what it would have seen on the dataset itself.

    export_voc(ShapesDataset("train"), "data/shapes_voc", "train")   # + classes.txt
    export_coco(ShapesDataset("test"), "data/shapes_coco", "test")   # annotations/test.json, test/

Shape key: none (see `voc` and `coco` for the formats).
"""
from __future__ import annotations

from pathlib import Path

from .coco import write_coco
from .shapes import ShapesDataset
from .voc import write_voc

__all__ = ["export_voc", "export_coco", "export_shapes"]


def _names(dataset, class_names):
    names = class_names if class_names is not None else getattr(dataset, "classes", None)
    if names is None:
        raise ValueError("the dataset has no `classes`: pass class_names (background first)")
    return tuple(names)


def export_voc(dataset, root, split="train", class_names=None) -> list:
    """Write `dataset` as split `split` of a VOC folder at `root` (PNG images, exact boxes) and
    its class names to ``root/classes.txt``; splits can share one folder. Returns the ids."""
    names, root = _names(dataset, class_names), Path(root)
    listing = root / "classes.txt"
    text = "".join(f"{n}\n" for n in names[1:])
    if listing.is_file() and listing.read_text() != text:
        raise ValueError(f"{listing} lists other classes than {names[1:]}: export into a new "
                         "folder")
    ids = write_voc(dataset, root, names, split=split, image_format="png", round_coords=False)
    listing.write_text(text)
    return ids


def export_coco(dataset, root, split="train", class_names=None) -> tuple:
    """Write `dataset` as ``root/annotations/<split>.json`` with its PNG images in
    ``root/<split>/``. Returns (json path, image folder): ``--data coco:JSON:IMAGES``."""
    root = Path(root)
    json_path, image_dir = root / "annotations" / f"{split}.json", root / split
    write_coco(dataset, json_path, _names(dataset, class_names), image_dir=image_dir,
               image_format="png")
    return json_path, image_dir


def export_shapes(kind, root, splits) -> dict:
    """The shapes splits ``{"train": 1000, "test": 200}`` (name: images) written as a "voc" or
    "coco" folder at `root`; returns each split's ``--data`` string."""
    specs = {}
    for split, num_images in splits.items():
        data = ShapesDataset(split, num_images=num_images)
        if kind == "voc":
            export_voc(data, root, split)
            specs[split] = f"voc:{root}:{split}"
        else:
            json_path, images = export_coco(data, root, split)
            specs[split] = f"coco:{json_path}:{images}"
    return specs
