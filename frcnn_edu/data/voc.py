"""PASCAL VOC files: write a dataset in VOC layout and read VOC (or the written copy) back.

The VOC 2007 benchmark is the one all three papers report (R-CNN table 1, Fast R-CNN table 1,
Faster R-CNN table 3). Layout of one year's folder (``.../VOCdevkit/VOC2007``)::

    Annotations/<id>.xml         one <object> per box: name, difficult, bndbox
    JPEGImages/<id>.jpg
    ImageSets/Main/<split>.txt   one id per line (split: train, val, trainval, test)

Coordinates: VOC's ``xmin .. xmax`` are 1-based pixel indices, both ends included, so the box
covers the continuous interval ``[xmin - 1, xmax]``. In this library (width ``x2 - x1``, no +1)
that is ``x1 = xmin - 1, x2 = xmax`` (same for y). ``difficult`` objects are kept, flagged in
``target["difficult"]``, and ignored by the VOC metric (neither true nor false positives).
As in the devkit, ``<difficult>`` reads "1" or "0" (a missing element means 0); any other text is
an error. A box must lie inside the ``<size>`` of its image: an error by default, clipped to it
with ``clip=True``. Every malformed file raises `AnnotationError` naming the file and element.

Shape key:
    G  objects in one image
    K  foreground classes (20 for VOC)
"""
from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from pathlib import Path

import torch

from .download import download_file, extract_tar
from .errors import AnnotationError
from .image_io import load_image, save_image
from .shapes import CLASSES
from .targets import check_target

__all__ = ["VOC_CLASSES", "VOCDataset", "write_voc", "read_voc_annotation", "download_voc"]

VOC_CLASSES = ("__background__", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car",
               "cat", "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person",
               "pottedplant", "sheep", "sofa", "train", "tvmonitor")


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


def _object_xml(parent, name, box, difficult, round_coords) -> None:
    obj = ET.SubElement(parent, "object")
    for tag, text in (("name", name), ("pose", "Unspecified"), ("truncated", "0"),
                      ("difficult", str(int(difficult)))):
        ET.SubElement(obj, tag).text = text
    x1, y1, x2, y2 = (float(v) for v in box)
    if round_coords:
        x1, y1 = round(x1), round(y1)
        x2, y2 = max(round(x2), x1 + 1), max(round(y2), y1 + 1)
    bnd = ET.SubElement(obj, "bndbox")
    for tag, v in (("xmin", x1 + 1), ("ymin", y1 + 1), ("xmax", x2), ("ymax", y2)):
        ET.SubElement(bnd, tag).text = _fmt(v)


def _annotation_xml(filename, size, target, class_names, round_coords) -> ET.ElementTree:
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC"
    ET.SubElement(root, "filename").text = filename
    ET.SubElement(ET.SubElement(root, "source"), "database").text = "frcnn_edu"
    sz = ET.SubElement(root, "size")
    for tag, v in (("width", size[1]), ("height", size[0]), ("depth", 3)):
        ET.SubElement(sz, tag).text = str(v)
    ET.SubElement(root, "segmented").text = "0"
    difficult = target.get("difficult", torch.zeros(len(target["labels"]), dtype=torch.bool))
    for box, label, diff in zip(target["boxes"], target["labels"].tolist(), difficult.tolist()):
        _object_xml(root, class_names[label], box, diff, round_coords)
    ET.indent(root)
    return ET.ElementTree(root)


def write_voc(items, root, class_names=CLASSES, split="train", image_format="jpg",
              round_coords=True, prefix=None, jpeg_quality=95) -> list:
    """Write (image, target) items (e.g. a ``ShapesDataset``) as a VOC folder at `root`.

    Image ids are ``f"{prefix}{i:06d}"`` (prefix defaults to ``f"{split}_"``, so several splits
    can share one folder); ``ImageSets/Main/<split>.txt`` lists them. With ``round_coords``
    (VOC's own integer pixels) boxes are rounded to whole pixels; otherwise they are written
    exactly as decimals. `jpeg_quality` (1-95) trades file size for fidelity. Returns the ids.
    """
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    root, prefix = Path(root), f"{split}_" if prefix is None else prefix
    ids = []
    for i, (image, target) in enumerate(items):
        check_target(target, num_classes=len(class_names), name=f"target of item {i}")
        ids.append(f"{prefix}{i:06d}")
        filename = f"{ids[-1]}.{image_format}"
        size = save_image(image, root / "JPEGImages" / filename, quality=jpeg_quality)
        tree = _annotation_xml(filename, size, target, class_names, round_coords)
        (root / "Annotations").mkdir(parents=True, exist_ok=True)
        tree.write(root / "Annotations" / f"{ids[-1]}.xml", encoding="utf-8")
    sets = root / "ImageSets" / "Main"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return ids


def _parse(path):
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise AnnotationError(path, "XML", f"not well-formed ({e}); expected a VOC <annotation> "
                              "file") from None
    if root.tag != "annotation":
        raise AnnotationError(path, f"<{root.tag}>", "expected the root element <annotation>")
    return root


def _number(path, element, tag, where):
    text = element.findtext(tag)
    if text is None:
        raise AnnotationError(path, f"{where}/<{tag}>", "missing; expected a number")
    try:
        return float(text)
    except ValueError:
        raise AnnotationError(path, f"{where}/<{tag}>", f"is {text!r}; expected a number") from None


def _difficult(path, obj, where):
    """The devkit's flag: "1" or "0"; a missing <difficult> is 0 (VOC 2012 test omits it)."""
    text = obj.findtext("difficult")
    if text is None:
        return False
    if text.strip() not in ("0", "1"):
        raise AnnotationError(path, f"{where}/<difficult>", f"is {text!r}; expected 1 or 0")
    return text.strip() == "1"


def _image_size(path, root):
    size = root.find("size")
    if size is None:
        return None
    hw = tuple(_number(path, size, tag, "<size>") for tag in ("height", "width"))
    if min(hw) <= 0:
        raise AnnotationError(path, "<size>", f"height and width are {hw}; expected positive numbers")
    return tuple(int(v) for v in hw)


def read_voc_annotation(path, class_names=VOC_CLASSES, keep_difficult=True, clip=False) -> dict:
    """Parse one VOC XML file -> dict(boxes float32 [G, 4], labels int64 [G], difficult bool [G],
    filename str, size (H, W)). A malformed file (bad XML, a missing <bndbox> or coordinate, a
    coordinate that is not a number, an unknown class name, a degenerate box, a box outside
    <size> unless ``clip``) raises `AnnotationError` naming the file and the element."""
    root = _parse(path)
    hw = _image_size(path, root)
    boxes, labels, difficult = [], [], []
    for j, obj in enumerate(root.iter("object")):
        name = obj.findtext("name", "").strip()
        where = f"<object> {j} ({name or 'no name'})"
        if name not in class_names:
            raise AnnotationError(path, f"{where}/<name>", f"{name!r} is not in class_names "
                                  f"({len(class_names) - 1} classes); pass the right class_names")
        diff = _difficult(path, obj, where)
        if diff and not keep_difficult:
            continue
        bnd = obj.find("bndbox")
        if bnd is None:
            raise AnnotationError(path, f"{where}/<bndbox>", "missing; expected <bndbox> with "
                                  "xmin, ymin, xmax, ymax")
        xmin, ymin, xmax, ymax = (_number(path, bnd, t, f"{where}/<bndbox>")
                                  for t in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append([xmin - 1, ymin - 1, xmax, ymax])
        labels.append(class_names.index(name))
        difficult.append(diff)
    target = dict(boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                  labels=torch.tensor(labels, dtype=torch.int64),
                  difficult=torch.tensor(difficult, dtype=torch.bool))
    try:  # without <size>, only negative coordinates can be told to lie outside
        target = check_target(target, image_size=hw or (math.inf, math.inf),
                              num_classes=len(class_names), name="objects", clip=clip)
    except ValueError as e:
        raise AnnotationError(path, "<object>", str(e)) from None
    return dict(target, filename=root.findtext("filename"), size=hw)


class VOCDataset(torch.utils.data.Dataset):
    """A VOC year folder (``VOCdevkit/VOC2007``) or one written by `write_voc`.

    Item: (image float32 [3, H, W] in [0, 1], target dict(boxes, labels, difficult bool [G],
    image_id int64 = index)). ``get_annotation(i)`` gives the target without reading the image.
    """

    def __init__(self, root, split="trainval", class_names=VOC_CLASSES, transforms=None,
                 keep_difficult=True, clip=False):
        self.root = Path(root)
        listing = self.root / "ImageSets" / "Main" / f"{split}.txt"
        if not listing.is_file():
            raise FileNotFoundError(f"no image list {listing}: root must be a VOC year folder "
                                    "(e.g. VOCdevkit/VOC2007; see download_voc) and split one "
                                    "of its ImageSets/Main files")
        self.ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
        self.classes, self.num_classes = tuple(class_names), len(class_names)
        self.split, self.transforms, self.keep_difficult = split, transforms, keep_difficult
        self.clip = clip  # clip boxes to <size> instead of refusing them (read_voc_annotation)

    def __len__(self) -> int:
        return len(self.ids)

    def get_annotation(self, index: int) -> dict:
        ann = read_voc_annotation(self.root / "Annotations" / f"{self.ids[index]}.xml",
                                  self.classes, self.keep_difficult, self.clip)
        ann["image_id"] = torch.tensor(index % len(self), dtype=torch.int64)
        return ann

    def __getitem__(self, index: int):
        ann = self.get_annotation(index)
        image = load_image(self.root / "JPEGImages" / (ann.pop("filename") or f"{self.ids[index]}.jpg"))
        ann.pop("size")
        if self.transforms is not None:
            image, ann = self.transforms(image, ann)
        return image, ann


# (url, md5) of each archive; the MD5 sums are the ones torchvision's VOC datasets check
VOC_URLS = {
    "2007": [("https://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtrainval_06-Nov-2007.tar",
              "c52e279531787c972589f7e41ab4ae64"),
             ("https://host.robots.ox.ac.uk/pascal/VOC/voc2007/VOCtest_06-Nov-2007.tar",
              "b6e924de25625d8de591ea690078ad9f")],
    "2012": [("https://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar",
              "6cd6e144f989b92b3379bac3b3de84fd")],
}


def download_voc(root="data/downloads", year="2007") -> Path:
    """Opt-in download (about 900 MB for 2007) and extraction; never called by the library.

    Each archive comes over https, its MD5 sum is checked (a mismatch deletes nothing and raises
    ValueError), and it is extracted with a filter that refuses absolute paths, `..` and links
    out of `root` (`download.extract_tar`). Returns the year folder ``root/VOCdevkit/VOC<year>``
    to pass to `VOCDataset`.
    """
    if year not in VOC_URLS:
        raise ValueError(f"year must be one of {sorted(VOC_URLS)}, got {year!r}")
    root = Path(root)
    for url, md5 in VOC_URLS[year]:
        extract_tar(download_file(url, root, md5=md5), root)
    return root / "VOCdevkit" / f"VOC{year}"
