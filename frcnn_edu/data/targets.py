"""Targets in torchvision's detection format: validation and batching.

A target is ``dict(boxes=float32 [G, 4] (x1, y1, x2, y2), labels=int64 [G], ...)`` with labels
1..K and 0 reserved for background (Fast R-CNN sec. 2.3 uses "u = 0" for background).
Detection images differ in size and in G, so a batch is a pair of lists, not a stacked tensor.

Shape key:
    N  images      G  ground-truth objects in one image      K  foreground classes
"""
from __future__ import annotations

import torch

from ..boxes import check_boxes


def collate_fn(batch):
    """[(image, target), ...] -> (list of images, list of targets).

    Use as ``DataLoader(dataset, batch_size=2, collate_fn=collate_fn)``."""
    images, targets = [], []
    for item in batch:
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise TypeError("collate_fn expects items (image, target), got "
                            f"{type(item).__name__}")
        images.append(item[0])
        targets.append(item[1])
    return images, targets


def check_target(target, image_size=None, num_classes=None, name="target", clip=False) -> dict:
    """Validate a target dict; raise ValueError naming the bad field. Returns `target`.

    Checks: ``boxes`` is a float tensor [G, 4], finite, with x2 > x1 and y2 > y1; ``labels`` is
    an int64 tensor [G] in 1..num_classes-1 when ``num_classes`` (K + 1, background included)
    is given. With ``image_size`` = (H, W) the boxes must also lie inside the image (within
    1e-3 pixel): a box outside it is an error by default, since training on it teaches the
    regressor to point off the image and usually means a wrong annotation or a mix-up of
    (x, y, w, h) and (x1, y1, x2, y2). ``clip=True`` clips such boxes to the image instead and
    returns a new dict (`target` itself is not modified); a box left empty by the clip is
    still an error. ``image_size = (inf, inf)`` checks only for negative coordinates.
    """
    if not isinstance(target, dict):
        raise TypeError(f"{name} must be a dict with 'boxes' and 'labels', got {type(target).__name__}")
    for key in ("boxes", "labels"):
        if key not in target:
            raise ValueError(f"{name} needs a '{key}' entry; it has {sorted(target)}")
    boxes = target["boxes"]
    check_boxes(boxes, f"{name}['boxes']", rows="G", type_error=ValueError)
    if image_size is not None and len(boxes) and _outside(boxes, image_size).any():
        if not clip:
            i = int(_outside(boxes, image_size).nonzero()[0])
            raise ValueError(f"{name}['boxes'][{i}] = {boxes[i].tolist()} must lie inside the image "
                             f"of size (H, W) = {tuple(image_size)}; fix the annotation, or clip "
                             "the boxes to the image (clip=True)")
        h, w = image_size
        boxes = torch.stack([boxes[:, 0].clamp(0, w), boxes[:, 1].clamp(0, h),
                             boxes[:, 2].clamp(0, w), boxes[:, 3].clamp(0, h)], 1)
        check_boxes(boxes, f"{name}['boxes'] clipped to the image {tuple(image_size)}", rows="G",
                    type_error=ValueError)
        target = dict(target, boxes=boxes)
    check_labels(target["labels"], f"{name}['labels']", len(target["boxes"]), num_classes)
    return target


def check_targets(targets, num_classes, num_images, image_sizes=None, clip=False):
    """Validate torchvision-style targets before any training step; returns them.

    With `image_sizes` ((H, W) per image) the boxes must lie inside their image: an error by
    default, clipped to it with ``clip=True``. Float boxes of another dtype (float64, float16)
    come back as float32, as torchvision accepts any float boxes. Nothing is changed in place.
    """
    if targets is None:
        raise ValueError("targets is None in training mode: pass list[dict(boxes, labels)] "
                         "or call model.eval() for inference")
    if isinstance(targets, dict) or torch.is_tensor(targets):
        raise TypeError(f"targets must be a list of dicts, one dict(boxes, labels) per image, "
                        f"got a {type(targets).__name__}; wrap one image's target as [target]")
    if len(targets) != num_images:
        raise ValueError(f"targets has {len(targets)} entries for {num_images} images")
    sizes = image_sizes if image_sizes is not None else [None] * num_images
    checked = []
    for i, (t, size) in enumerate(zip(targets, sizes)):
        t = check_target(t, image_size=size, num_classes=num_classes, name=f"targets[{i}]",
                         clip=clip)
        if t["boxes"].dtype != torch.float32:
            t = dict(t, boxes=t["boxes"].float())
        checked.append(t)
    return checked


def _outside(boxes, image_size, tol=1e-3):
    """[G] bool: the box reaches past the image's borders by more than `tol` pixels."""
    h, w = image_size
    return ((boxes[:, :2] < -tol).any(1) | (boxes[:, 2] > w + tol) | (boxes[:, 3] > h + tol))


def check_labels(labels, name="labels", num_boxes=None, num_classes=None, dtype=torch.int64):
    """Check class labels and return them; the messages name the caller's argument ``name``.

    ``labels`` must be a ``dtype`` tensor (int64, a target's labels; ``None``: any integer
    dtype, as `evaluation.voc_eval` accepts for predictions) of shape [num_boxes] (when given)
    with values in 1..num_classes-1 (when ``num_classes`` = K + 1 is given; 0 is background).
    A wrong dtype raises ValueError for int64 and TypeError for any-integer, as each did before.
    """
    if dtype is None:
        if labels.is_floating_point() or labels.dtype == torch.bool:
            raise TypeError(f"{name} must be an integer tensor, got {labels.dtype}")
    elif not torch.is_tensor(labels) or labels.dtype != dtype:
        raise ValueError(f"{name} must be an {str(dtype).replace('torch.', '')} tensor [G], got "
                         f"{getattr(labels, 'dtype', type(labels).__name__)}")
    if num_boxes is not None and labels.shape != (num_boxes,):
        raise ValueError(f"{name} must have shape [{num_boxes}] (one per box), "
                         f"got {list(labels.shape)}")
    if num_classes is not None and len(labels):
        if labels.min() < 1 or labels.max() >= num_classes:
            raise ValueError(f"{name} must lie in 1..{num_classes - 1} (0 is background, "
                             f"num_classes={num_classes}), got min {int(labels.min())}, "
                             f"max {int(labels.max())}")
    return labels
