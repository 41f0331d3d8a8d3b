"""Naming a dataset in one string, as the command line's ``--data`` does, and checking its folder.

    shapes                            the synthetic shapes (generated, no files)
    voc:ROOT[:SPLIT]                  a VOC year folder (VOCdevkit/VOC2007) or an `export_voc` one
    coco:ANNOTATIONS.json:IMAGES_DIR  a COCO detection file and the folder of its images
    pennfudan:ROOT                    the PennFudanPed folder (the last 50 photos are the test
                                      split, as in torchvision's tutorial; the other 120 train)
    treecrowns[:SPLIT]                the tree-crown tiles that ship with the package (a VOC
                                      folder, `treecrowns.tree_crowns_root()`; lesson 08)

`open_dataset(spec, split)` returns the dataset, with ``classes`` (background first) and
``num_classes``, after `check_*` has gone through the folder: a missing folder or image list,
an empty split, an annotation that names a missing image or an unknown class each raise
`DataError` naming the file and the fix, before any training starts (a first epoch need not
crash on image 4,000). Class names come from the data: COCO's ``categories``, a VOC folder's
``classes.txt`` (one name per line; `export_voc` writes it) or else VOC's 20 classes.

Shape key: none (no tensors here).
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import torch

from .coco import COCODataset
from .errors import AnnotationError
from .pennfudan import PennFudanDataset
from .shapes import ShapesDataset
from .treecrowns import tree_crowns_root
from .voc import VOC_CLASSES, VOCDataset, read_voc_annotation

__all__ = ["DataError", "DataSpec", "parse_data_spec", "open_dataset", "held_out_spec",
           "split_spec", "voc_class_names", "PENNFUDAN_TEST_IMAGES"]

SYNTAX = ("shapes | voc:ROOT[:SPLIT] | coco:ANNOTATIONS.json:IMAGES_DIR | pennfudan:ROOT | "
          "treecrowns[:SPLIT]")
#: the torchvision tutorial holds out the last 50 of the 170 Penn-Fudan photos
PENNFUDAN_TEST_IMAGES = 50


class DataError(ValueError):
    """A bad ``--data`` string or dataset folder; the message names the file and the fix."""


class DataSpec(NamedTuple):
    kind: str             # shapes, voc, coco or pennfudan
    root: Path | None     # VOC/Penn-Fudan folder, or the COCO annotation file
    images: Path | None   # COCO's image folder
    split: str | None     # VOC's image list (ImageSets/Main/<split>.txt), when named


def parse_data_spec(text: str) -> DataSpec:
    """``"voc:data/VOC2007:test"`` -> DataSpec("voc", Path("data/VOC2007"), None, "test")."""
    kind, _, rest = str(text).partition(":")
    parts = rest.split(":") if rest else []
    if kind == "shapes" and not parts:
        return DataSpec("shapes", None, None, None)
    if kind == "voc" and len(parts) in (1, 2) and parts[0]:
        return DataSpec("voc", Path(parts[0]), None, parts[1] if len(parts) == 2 else None)
    if kind == "coco" and len(parts) == 2 and all(parts):
        return DataSpec("coco", Path(parts[0]), Path(parts[1]), None)
    if kind == "pennfudan" and len(parts) == 1 and parts[0]:
        return DataSpec("pennfudan", Path(parts[0]), None, None)
    if kind == "treecrowns" and len(parts) <= 1:   # the shipped VOC folder, by name
        return DataSpec("voc", tree_crowns_root(), None, parts[0] if parts and parts[0] else None)
    raise DataError(f"--data {text!r}: expected {SYNTAX}")


def voc_class_names(root) -> tuple:
    """("__background__", ...) from ``root/classes.txt`` (one name per line), else VOC's 20."""
    path = Path(root) / "classes.txt"
    if not path.is_file():
        return VOC_CLASSES
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not names or len(set(names)) != len(names) or "__background__" in names:
        raise DataError(f"{path}: expected one class name per line, each once (background "
                        f"not listed), got {names}")
    return ("__background__", *names)


def _need(path: Path, what: str, fix: str) -> None:
    if not path.exists():
        raise DataError(f"{path} not found: {what}; {fix}")


def check_voc(root: Path, split: str, class_names) -> None:
    """Every listed id has an annotation that parses with known classes and an existing image."""
    _need(root, "the VOC folder", "pass a VOC year folder (VOCdevkit/VOC2007) or one written by "
          "`python -m frcnn_edu export --to voc:DIR`")
    for sub in ("Annotations", "JPEGImages"):
        _need(root / sub, f"a VOC folder keeps its {'XML files' if sub[0] == 'A' else 'images'} "
              f"in {sub}/", f"pass the year folder that holds {sub}/ (e.g. VOCdevkit/VOC2007)")
    listing = root / "ImageSets" / "Main" / f"{split}.txt"
    if not listing.is_file():
        have = sorted(p.stem for p in (root / "ImageSets" / "Main").glob("*.txt"))
        raise DataError(f"{listing} not found: no image list for split {split!r}; the splits "
                        f"here are {have}: name one as voc:{root}:SPLIT")
    ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    if not ids:
        raise DataError(f"{listing} lists no images (an empty split): add image ids, one a "
                        "line, or name another split as voc:ROOT:SPLIT")
    for image_id in ids:
        xml = root / "Annotations" / f"{image_id}.xml"
        _need(xml, f"{listing.name} lists {image_id!r}", "add its annotation or remove the id "
              "from the list")
        try:
            ann = read_voc_annotation(xml, class_names)
        except AnnotationError as e:
            fix = (f"; list the dataset's classes in {root / 'classes.txt'} (one a line) or fix "
                   "the name" if e.where.endswith("<name>") else "")
            raise DataError(f"{e}{fix}") from None
        image = root / "JPEGImages" / (ann["filename"] or f"{image_id}.jpg")
        _need(image, f"{xml} names this image", "add the image to JPEGImages/ or fix the "
              "annotation's <filename>")


def check_coco(dataset: COCODataset, json_path: Path) -> None:
    images = dataset.annotations.images
    if not images:
        raise DataError(f"{json_path}: 'images' is empty (an empty split): a COCO file for "
                        "training or evaluation needs at least one image")
    for k, img in enumerate(images):
        _need(dataset.image_dir / img["file_name"], f"{json_path} names it in images[{k}]",
              "put the image in the images folder (the third part of coco:JSON:IMAGES_DIR) or "
              "fix its 'file_name'")


class _Part(torch.utils.data.Subset):
    """A Subset that keeps its dataset's class names."""

    def __init__(self, dataset, indices):
        super().__init__(dataset, list(indices))
        self.classes, self.num_classes = dataset.classes, dataset.num_classes


def _voc(spec: DataSpec, split: str, transforms=None):
    names = voc_class_names(spec.root) if spec.root.is_dir() else VOC_CLASSES
    if spec.split is None and split == "train" and \
            (spec.root / "ImageSets" / "Main" / "trainval.txt").is_file():
        split = "trainval"   # VOC's own training list (train + val)
    split = spec.split or split
    check_voc(spec.root, split, names)
    return VOCDataset(spec.root, split, class_names=names, transforms=transforms)


def _coco(spec: DataSpec, transforms=None):
    _need(spec.root, "the COCO annotation file", "pass coco:ANNOTATIONS.json:IMAGES_DIR")
    _need(spec.images, "the folder of the COCO file's images", "pass coco:ANNOTATIONS.json:"
          "IMAGES_DIR with the folder that holds the files named in 'images'")
    try:
        dataset = COCODataset(spec.images, spec.root, transforms=transforms)
    except AnnotationError as e:
        raise DataError(str(e)) from None
    check_coco(dataset, spec.root)
    return dataset


def _pennfudan(spec: DataSpec, split: str, transforms=None):
    _need(spec.root, "the PennFudanPed folder", "download it with "
          "frcnn_edu.data.download_pennfudan() or pass the unpacked PennFudanPed folder")
    try:
        dataset = PennFudanDataset(spec.root, transforms=transforms)
    except (FileNotFoundError, AnnotationError) as e:
        raise DataError(str(e)) from None
    n, test = len(dataset), min(PENNFUDAN_TEST_IMAGES, len(dataset) // 2)
    if split not in ("train", "test"):
        raise DataError(f"pennfudan has a train and a test split (the last {test} photos), "
                        f"not {split!r}")
    return _Part(dataset, range(n - test) if split == "train" else range(n - test, n))


def open_dataset(text: str, split: str = "train", num_images: int | None = None,
                 transforms=None):
    """The dataset `text` names (see the module docstring), checked, for `split`.

    `split` is "train", "val" or "test": the shapes split; VOC's image list unless the spec
    names one ("train" reads trainval.txt where it exists); Penn-Fudan's part; COCO has one
    file per split, so the spec names it. `num_images` sets the shapes' length only.
    `transforms` (image, target) -> (image, target) is applied to every item read, e.g.
    `data.transforms.ColorJitter` (`train --color-jitter`).
    """
    spec = parse_data_spec(text)
    if spec.kind == "shapes":
        return ShapesDataset(split, num_images=num_images, transforms=transforms)
    if spec.kind == "voc":
        return _voc(spec, split, transforms)
    if spec.kind == "coco":
        return _coco(spec, transforms)
    return _pennfudan(spec, split, transforms)


def held_out_spec(text: str) -> str | None:
    """The spec of the data to score a run trained on `text`, or None when there is none.

    shapes and Penn-Fudan: their test split (`open_dataset(spec, "test")`); VOC: its test.txt
    when the folder has one and the run did not train on it; COCO: None (pass the validation
    file as its own spec).
    """
    spec = parse_data_spec(text)
    if spec.kind in ("shapes", "pennfudan"):
        return text
    if spec.kind == "voc" and spec.split != "test" and \
            (spec.root / "ImageSets" / "Main" / "test.txt").is_file():
        return f"voc:{spec.root}:test"
    return None


def split_spec(text: str, split: str) -> str | None:
    """The spec of split `split` of the data `text` names (to evaluate a run trained on it):
    shapes and Penn-Fudan choose their split when opened, a VOC folder gets ``:<split>``; a COCO
    file is one split already (None: name the other file)."""
    spec = parse_data_spec(text)
    if spec.kind == "voc":
        return f"voc:{spec.root}:{split}"
    return None if spec.kind == "coco" else text
