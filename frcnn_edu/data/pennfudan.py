"""Penn-Fudan pedestrians: 170 photos with instance masks, one class (torchvision's tutorial set).

A small real dataset for a first fine-tuning run (Faster R-CNN sec. 4 trains on VOC; this is the
pocket version). Layout of the unpacked archive ``PennFudanPed/``::

    PNGImages/FudanPed00001.png      RGB photo
    PedMasks/FudanPed00001_mask.png  0 = background, 1..N = pedestrian instance ids

The box of an instance is the extent of its mask pixels: columns ``c_min .. c_max`` cover the
continuous interval ``[c_min, c_max + 1)``, so ``x1 = c_min, x2 = c_max + 1`` (width ``x2 - x1``
= number of columns; the torchvision tutorial's ``x2 = c_max`` is one pixel short).

Shape key:
    G     pedestrians in one image
    H, W  image height and width
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .download import download_file, extract_zip
from .errors import AnnotationError
from .image_io import load_image
from .targets import check_target

__all__ = ["PENNFUDAN_CLASSES", "PennFudanDataset", "boxes_from_instance_mask",
           "download_pennfudan"]

PENNFUDAN_CLASSES = ("__background__", "pedestrian")
PENNFUDAN_URL = "https://www.cis.upenn.edu/~jshi/ped_html/PennFudanPed.zip"
# No checksum is published for the archive: None makes `download_file` record the sha256 of the
# first download and check later uses against it. Pin the value here once it is known.
PENNFUDAN_SHA256 = None


def boxes_from_instance_mask(mask: np.ndarray):
    """Instance-id mask [H, W] (0 = background) -> (boxes float32 [G, 4], instance ids [G],
    masks bool [G, H, W]); ids in increasing order."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be an instance-id image [H, W], got shape {list(mask.shape)}")
    ids = np.unique(mask)
    ids = ids[ids != 0]
    masks = mask[None] == ids[:, None, None]
    boxes = np.zeros((len(ids), 4), dtype=np.float32)
    for g, m in enumerate(masks):
        rows, cols = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        boxes[g] = [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
    return torch.from_numpy(boxes), torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(masks)


class PennFudanDataset(torch.utils.data.Dataset):
    """Penn-Fudan at `root` (the ``PennFudanPed`` folder; see `download_pennfudan`).

    Item: (image float32 [3, H, W] in [0, 1], target dict(boxes, labels = 1 (pedestrian),
    image_id, area, iscrowd [, masks uint8 [G, H, W] if return_masks])).
    """

    classes = PENNFUDAN_CLASSES
    num_classes = len(PENNFUDAN_CLASSES)

    def __init__(self, root, transforms=None, return_masks=False):
        self.root, self.transforms, self.return_masks = Path(root), transforms, return_masks
        self.images = sorted((self.root / "PNGImages").glob("*.png"))
        self.masks = sorted((self.root / "PedMasks").glob("*.png"))
        if not self.images:
            raise FileNotFoundError(f"no PNGImages/*.png under {self.root}: root must be the "
                                    "PennFudanPed folder (see download_pennfudan)")
        expected = [p.stem + "_mask" for p in self.images]
        if [p.stem for p in self.masks] != expected:
            raise AnnotationError(self.root / "PedMasks", "<name>_mask.png",
                                  f"expected one PedMasks mask per PNGImages image "
                                  f"({len(self.images)} images, {len(self.masks)} masks)")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        image = load_image(self.images[index])
        with Image.open(self.masks[index]) as im:
            mask = np.array(im)
        if mask.shape != tuple(image.shape[-2:]):
            raise AnnotationError(self.masks[index], "size", f"the mask is {mask.shape}; expected "
                                  f"the image's {tuple(image.shape[-2:])}")
        boxes, _, masks = boxes_from_instance_mask(mask)
        target = dict(boxes=boxes, labels=torch.ones(len(boxes), dtype=torch.int64),
                      image_id=torch.tensor(index % len(self), dtype=torch.int64),
                      area=(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]),
                      iscrowd=torch.zeros(len(boxes), dtype=torch.int64))
        if self.return_masks:
            target["masks"] = masks.to(torch.uint8)
        check_target(target, image.shape[-2:], self.num_classes,
                     name=f"target of {self.images[index].name}")
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def download_pennfudan(root="data/downloads", sha256=PENNFUDAN_SHA256) -> Path:
    """Opt-in download (about 50 MB) and extraction; never called by the library.

    https only; the archive is checked against `sha256` (or, with none known, against the sha256
    recorded at its first download) and extracted refusing absolute paths and `..`.
    Returns the ``PennFudanPed`` folder to pass to `PennFudanDataset`.
    """
    root = Path(root)
    extract_zip(download_file(PENNFUDAN_URL, root, sha256=sha256), root)
    return root / "PennFudanPed"
