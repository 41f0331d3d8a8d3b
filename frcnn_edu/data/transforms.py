"""Detection transforms that move the boxes with the pixels.

* ``RandomHorizontalFlip``: the only augmentation of Fast R-CNN (sec. 2.3, "images are
  horizontally flipped with probability 0.5") and Faster R-CNN; a box (x1, y1, x2, y2) becomes
  (W - x2, y1, W - x1, y2).
* ``ResizeShorterSide``: the single-scale setting of Fast R-CNN (sec. 5.2) and Faster R-CNN
  (sec. 4): rescale so the shorter side is ``size`` (600 in the papers) unless the longer side
  would exceed ``max_size`` (1000); boxes are scaled by the same factors.

Instance masks (``target["masks"]`` uint8 [G, H, W], Mask R-CNN) move too: a flip mirrors
them, and a resize samples them with nearest neighbour (each new pixel takes the value of the
old pixel under its position), so they stay binary and need no threshold.

Every transform is a callable ``(image, target) -> (image, target)`` on an image tensor
[C, H, W] and a target dict (see ``frcnn_edu.data.targets``); the input target is not modified.
Random transforms draw from ``generator`` (a ``torch.Generator``) when one is given, so a run
can be replayed; otherwise from torch's global random state.

Shape key:
    C, H, W  image channels, height, width
    G        ground-truth boxes in one image
"""
from __future__ import annotations


import torch
import torch.nn.functional as F

from .targets import check_target

__all__ = ["Compose", "RandomHorizontalFlip", "ResizeShorterSide", "hflip_boxes",
           "resize_image", "resize_image_and_boxes", "shorter_side_scale"]


def _check_image(image) -> None:
    if not torch.is_tensor(image) or image.dim() != 3:
        got = getattr(image, "shape", type(image).__name__)
        raise TypeError("image must be a tensor [C, H, W] (convert numpy HxWx3 with "
                        f"torch.from_numpy(a).permute(2, 0, 1)), got {got}")


class Compose:
    """Apply transforms in order: ``Compose([RandomHorizontalFlip(), ResizeShorterSide(600)])``."""

    def __init__(self, transforms):
        self.transforms = list(transforms)
        for t in self.transforms:
            if not callable(t):
                raise TypeError("transforms must be callables (image, target) -> "
                                f"(image, target), got {t!r}")

    def __call__(self, image, target):
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

    def __repr__(self) -> str:
        return "Compose([" + ", ".join(repr(t) for t in self.transforms) + "])"


def hflip_boxes(boxes: torch.Tensor, width: float) -> torch.Tensor:
    """Mirror boxes [G, 4] in an image of `width` pixels: x1' = W - x2, x2' = W - x1."""
    return torch.stack([width - boxes[:, 2], boxes[:, 1], width - boxes[:, 0], boxes[:, 3]], 1)


class RandomHorizontalFlip:
    """Flip image and boxes left-right with probability `p` (Fast R-CNN sec. 2.3)."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p}")
        self.p, self.generator = p, generator

    def __call__(self, image, target):
        _check_image(image)
        check_target(target)
        if torch.rand((), generator=self.generator).item() >= self.p:
            return image, target
        target = dict(target, boxes=hflip_boxes(target["boxes"], image.shape[-1]))
        if "proposals" in target:  # external proposals (Fast R-CNN) move with the pixels too
            target["proposals"] = hflip_boxes(target["proposals"], image.shape[-1])
        if "masks" in target:
            target["masks"] = target["masks"].flip(-1)
        return image.flip(-1), target

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


def shorter_side_scale(height: int, width: int, size: int = 600, max_size: int | None = 1000) -> float:
    """The factor that makes the shorter side `size`, smaller if the longer would pass `max_size`."""
    scale = size / min(height, width)
    if max_size is not None and max(height, width) * scale > max_size:
        scale = max_size / max(height, width)
    return scale


def resize_image(image, size=600, max_size=1000):
    """Resize image [C, H, W] by `shorter_side_scale` (bilinear; antialiased when shrinking).

    The one resizer of the library: the transform below and `FasterRCNN.resize` both call it.
    Returns (image [C, H', W'], (scale_y, scale_x)) with H' = round(H * s), W' = round(W * s)
    and the exact per-axis ratios H'/H, W'/W (what boxes are multiplied by).
    """
    _check_image(image)
    h, w = image.shape[-2:]
    scale = shorter_side_scale(h, w, size, max_size)
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) != (h, w):
        image = F.interpolate(image[None].float(), size=(new_h, new_w), mode="bilinear",
                              align_corners=False, antialias=scale < 1)[0]
    return image, (new_h / h, new_w / w)


def resize_image_and_boxes(image, boxes, size=600, max_size=1000):
    """`resize_image`, and boxes [G, 4] scaled by the same per-axis ratios.

    Returns (image [C, H', W'], boxes [G, 4], (scale_y, scale_x)).
    """
    image, (sy, sx) = resize_image(image, size, max_size)
    factors = torch.tensor([sx, sy, sx, sy], dtype=boxes.dtype, device=boxes.device)
    return image, boxes * factors, (sy, sx)


class ResizeShorterSide:
    """Rescale so the shorter side is `size` and the longer at most `max_size` (Fast R-CNN 5.2).

    The papers use size=600, max_size=1000 on VOC; for the 160 px shapes images try e.g. 320.
    `max_size=None` means no limit. The target gains ``scale``, a float32 tensor [2] holding
    (scale_y, scale_x), so that predictions can be mapped back to the original image.
    """

    def __init__(self, size: int = 600, max_size: int | None = 1000):
        if size <= 0 or (max_size is not None and max_size < size):
            raise ValueError(f"need size > 0 and max_size >= size (or None), got {size}, {max_size}")
        self.size, self.max_size = int(size), max_size

    def __call__(self, image, target):
        check_target(target)
        image, boxes, (sy, sx) = resize_image_and_boxes(image, target["boxes"], self.size,
                                                        self.max_size)
        step = torch.tensor([sy, sx], dtype=torch.float32)
        target = dict(target, boxes=boxes, scale=step * target.get("scale", 1.0))  # composes
        if "area" in target:
            target["area"] = target["area"] * (sy * sx)
        if "masks" in target:
            target["masks"] = F.interpolate(target["masks"][None].float(), size=image.shape[-2:],
                                            mode="nearest")[0].to(target["masks"].dtype)
        return image, target

    def __repr__(self) -> str:
        return f"ResizeShorterSide(size={self.size}, max_size={self.max_size})"
