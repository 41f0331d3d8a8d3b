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
import torch

from ..data.targets import check_target
from .backbones import IMAGE_MEAN, IMAGE_STD


def check_images(images):
    """Raise a clear error unless `images` is a non-empty list of non-empty float [3, H, W]
    tensors."""
    if isinstance(images, torch.Tensor) and images.dim() == 3:
        raise TypeError("images must be a list of [3, H, W] tensors (or a [N, 3, H, W] batch); "
                        "wrap a single image as [image]")
    if len(images) == 0:
        raise ValueError("images is empty: pass at least one [3, H, W] image")
    for i, img in enumerate(images):
        if img.dim() != 3 or img.shape[0] != 3 or not img.is_floating_point():
            raise ValueError(f"images[{i}] must be a float [3, H, W] tensor in [0, 1], got "
                             f"{img.dtype} {list(img.shape)}")
        if min(img.shape[-2:]) < 1:
            raise ValueError(f"images[{i}] is empty ({img.shape[1]} x {img.shape[2]} pixels): "
                             "pass images with at least one pixel")


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


def check_targets(targets, num_classes, num_images):
    """Validate torchvision-style targets before any training step (clear errors, no clipping)."""
    if targets is None:
        raise ValueError("targets is None in training mode: pass list[dict(boxes, labels)] "
                         "or call model.eval() for inference")
    if len(targets) != num_images:
        raise ValueError(f"targets has {len(targets)} entries for {num_images} images")
    for i, t in enumerate(targets):
        check_target(t, num_classes=num_classes, name=f"targets[{i}]")
