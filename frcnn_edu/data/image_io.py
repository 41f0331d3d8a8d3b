"""Reading and writing image files for the dataset formats (PIL).

Shape key:
    H, W  image height and width
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8_hwc(image) -> np.ndarray:
    """Tensor [3, H, W] in [0, 1] (or uint8 tensor) / numpy H x W x 3 -> uint8 numpy H x W x 3."""
    if torch.is_tensor(image):
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"image must be a tensor [3, H, W], got {list(image.shape)}")
        image = image.detach().cpu()
        if image.is_floating_point():
            image = (image.clamp(0, 1) * 255).round()
        return image.to(torch.uint8).permute(1, 2, 0).expand(-1, -1, 3).numpy()
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"image must be an array H x W x 3, got shape {list(arr.shape)}")
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(arr * 255.0 if arr.dtype.kind == "f" else arr), 0, 255).astype(np.uint8)
    return arr


def save_image(image, path) -> tuple:
    """Write an image (see `to_uint8_hwc`) to `path`; JPEG at quality 95. Returns (H, W)."""
    arr = to_uint8_hwc(image)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"quality": 95} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(arr).save(path, **kwargs)
    return arr.shape[:2]


def load_image(path) -> torch.Tensor:
    """Read an image file as float32 [3, H, W] in [0, 1] (RGB)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)
