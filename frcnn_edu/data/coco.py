"""COCO detection JSON: write targets as a COCO annotation file and read one back.

COCO is the extra training data of Faster R-CNN's best VOC result (sec. 4.2, "COCO+07+12").
A COCO ``bbox`` is ``[x, y, width, height]`` with (x, y) the top-left corner, in the same
continuous pixel coordinates as ours, so ``(x1, y1, x2, y2) = (x, y, x + w, y + h)``.
Category ids are 1-based and may have gaps (COCO uses 1..90 for 80 classes); reading maps them,
sorted, to contiguous labels 1..K. Writing uses ``category_id = label`` (our labels are 1..K).

Shape key:
    G  objects in one image
    K  foreground classes
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

import torch

from .image_io import load_image, save_image
from .shapes import CLASSES
from .targets import check_target

__all__ = ["write_coco", "read_coco", "CocoAnnotations", "COCODataset"]


def _coco_annotations(target, image_id: int, first_id: int) -> list:
    anns = []
    for j, (box, label) in enumerate(zip(target["boxes"].tolist(), target["labels"].tolist())):
        x1, y1, x2, y2 = box
        anns.append(dict(id=first_id + j, image_id=image_id, category_id=int(label),
                         bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1), iscrowd=0))
    return anns


def write_coco(items, json_path, class_names=CLASSES, image_dir=None, image_format="png") -> dict:
    """Write (image, target) items as a COCO detection JSON at `json_path`.

    Images get ids 1..N (COCO ids are positive) and, when `image_dir` is given, are saved there
    as ``<id>.<image_format>`` (``file_name`` is relative to `image_dir`). Returns the JSON dict.
    """
    images, annotations = [], []
    for i, (image, target) in enumerate(items):
        check_target(target, num_classes=len(class_names), name=f"target of item {i}")
        file_name = f"{i + 1:06d}.{image_format}"
        if image_dir is not None:
            h, w = save_image(image, Path(image_dir) / file_name)
        else:
            h, w = image.shape[-2:] if hasattr(image, "dim") else image.shape[:2]
        images.append(dict(id=i + 1, file_name=file_name, height=int(h), width=int(w)))
        annotations += _coco_annotations(target, i + 1, len(annotations) + 1)
    categories = [dict(id=k, name=name) for k, name in enumerate(class_names) if k > 0]
    data = dict(images=images, annotations=annotations, categories=categories)
    Path(json_path).parent.mkdir(parents=True, exist_ok=True)
    Path(json_path).write_text(json.dumps(data))
    return data


class CocoAnnotations(NamedTuple):
    """What `read_coco` returns: the image records, one target per image (same order), the
    class names with "__background__" first, and the COCO category id of each label 1..K."""

    images: list
    targets: list
    class_names: tuple
    category_ids: tuple


def _coco_box(ann, skip_degenerate: bool):
    x, y, w, h = (float(v) for v in ann["bbox"])
    if w > 0 and h > 0:
        return [x, y, x + w, y + h]
    if skip_degenerate:
        return None
    raise ValueError(f"annotation id {ann.get('id')}: bbox [x, y, w, h] = {ann['bbox']} has "
                     "w <= 0 or h <= 0; pass skip_degenerate=True to leave such boxes out")


def read_coco(json_path, skip_degenerate=False) -> CocoAnnotations:
    """Read a COCO detection JSON -> `CocoAnnotations`; targets hold boxes float32 [G, 4]
    (x1, y1, x2, y2), labels int64 [G] in 1..K, image_id int64 (COCO id), area, iscrowd."""
    data = json.loads(Path(json_path).read_text())
    cats = sorted(data["categories"], key=lambda c: c["id"])
    label_of = {c["id"]: k + 1 for k, c in enumerate(cats)}
    per_image = {img["id"]: [] for img in data["images"]}
    for ann in data["annotations"]:
        if ann["category_id"] not in label_of:
            raise ValueError(f"annotation id {ann.get('id')}: category_id {ann['category_id']} "
                             "is not listed in 'categories'")
        if ann["image_id"] not in per_image:
            raise ValueError(f"annotation id {ann.get('id')}: image_id {ann['image_id']} is not "
                             "listed in 'images'")
        box = _coco_box(ann, skip_degenerate)
        if box is not None:
            per_image[ann["image_id"]].append((box, label_of[ann["category_id"]], ann))
    targets = [_target(img["id"], per_image[img["id"]]) for img in data["images"]]
    names = ("__background__",) + tuple(c["name"] for c in cats)
    return CocoAnnotations(data["images"], targets, names, tuple(c["id"] for c in cats))


def _target(image_id: int, objects: list) -> dict:
    boxes = torch.tensor([o[0] for o in objects], dtype=torch.float32).reshape(-1, 4)
    target = dict(boxes=boxes, labels=torch.tensor([o[1] for o in objects], dtype=torch.int64),
                  image_id=torch.tensor(image_id, dtype=torch.int64),
                  area=torch.tensor([float(o[2].get("area", 0.0)) for o in objects],
                                    dtype=torch.float32),
                  iscrowd=torch.tensor([int(o[2].get("iscrowd", 0)) for o in objects],
                                       dtype=torch.int64))
    return check_target(target, name=f"annotations of image {image_id}")


class COCODataset(torch.utils.data.Dataset):
    """Images in `image_dir` with the annotations of `json_path` (see `read_coco`).

    Item: (image float32 [3, H, W] in [0, 1], target). Crowd regions stay in the target with
    ``iscrowd = 1``; filter them for training if you wish (COCO's evaluation ignores them).
    """

    def __init__(self, image_dir, json_path, transforms=None, skip_degenerate=False):
        self.image_dir, self.transforms = Path(image_dir), transforms
        self.annotations = read_coco(json_path, skip_degenerate)
        self.classes = self.annotations.class_names
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self.annotations.images)

    def __getitem__(self, index: int):
        image = load_image(self.image_dir / self.annotations.images[index]["file_name"])
        target = dict(self.annotations.targets[index])
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target
