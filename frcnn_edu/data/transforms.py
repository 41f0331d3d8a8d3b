"""Detection transforms that move the boxes with the pixels.

* ``RandomHorizontalFlip``: the only augmentation of Fast R-CNN (sec. 2.3, "images are
  horizontally flipped with probability 0.5") and Faster R-CNN; a box (x1, y1, x2, y2) becomes
  (W - x2, y1, W - x1, y2).
* ``ResizeShorterSide``: the single-scale setting of Fast R-CNN (sec. 5.2) and Faster R-CNN
  (sec. 4): rescale so the shorter side is ``size`` (600 in the papers) unless the longer side
  would exceed ``max_size`` (1000); boxes are scaled by the same factors.

Aerial photographs have no "up" (lesson 08), so for them the flips and rotations of the square's
symmetry group are as valid as the horizontal flip, and light differs between photographs:

* ``RandomVerticalFlip``, ``RandomRotate90`` (k x 90 degrees, k drawn from 0..3): exact, the
  pixels and boxes are moved by torchvision's ``transforms.v2.functional`` (which transforms
  boxes given as ``tv_tensors.BoundingBoxes``), so no pixel is interpolated.
* ``ColorJitter``: brightness, contrast, saturation and hue factors drawn per image and applied
  with torchvision's ``adjust_*`` functions; the boxes do not move.
* ``aerial_augmentation()``: the recipe of lesson 08, ``Compose`` of the three.

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

__all__ = ["Compose", "RandomHorizontalFlip", "RandomVerticalFlip", "RandomRotate90",
           "ColorJitter", "aerial_augmentation", "ResizeShorterSide", "hflip_boxes",
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


class _RandomFlip:
    """What the random flips share: a probability `p` and the generator of their coin."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be a probability in [0, 1], got {p}")
        self.p, self.generator = p, generator

    def _flips(self, image, target) -> bool:
        """Check the inputs and toss the coin (one draw from the generator, whatever `p`)."""
        _check_image(image)
        check_target(target)
        return torch.rand((), generator=self.generator).item() < self.p

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


class RandomHorizontalFlip(_RandomFlip):
    """Flip image and boxes left-right with probability `p` (Fast R-CNN sec. 2.3)."""

    def __call__(self, image, target):
        if not self._flips(image, target):
            return image, target
        target = dict(target, boxes=hflip_boxes(target["boxes"], image.shape[-1]))
        if "proposals" in target:  # external proposals (Fast R-CNN) move with the pixels too
            target["proposals"] = hflip_boxes(target["proposals"], image.shape[-1])
        if "masks" in target:
            target["masks"] = target["masks"].flip(-1)
        return image.flip(-1), target


def _geometric(fn, image, target):
    """Apply torchvision's v2 functional `fn` (e.g. ``vflip``) to the image and to everything in
    the target that lives in its pixels: boxes (and external proposals) as
    ``tv_tensors.BoundingBoxes``, masks as ``tv_tensors.Mask``. Other keys are copied."""
    from torchvision import tv_tensors

    h, w = image.shape[-2:]
    target = dict(target)
    for key in ("boxes", "proposals"):
        if key in target:
            boxes = tv_tensors.BoundingBoxes(target[key], format="XYXY", canvas_size=(h, w))
            target[key] = fn(boxes).as_subclass(torch.Tensor)
    if "masks" in target:
        target["masks"] = fn(tv_tensors.Mask(target["masks"])).as_subclass(torch.Tensor)
    return fn(image), target


class RandomVerticalFlip(_RandomFlip):
    """Flip image and boxes top-bottom with probability `p`: y1' = H - y2, y2' = H - y1.

    Valid where the images have no "up" (aerial photographs, microscopy), not for street scenes.
    """

    def __call__(self, image, target):
        if not self._flips(image, target):
            return image, target
        from torchvision.transforms.v2 import functional as TF
        return _geometric(TF.vflip, image, target)


class RandomRotate90:
    """Rotate image and boxes by k x 90 degrees counter-clockwise, k uniform in 0..3.

    A 90-degree turn maps the pixel grid onto itself, so nothing is interpolated and an axis-
    aligned box stays one, exactly: (x, y) -> (y, W - x), H and W swap. With the flips, the
    eight symmetries of the square: an aerial view seen from any compass direction.
    """

    def __init__(self, generator: torch.Generator | None = None):
        self.generator = generator

    def __call__(self, image, target):
        _check_image(image)
        check_target(target)
        k = int(torch.randint(4, (), generator=self.generator))
        if k == 0:
            return image, target
        from torchvision.transforms.v2 import functional as TF
        return _geometric(lambda x: TF.rotate(x, 90.0 * k, expand=True), image, target)

    def __repr__(self) -> str:
        return "RandomRotate90()"


class ColorJitter:
    """Random brightness, contrast, saturation (factors in [1 - a, 1 + a]) and hue (shift in
    [-hue, hue], a share of the colour circle), in that order, on images in [0, 1]; boxes stay.

    The factors come from `generator` and the pixels are changed by torchvision's
    ``adjust_brightness`` .. ``adjust_hue`` (as ``transforms.v2.ColorJitter`` does, in a fixed
    order). A detector trained on one photograph learns its light and colours as part of what
    a crown looks like; jitter makes them vary, so that what it learns is shape and texture.
    """

    def __init__(self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0,
                 generator: torch.Generator | None = None):
        for name, v in (("brightness", brightness), ("contrast", contrast),
                        ("saturation", saturation)):
            if not 0.0 <= v < 1.0:
                raise ValueError(f"{name} must be in [0, 1) (factors in [1 - {name}, "
                                 f"1 + {name}]), got {v}")
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5] (a share of the colour circle), got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.generator = generator

    def _factor(self, a):
        return 1.0 + a * (2 * torch.rand((), generator=self.generator).item() - 1)

    def __call__(self, image, target):
        _check_image(image)
        from torchvision.transforms.v2 import functional as TF
        b, c, s = (self._factor(a) for a in (self.brightness, self.contrast, self.saturation))
        h = self.hue * (2 * torch.rand((), generator=self.generator).item() - 1)
        image = TF.adjust_saturation(TF.adjust_contrast(TF.adjust_brightness(image, b), c), s)
        if self.hue:
            image = TF.adjust_hue(image, h)
        return image.clamp(0.0, 1.0), target

    def __repr__(self) -> str:
        return (f"ColorJitter(brightness={self.brightness}, contrast={self.contrast}, "
                f"saturation={self.saturation}, hue={self.hue})")


def aerial_augmentation(flips=True, jitter=0.0, hue=0.0, generator=None):
    """Lesson 08's augmentation of aerial tiles: vertical flips and 90-degree rotations (with
    the training loop's horizontal flips, all eight views of the square) when `flips`, and
    brightness, contrast and saturation jitter of +-`jitter` (hue +-`hue`) when non-zero."""
    transforms = [RandomVerticalFlip(generator=generator), RandomRotate90(generator=generator)] \
        if flips else []
    if jitter or hue:
        transforms.append(ColorJitter(jitter, jitter, jitter, hue, generator=generator))
    return Compose(transforms)


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
