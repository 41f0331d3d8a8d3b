"""Turning a list of images into one padded, normalised batch, and checking targets.

The papers feed one or two images at a time at their own sizes (shorter side 600). To run
several images of different sizes through one conv net we normalise each with the ImageNet
statistics and pad them (bottom and right, with zeros) to a common size that is a multiple of the
stride, as torchvision does. Boxes stay in each image's own pixel coordinates; padding never
moves them, and each image keeps its own (height, width) for clipping and the border rule.

Shape key:
    N  images      H_i, W_i  size of image i      Hp, Wp  padded size (multiples of the stride)
    G  ground-truth boxes of one image            K  foreground classes
"""
import warnings

import torch

from ..data.targets import check_target
from .backbones import IMAGE_MEAN, IMAGE_STD


def check_image(img, name="image", warn=True):
    """Check one image: a float32 [3, H, W] tensor with at least one pixel, all finite.

    float64 and float16 images are refused with the fix rather than converted: the weights are
    float32 and torchvision's GeneralizedRCNNTransform does not convert either (it only refuses
    integer images; a float64 image then fails inside the first conv). Pixel values above 1.5
    warn (when `warn`) that the image looks like 0-255. Returns the largest pixel value.
    """
    if not torch.is_tensor(img):
        raise TypeError(f"{name} must be a float32 [3, H, W] tensor, got {type(img).__name__}")
    if img.dim() != 3 or img.shape[0] != 3:
        raise ValueError(f"{name} must be a float32 [3, H, W] tensor in [0, 1], got "
                         f"{img.dtype} {list(img.shape)}")
    if img.dtype != torch.float32:
        fix = "image.float() / 255" if not img.is_floating_point() else "image.float()"
        raise ValueError(f"{name} is {img.dtype}; the model expects float32 pixels in [0, 1]: "
                         f"pass {fix}")
    if min(img.shape[-2:]) < 1:
        raise ValueError(f"{name} is empty ({img.shape[1]} x {img.shape[2]} pixels): "
                         "pass images with at least one pixel")
    if not torch.isfinite(img).all():
        raise ValueError(f"{name} holds NaN or inf pixels: an input problem (the file or a "
                         "transform), not the model; fix or drop that image")
    top = float(img.max())
    if warn and top > 1.5:
        warnings.warn(f"{name} has pixel values above 1.5: they look like 0-255; divide by 255 "
                      "(the model expects [0, 1])", stacklevel=3)
    return top


def check_images(images):
    """Raise a clear error unless `images` is a non-empty list of non-empty, finite float32
    [3, H, W] tensors (see `check_image`); warn about 0-255 pixels."""
    if isinstance(images, torch.Tensor) and images.dim() == 3:
        raise TypeError("images must be a list of [3, H, W] tensors (or a [N, 3, H, W] batch); "
                        "wrap a single image as [image]")
    if isinstance(images, dict) or not hasattr(images, "__len__"):
        raise TypeError(f"images must be a list of [3, H, W] tensors, got {type(images).__name__}")
    if len(images) == 0:
        raise ValueError("images is empty: pass at least one [3, H, W] image")
    for i, img in enumerate(images):
        check_image(img, f"images[{i}]")


def batch_images(images, stride=16, mean=IMAGE_MEAN, std=IMAGE_STD):
    """list of [3, H_i, W_i] floats in [0, 1] -> ([N, 3, Hp, Wp], list of (H_i, W_i))."""
    check_images(images)
    sizes = [tuple(img.shape[-2:]) for img in images]
    hp = -(-max(h for h, _ in sizes) // stride) * stride
    wp = -(-max(w for _, w in sizes) // stride) * stride
    batch = images[0].new_zeros(len(images), 3, hp, wp)
    mean = torch.tensor(mean, device=batch.device).view(3, 1, 1)
    std = torch.tensor(std, device=batch.device).view(3, 1, 1)
    for img, slot in zip(images, batch):
        slot[:, :img.shape[1], :img.shape[2]].copy_((img - mean) / std)
    return batch, sizes


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
