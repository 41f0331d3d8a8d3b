"""Padding a list of images into one normalised batch, and checking the images.

The papers feed one or two images at a time at their own sizes (shorter side 600). To run
several images of different sizes through one conv net we normalise each with the ImageNet
statistics and pad them (bottom and right, with zeros) to a common size that is a multiple of the
stride, as torchvision does. Boxes stay in each image's own pixel coordinates; padding never
moves them, and each image keeps its own (height, width) for clipping and the border rule.
The targets' checks (`check_target`, `check_targets`) live in `data.targets`.

Shape key:
    N  images      H_i, W_i  size of image i      Hp, Wp  padded size (multiples of the stride)
"""
import warnings

import torch

# Images are normalised with ImageNet statistics everywhere, so torchvision weights fit too.
IMAGE_MEAN = (0.485, 0.456, 0.406)
IMAGE_STD = (0.229, 0.224, 0.225)


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
