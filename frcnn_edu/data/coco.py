"""COCO detection JSON: write targets as a COCO annotation file and read one back.

COCO is the extra training data of Faster R-CNN's best VOC result (sec. 4.2, "COCO+07+12").
A COCO ``bbox`` is ``[x, y, width, height]`` with (x, y) the top-left corner, in the same
continuous pixel coordinates as ours, so ``(x1, y1, x2, y2) = (x, y, x + w, y + h)``.
Category ids are 1-based and may have gaps (COCO uses 1..90 for 80 classes); reading maps them,
sorted, to contiguous labels 1..K. Writing uses ``category_id = label`` (our labels are 1..K).
A box must lie inside its image's ``width`` x ``height``: an error by default, clipped with
``clip=True``. Every malformed file (invalid JSON, a missing key, a bbox that is not four
numbers) raises `AnnotationError` naming the file, the key and what was expected.

VOC's ``difficult`` flag has no COCO field: COCO's ``iscrowd`` marks a region holding a group of
objects (drawn as one), which is another thing, so writing a difficult box as a crowd would
change what the file says. `write_coco` therefore keeps the flag as an extra annotation field,
``"difficult": 0 or 1`` (COCO tools ignore keys they do not know), and `read_coco` reads it back
into ``target["difficult"]`` (a file without it: all False). The VOC metric
(`frcnn_edu.evaluation.voc_eval`) ignores both difficult and crowd boxes.

Instance masks (Mask R-CNN): a target's ``masks`` uint8 [G, H, W] are written as each
annotation's ``segmentation`` in COCO's compressed run-length encoding (RLE, through
``pycocotools.mask.encode``; the ``counts`` bytes stored as a string), with ``area`` the mask's
pixel count as in COCO's files (the box area when there are no masks). ``read_coco(...,
masks=True)`` reads all three forms COCO uses back into masks: polygons (a list of
[x1, y1, x2, y2, ...] lists, rasterised by ``pycocotools.mask.frPyObjects``), uncompressed RLE
(``counts`` a list of run lengths, the crowd regions of COCO) and compressed RLE.

Shape key:
    G  objects in one image
    K  foreground classes
"""
from __future__ import annotations

import json
import math
import numbers
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .errors import AnnotationError
from .image_io import load_image, save_image
from .shapes import CLASSES
from .targets import check_target

__all__ = ["write_coco", "read_coco", "CocoAnnotations", "COCODataset", "encode_mask"]


def encode_mask(mask) -> dict:
    """One binary mask [H, W] (tensor or array) -> COCO compressed RLE, JSON-ready
    (``{"size": [H, W], "counts": str}``)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def _check_masks(masks, num_boxes, size, where):
    if not torch.is_tensor(masks) or masks.dim() != 3 or masks.shape[0] != num_boxes:
        got = list(masks.shape) if torch.is_tensor(masks) else type(masks).__name__
        raise ValueError(f"{where}['masks'] must be a tensor [G, H, W] with one mask per box "
                         f"(G = {num_boxes}), got {got}")
    if tuple(masks.shape[-2:]) != tuple(size):
        raise ValueError(f"{where}['masks'] are {tuple(masks.shape[-2:])} pixels but the image "
                         f"is {tuple(size)}: masks must have the image's (H, W)")


def _coco_annotations(target, image_id: int, first_id: int) -> list:
    anns = []
    n = len(target["labels"])
    difficult = target.get("difficult", torch.zeros(n, dtype=torch.bool)).tolist()
    iscrowd = target.get("iscrowd", torch.zeros(n, dtype=torch.int64)).tolist()
    masks = target.get("masks")
    for j, (box, label) in enumerate(zip(target["boxes"].tolist(), target["labels"].tolist())):
        x1, y1, x2, y2 = box
        ann = dict(id=first_id + j, image_id=image_id, category_id=int(label),
                   bbox=[x1, y1, x2 - x1, y2 - y1], area=(x2 - x1) * (y2 - y1),
                   iscrowd=int(iscrowd[j]), difficult=int(difficult[j]))
        if masks is not None:
            ann.update(segmentation=encode_mask(masks[j] != 0), area=int((masks[j] != 0).sum()))
        anns.append(ann)
    return anns


def write_coco(items, json_path, class_names=CLASSES, image_dir=None, image_format="png") -> dict:
    """Write (image, target) items as a COCO detection JSON at `json_path`.

    Images get ids 1..N (COCO ids are positive) and, when `image_dir` is given, are saved there
    as ``<id>.<image_format>`` (``file_name`` is relative to `image_dir`). Targets with
    ``masks`` [G, H, W] get a ``segmentation`` (compressed RLE) per object. Returns the JSON dict.
    """
    images, annotations = [], []
    for i, (image, target) in enumerate(items):
        check_target(target, num_classes=len(class_names), name=f"target of item {i}")
        file_name = f"{i + 1:06d}.{image_format}"
        if image_dir is not None:
            h, w = save_image(image, Path(image_dir) / file_name)
        else:
            h, w = image.shape[-2:] if hasattr(image, "dim") else image.shape[:2]
        if "masks" in target:
            _check_masks(target["masks"], len(target["boxes"]), (h, w), f"target of item {i}")
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


def _load(path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise AnnotationError(path, "JSON", f"not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise AnnotationError(path, "top level", f"a {type(data).__name__}; expected an object "
                              "with 'images', 'annotations' and 'categories'")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise AnnotationError(path, f"'{key}'", "missing or not a list; a COCO detection file "
                                  "needs 'images', 'annotations' and 'categories' lists")
    return data


def _field(path, record, key, where, kind=numbers.Real):
    """record[key], which must exist and be of `kind` (a number by default)."""
    if not isinstance(record, dict) or key not in record:
        raise AnnotationError(path, f"{where}['{key}']", "missing")
    value = record[key]
    if not isinstance(value, kind) or isinstance(value, bool):
        raise AnnotationError(path, f"{where}['{key}']",
                              f"is {value!r}; expected a {getattr(kind, '__name__', 'value')}")
    return value


def _coco_box(path, ann, where, skip_degenerate: bool):
    bbox = _field(path, ann, "bbox", where, list)
    if len(bbox) != 4 or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in bbox):
        raise AnnotationError(path, f"{where}['bbox']", f"is {bbox!r}; expected [x, y, width, "
                              "height], four numbers")
    x, y, w, h = (float(v) for v in bbox)
    if w > 0 and h > 0:
        return [x, y, x + w, y + h]
    if skip_degenerate:
        return None
    raise AnnotationError(path, f"annotation id {ann.get('id')}: bbox [x, y, w, h] = {bbox}",
                          "has w <= 0 or h <= 0; pass skip_degenerate=True to leave such boxes out")


def read_coco(json_path, skip_degenerate=False, clip=False, masks=False) -> CocoAnnotations:
    """Read a COCO detection JSON -> `CocoAnnotations`; targets hold boxes float32 [G, 4]
    (x1, y1, x2, y2), labels int64 [G] in 1..K, image_id int64 (COCO id), area, iscrowd,
    difficult bool [G] (the extra field `write_coco` keeps; False where absent), and with
    ``masks=True`` masks uint8 [G, H, W] from each annotation's ``segmentation`` (polygons or
    RLE; the image records then need ``height`` and ``width``).

    Boxes must lie inside their image (``width``, ``height`` of its record); ``clip=True`` clips
    them instead. A malformed file raises `AnnotationError` (a ValueError)."""
    data = _load(json_path)
    for k, c in enumerate(data["categories"]):
        _field(json_path, c, "id", f"categories[{k}]", numbers.Integral)
        _field(json_path, c, "name", f"categories[{k}]", str)
    cats = sorted(data["categories"], key=lambda c: c["id"])
    label_of = {c["id"]: k + 1 for k, c in enumerate(cats)}
    per_image = {}
    for k, img in enumerate(data["images"]):
        per_image[_field(json_path, img, "id", f"images[{k}]", numbers.Integral)] = []
        _field(json_path, img, "file_name", f"images[{k}]", str)
    for k, ann in enumerate(data["annotations"]):
        where = f"annotations[{k}] (id {ann.get('id') if isinstance(ann, dict) else None})"
        category = _field(json_path, ann, "category_id", where, numbers.Integral)
        image_id = _field(json_path, ann, "image_id", where, numbers.Integral)
        if category not in label_of:
            raise AnnotationError(json_path, f"annotation id {ann.get('id')}: category_id {category}",
                                  "is not listed in 'categories'")
        if image_id not in per_image:
            raise AnnotationError(json_path, f"annotation id {ann.get('id')}: image_id {image_id}",
                                  "is not listed in 'images'")
        box = _coco_box(json_path, ann, where, skip_degenerate)
        if box is not None:
            per_image[image_id].append((box, label_of[category], ann))
    targets = [_target(json_path, img, per_image[img["id"]], clip) for img in data["images"]]
    if masks:
        for img, target in zip(data["images"], targets):
            target["masks"] = _read_masks(json_path, img, per_image[img["id"]])
    names = ("__background__",) + tuple(c["name"] for c in cats)
    return CocoAnnotations(data["images"], targets, names, tuple(c["id"] for c in cats))


def _image_size(img):
    """(H, W) of an image record, or (inf, inf) (negative coordinates only) when not given."""
    h, w = img.get("height"), img.get("width")
    ok = all(isinstance(v, numbers.Real) and not isinstance(v, bool) and v > 0 for v in (h, w))
    return (h, w) if ok else (math.inf, math.inf)


def _flag(path, ann, key) -> bool:
    """An optional 0/1 field of an annotation (absent: 0)."""
    value = ann.get(key, 0)
    if value not in (0, 1) or isinstance(value, float):
        raise AnnotationError(path, f"annotation id {ann.get('id')}: '{key}'",
                              f"is {value!r}; expected 0 or 1")
    return bool(value)


def _target(path, img: dict, objects: list, clip: bool) -> dict:
    image_id = img["id"]
    boxes = torch.tensor([o[0] for o in objects], dtype=torch.float32).reshape(-1, 4)
    target = dict(boxes=boxes, labels=torch.tensor([o[1] for o in objects], dtype=torch.int64),
                  image_id=torch.tensor(image_id, dtype=torch.int64),
                  area=torch.tensor([float(o[2].get("area", 0.0)) for o in objects],
                                    dtype=torch.float32),
                  iscrowd=torch.tensor([int(o[2].get("iscrowd", 0)) for o in objects],
                                       dtype=torch.int64),
                  difficult=torch.tensor([_flag(path, o[2], "difficult") for o in objects],
                                         dtype=torch.bool))
    try:
        return check_target(target, image_size=_image_size(img), clip=clip,
                            name=f"annotations of image {image_id}")
    except ValueError as e:
        raise AnnotationError(path, f"image id {image_id}", str(e)) from None


def _read_masks(path, img: dict, objects: list) -> torch.Tensor:
    """uint8 [G, H, W]: the ``segmentation`` of each object (polygons, RLE or compressed RLE)."""
    from pycocotools import mask as mask_utils

    h, w = _image_size(img)
    if math.isinf(h):
        raise AnnotationError(path, f"image id {img['id']}", "needs 'height' and 'width' (positive "
                              "numbers) to read its masks")
    h, w = int(h), int(w)
    out = np.zeros((len(objects), h, w), dtype=np.uint8)
    for j, (_, _, ann) in enumerate(objects):
        seg = ann.get("segmentation")
        where = f"annotation id {ann.get('id')}: 'segmentation'"
        if isinstance(seg, list) and seg and all(isinstance(p, list) and len(p) >= 6 for p in seg):
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w))   # polygons
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), list):
            rle = mask_utils.frPyObjects(seg, h, w)                      # uncompressed RLE
        elif isinstance(seg, dict) and isinstance(seg.get("counts"), str):
            rle = dict(seg, counts=seg["counts"].encode("ascii"))        # compressed RLE
        else:
            raise AnnotationError(path, where, f"is {str(seg)[:60]!r}; expected polygons (lists "
                                  "of >= 3 x, y pairs) or an RLE dict with 'size' and 'counts'")
        if list(rle["size"]) != [h, w]:
            raise AnnotationError(path, where, f"has size {list(rle['size'])}, but the image is "
                                  f"[height, width] = {[h, w]}")
        out[j] = mask_utils.decode(rle)
    return torch.from_numpy(out)


class COCODataset(torch.utils.data.Dataset):
    """Images in `image_dir` with the annotations of `json_path` (see `read_coco`).

    Item: (image float32 [3, H, W] in [0, 1], target). Crowd regions stay in the target with
    ``iscrowd = 1``; filter them for training if you wish (COCO's evaluation ignores them).
    """

    def __init__(self, image_dir, json_path, transforms=None, skip_degenerate=False, clip=False,
                 masks=False):
        self.image_dir, self.transforms = Path(image_dir), transforms
        self.annotations = read_coco(json_path, skip_degenerate, clip, masks)
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
