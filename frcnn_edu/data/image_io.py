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


def save_image(image, path, quality=95) -> tuple:
    """Write an image (see `to_uint8_hwc`) to `path`; JPEG at `quality` (1-95). Returns (H, W)."""
    arr = to_uint8_hwc(image)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs = {"quality": quality} if path.suffix.lower() in (".jpg", ".jpeg") else {}
    Image.fromarray(arr).save(path, **kwargs)
    return arr.shape[:2]


# PIL modes of one-channel images deeper than 8 bits, and the value of their white
_DEEP_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0,
               "I": 65535.0}


def load_image(path) -> torch.Tensor:
    """Read an image file as float32 [3, H, W] in [0, 1] (RGB).

    8-bit files are divided by 255. A 16-bit grey file (a PNG opens in PIL's mode "I;16" or "I")
    is divided by 65535 and repeated over the three channels: PIL's own conversion to RGB clips
    its values at 255, which turns almost every pixel white. A 32-bit integer file ("I") whose
    values pass 65535 is refused, as its white level is unknown.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    with Image.open(path) as im:
        if im.mode in _DEEP_MODES:
            arr = np.asarray(im).astype(np.float64)
            if arr.max(initial=0) > _DEEP_MODES[im.mode] or arr.min(initial=0) < 0:
                raise ValueError(f"{path}: a {im.mode} image with values in [{arr.min():g}, "
                                 f"{arr.max():g}]; expected 0..65535 (16 bits)")
            grey = torch.from_numpy(arr / _DEEP_MODES[im.mode]).float()
            return grey[None].expand(3, -1, -1).contiguous()
        if im.mode == "F":
            raise ValueError(f"{path}: a floating-point (mode F) image has no fixed white level; "
                             "convert it to 8 or 16 bits")
        arr = np.asarray(im.convert("RGB"))
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)
