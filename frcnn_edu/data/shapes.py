"""Synthetic shapes: a small detection dataset generated in code (stands in for PASCAL VOC).

The papers train on PASCAL VOC (R-CNN sec. 3, Fast R-CNN sec. 4, Faster R-CNN sec. 4.1). Here
every image is drawn on the fly, deterministically from ``(seed, split, index)``, so a lesson
runs on a 2-core CPU in minutes and no download is needed. What makes it a detection problem:

* five shape families (a class is a family; its aspect ratio and colour vary, so neither size
  nor colour gives the class away), filled or outlined;
* objects from about 12 px to about 96 px (sqrt of the box area, log-uniform) and from wide
  (w/h = 3) to tall (h/w = 3), so anchor scales and ratios matter (Faster R-CNN sec. 3.1.1);
* 1 to 5 objects per image, later ones drawn over earlier ones (partial occlusion; a placement
  that would hide more than 40% of the pixels of an earlier object, or whose box would overlap
  another with IoU > 0.3, is rejected);
* optionally (``crowded=True``) crowded scenes: 4 to 9 objects, most of them placed next to or
  over an earlier object of the same class, boxes overlapping up to IoU 0.7 (see ``CROWDED``);
* unlabelled distractors (lines, blobs, scribbles) under the objects;
* backgrounds: tinted, contrast-reduced crops of the brick, grass and gravel photographs that
  ship inside scikit-image, or plain / gradient colours with noise.

The ground-truth box is the full extent of the drawn shape, ``(x1, y1, x2, y2)`` in pixels with
width ``x2 - x1`` (pixel ``i`` covers ``[i, i + 1)``), at 1/16 px precision.

Instance masks (``masks=True``, for Mask R-CNN): the mask of an object is the set of pixels it
paints, drawn without anti-aliasing (``cv2.LINE_8``, the same path as in the image), less the
pixels that later objects paint over it: the part of an object hidden by another is not in its
mask, and every pixel belongs to at most one mask. The image itself is drawn anti-aliased, so
an edge pixel the image blends half-and-half may or may not be in the mask. A mask's pixel
extent lies within its box grown by 1 px on each side (the box is the anti-aliased extent at
1/16 px, the mask is whole pixels), and it can be smaller where a later object hides an edge.

Shape key:
    H, W  image height and width
    G     ground-truth objects in one image
    K     foreground classes (5); labels are 1..K, 0 is background
"""
from __future__ import annotations

import functools

import cv2
import numpy as np
import torch

from ..boxes import box_iou

CLASSES = ("__background__", "ellipse", "rectangle", "triangle", "star", "cross")
SPLITS = {"train": 0, "val": 1, "test": 2}
DEFAULT_NUM_IMAGES = {"train": 1000, "val": 200, "test": 200}

_SHIFT = 4  # cv2 drawing with 4 fractional bits: coordinates in 1/16 px
_ONE = 1 << _SHIFT

#: Layout of an ordinary image: the defaults of the four layout arguments left at None.
SPARSE = dict(min_objects=1, max_objects=5, max_cover=0.4, max_box_iou=0.3)
#: Layout of a crowded image (``crowded=True``): more objects, boxes overlapping up to IoU 0.7
#: (so per-class NMS at 0.3 or 0.5 removes true neighbours), at most half of an object hidden.
CROWDED = dict(min_objects=4, max_objects=9, max_cover=0.5, max_box_iou=0.7)
#: In a crowded image, the chance that an object joins an earlier one (same class, about the
#: same size and shape, its centre shifted by at most `_NEIGHBOUR_SHIFT` of that object's size).
_NEIGHBOUR_PROB = 0.7
_NEIGHBOUR_SHIFT = 0.4


# ----------------------------------------------------------------------------- shape outlines
def _unit_polygon(rng: np.random.Generator, label: int) -> np.ndarray:
    """Polygon [V, 2] (x, y) of class `label` whose bounding box is exactly [0, 1] x [0, 1]."""
    name = CLASSES[label]
    if name == "ellipse":
        t = np.linspace(0.0, 2.0 * np.pi, 48, endpoint=False)  # 48 = 4 * 12 hits the extremes
        return np.stack([0.5 + 0.5 * np.cos(t), 0.5 + 0.5 * np.sin(t)], 1)
    if name == "rectangle":
        return np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
    if name == "triangle":
        apex = rng.uniform(0.2, 0.8)
        poly = np.array([[apex, 0.0], [1.0, 1.0], [0.0, 1.0]])
    elif name == "star":
        inner = rng.uniform(0.38, 0.5)
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, inner)
        poly = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    elif name == "cross":
        a = rng.uniform(0.25, 0.42)  # arm thickness as a fraction of the extent
        lo, hi = 0.5 - a / 2, 0.5 + a / 2
        poly = np.array([[lo, 0], [hi, 0], [hi, lo], [1, lo], [1, hi], [hi, hi], [hi, 1],
                         [lo, 1], [lo, hi], [0, hi], [0, lo], [lo, lo]], dtype=np.float64)
    else:  # pragma: no cover - CLASSES and this function change together
        raise ValueError(f"label must be in 1..{len(CLASSES) - 1}, got {label}")
    return _random_orientation(rng, poly)


def _random_orientation(rng: np.random.Generator, poly: np.ndarray) -> np.ndarray:
    """Normalise to the unit box, then flip / transpose (pointing up, down, left or right)."""
    poly = (poly - poly.min(0)) / (poly.max(0) - poly.min(0))
    if rng.random() < 0.5:
        poly = poly[:, ::-1]  # transpose: up <-> left
    if rng.random() < 0.5:
        poly = 1.0 - poly  # point reflection: up <-> down
    return np.ascontiguousarray(poly)


# ----------------------------------------------------------------------------- backgrounds
@functools.lru_cache(maxsize=1)
def _textures() -> tuple:
    """The three scikit-image photographs, standardised (mean 0, std 1), loaded once per process."""
    import skimage.data

    out = []
    for load in (skimage.data.brick, skimage.data.grass, skimage.data.gravel):
        g = load().astype(np.float32)
        out.append((g - g.mean()) / g.std())
    return tuple(out)


@functools.lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed [512, 512, 3] standard-normal field; random crops of it serve as pixel noise."""
    return np.random.default_rng(12345).standard_normal((512, 512, 3), dtype=np.float32)


def _noise(rng: np.random.Generator, h: int, w: int, channels: int = 3) -> np.ndarray:
    """float32 [H, W, channels] unit Gaussian noise: a random crop of the fixed noise bank."""
    bank = _noise_bank()
    if h > bank.shape[0] or w > bank.shape[1]:
        return rng.standard_normal((h, w, channels), dtype=np.float32)
    y0, x0 = rng.integers(bank.shape[0] - h + 1), rng.integers(bank.shape[1] - w + 1)
    return bank[y0:y0 + h, x0:x0 + w, :channels]


def _texture_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random crop of a texture, rescaled, tinted and contrast-reduced: float32 [H, W, 3]."""
    tex = _textures()[rng.integers(3)]
    zoom = rng.uniform(0.6, 1.6)
    ch, cw = min(int(h * zoom), tex.shape[0]), min(int(w * zoom), tex.shape[1])
    y0, x0 = rng.integers(tex.shape[0] - ch + 1), rng.integers(tex.shape[1] - cw + 1)
    crop = tex[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < 0.5:
        crop = crop.T
    crop = cv2.resize(np.ascontiguousarray(crop), (w, h), interpolation=cv2.INTER_LINEAR)
    base = rng.uniform(50, 205, size=3).astype(np.float32)
    amp = rng.uniform(12, 32) * rng.uniform(0.7, 1.0, size=3).astype(np.float32)
    return base + crop[:, :, None] * amp


def _plain_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A flat colour or a linear gradient between two colours: float32 [H, W, 3]."""
    c0 = rng.uniform(20, 235, size=3).astype(np.float32)
    if rng.random() < 0.5:
        return np.full((h, w, 3), c0, dtype=np.float32)
    c1 = np.clip(c0 + rng.uniform(-70, 70, size=3), 0, 255).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = np.cos(angle) * xx / w + np.sin(angle) * yy / h
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return c0 + t[:, :, None] * (c1 - c0)


def _background(rng: np.random.Generator, h: int, w: int, texture_prob: float) -> np.ndarray:
    """uint8 [H, W, 3] background: texture with probability `texture_prob`, else plain + noise."""
    if rng.random() < texture_prob:
        img = _texture_background(rng, h, w)
    else:
        img = _plain_background(rng, h, w)
        sigma = rng.uniform(0, 10)
        img = img + sigma * _noise(rng, h, w, 1)
    return np.ascontiguousarray(np.clip(img, 0, 255), dtype=np.uint8)


# ----------------------------------------------------------------------------- drawing
def _to_cv(points: np.ndarray) -> np.ndarray:
    """Pixel-area coordinates (pixel i covers [i, i+1)) -> cv2 fixed-point (centres at integers)."""
    return np.round((points - 0.5) * _ONE).astype(np.int32)


def _draw_distractors(rng: np.random.Generator, img: np.ndarray, max_count: int) -> None:
    """Unlabelled clutter drawn in place: straight lines, small blobs and random-walk scribbles."""
    h, w = img.shape[:2]
    for _ in range(rng.integers(0, max_count + 1)):
        color = tuple(int(c) for c in rng.integers(0, 256, size=3))
        kind = rng.integers(3)
        if kind == 0:  # line
            p = _to_cv(rng.uniform([0, 0, 0, 0], [w, h, w, h]).reshape(2, 2))
            cv2.line(img, tuple(p[0]), tuple(p[1]), color, int(rng.integers(1, 3)),
                     cv2.LINE_AA, _SHIFT)
        elif kind == 1:  # blob, smaller than the smallest object
            c = _to_cv(rng.uniform([0, 0], [w, h]))
            cv2.circle(img, tuple(c), int(rng.uniform(1.5, 3.5) * _ONE), color, -1,
                       cv2.LINE_AA, _SHIFT)
        else:  # scribble
            steps = rng.normal(0, 8, size=(int(rng.integers(3, 8)), 2))
            pts = np.cumsum(steps, 0) + rng.uniform([0, 0], [w, h])
            cv2.polylines(img, [_to_cv(pts)], False, color, int(rng.integers(1, 3)),
                          cv2.LINE_AA, _SHIFT)


def _object_color(rng: np.random.Generator, img: np.ndarray, box: np.ndarray) -> tuple:
    """A random colour that stands out from the background under `box` (class-independent)."""
    x1, y1, x2, y2 = np.floor(box).astype(int)
    local = img[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)].reshape(-1, 3).mean(0)
    best, best_dist = None, -1.0
    for _ in range(12):
        color = rng.integers(0, 256, size=3)
        dist = float(np.linalg.norm(color - local))
        if dist > best_dist:
            best, best_dist = color, dist
        if dist >= 110:
            break
    return tuple(int(c) for c in best)


def _draw_path(img: np.ndarray, pts: np.ndarray, thick: int, color, line_type) -> None:
    """Fill the polygon `pts` (cv2 fixed point) or, if thick > 0, stroke its outline."""
    if thick > 0:
        cv2.polylines(img, [pts], True, color, thick, line_type, _SHIFT)
    else:
        cv2.fillPoly(img, [pts], color, line_type, _SHIFT)


# ----------------------------------------------------------------------------- layout
def _sample_box(rng, h: int, w: int, scale_range, ratio_range) -> np.ndarray | None:
    """A box [4] with log-uniform scale sqrt(w*h) and ratio h/w, inside the image; None if too big."""
    scale = np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1])))
    ratio = np.exp(rng.uniform(np.log(ratio_range[0]), np.log(ratio_range[1])))
    bw, bh = scale / np.sqrt(ratio), scale * np.sqrt(ratio)
    if bw > 0.95 * w or bh > 0.95 * h or min(bw, bh) < 7:
        return None
    x1, y1 = rng.uniform(0, w - bw), rng.uniform(0, h - bh)
    box = np.array([x1, y1, x1 + bw, y1 + bh])
    return np.round(box * _ONE) / _ONE  # the 1/16 px grid cv2 draws on


def _object_path(rng, poly: np.ndarray, box: np.ndarray, outline_prob: float):
    """(cv2 points, stroke thickness or 0 for filled) so that the drawing's extent is `box`.

    cv2 paints about half a pixel past a filled polygon's edge and thick/2 + 1 px past a
    stroke's path (measured on anti-aliased drawings at 50% coverage), so the path is inset by
    that much and the painted extent matches the box to within a pixel.
    """
    size = box[2:] - box[:2]
    if min(size) >= 18 and rng.random() < outline_prob:
        thick = int(rng.integers(2, max(3, int(min(size) / 8)) + 1))
        inset = thick / 2 + 1.0
    else:
        thick, inset = 0, 0.5
    return _to_cv(box[:2] + inset + poly * (size - 2 * inset)), thick


def _object_mask(pts: np.ndarray, thick: int, box: np.ndarray, h: int, w: int):
    """(window slices, bool mask) of the pixels the object paints (no anti-aliasing)."""
    x1, y1 = max(int(box[0]) - 1, 0), max(int(box[1]) - 1, 0)
    x2, y2 = min(int(np.ceil(box[2])) + 1, w), min(int(np.ceil(box[3])) + 1, h)
    window = np.zeros((y2 - y1, x2 - x1), dtype=np.uint8)
    _draw_path(window, pts - np.array([x1, y1], dtype=np.int32) * _ONE, thick, 1, cv2.LINE_8)
    return (slice(y1, y2), slice(x1, x2)), window.astype(bool)


def _box_iou_max(box: np.ndarray, boxes: list) -> float:
    """Largest IoU between `box` [4] and the earlier `boxes` (0 if there are none), by
    `boxes.box_iou` in float64 (the same operations as a NumPy formula, so the same images)."""
    if not boxes:
        return 0.0
    return float(box_iou(torch.from_numpy(np.asarray(box)[None]),
                         torch.from_numpy(np.asarray(boxes))).max())


def _try_place(owner, visible, total, pts, thick, box, max_cover) -> int:
    """Paint the object into the owner map unless it would hide more than `max_cover` of the
    pixels of an earlier object (`visible` counts each object's still-visible pixels, `total`
    its painted pixels). Returns the object's pixel count, 0 if rejected."""
    window, mask = _object_mask(pts, thick, box, *owner.shape)
    under = owner[window][mask]
    hidden = np.bincount(under[under >= 0], minlength=len(visible))
    if not mask.any() or np.any(visible - hidden < (1.0 - max_cover) * total):
        return 0
    visible -= hidden
    owner[window][mask] = len(visible)
    return int(mask.sum())


def _sample_neighbour(rng, anchor: np.ndarray, h: int, w: int, scale_range,
                      ratio_range) -> np.ndarray | None:
    """A box [4] next to or over `anchor` [4]: scale and ratio within a factor e^(1/3) of the
    anchor's (kept in `scale_range` and `ratio_range`, so a chain of neighbours cannot drift
    out of them), centre shifted by up to `_NEIGHBOUR_SHIFT` times the anchor's width and
    height; None if it would leave the image or be too thin."""
    size = anchor[2:] - anchor[:2]
    scale = np.clip(np.sqrt(size[0] * size[1]) * np.exp(rng.uniform(-1 / 3, 1 / 3)), *scale_range)
    ratio = np.clip(size[1] / size[0] * np.exp(rng.uniform(-1 / 3, 1 / 3)), *ratio_range)
    bw, bh = scale / np.sqrt(ratio), scale * np.sqrt(ratio)
    ctr = (anchor[:2] + anchor[2:]) / 2 + rng.uniform(-_NEIGHBOUR_SHIFT, _NEIGHBOUR_SHIFT, 2) * size
    box = np.array([ctr[0] - bw / 2, ctr[1] - bh / 2, ctr[0] + bw / 2, ctr[1] + bh / 2])
    if min(bw, bh) < 7 or box[0] < 0 or box[1] < 0 or box[2] > w or box[3] > h:
        return None
    return np.round(box * _ONE) / _ONE


def _place_one(rng, img, owner, scene: dict, label, sample, opts) -> None:
    """Try (30 times) to place one object of class `label` with boxes from `sample()`; on
    success draw it and append it to `scene` (boxes, labels, visible and total pixel counts)."""
    poly = _unit_polygon(rng, int(label))
    for _attempt in range(30):
        box = sample()
        if box is None or _box_iou_max(box, scene["boxes"]) > opts["max_box_iou"]:
            continue
        pts, thick = _object_path(rng, poly, box, opts["outline_prob"])
        count = _try_place(owner, scene["visible"], scene["total"], pts, thick, box,
                           opts["max_cover"])
        if count:
            _draw_path(img, pts, thick, _object_color(rng, img, box), cv2.LINE_AA)
            scene["visible"] = np.append(scene["visible"], count)
            scene["total"] = np.append(scene["total"], count)
            scene["boxes"].append(box)
            scene["labels"].append(label)
            return


def _place_objects(rng, img, count: int, crowded: bool, opts) -> dict:
    """Place and draw `count` objects one by one; returns dict(boxes, labels, visible, total).

    Ordinary images draw all the classes first and place each object anywhere. In a crowded
    image each object after the first joins an earlier one with probability `_NEIGHBOUR_PROB`
    (a crowd of one kind: it takes that object's class), otherwise it is placed anywhere.
    """
    h, w = img.shape[:2]
    owner = np.full((h, w), -1, dtype=np.int16)
    scene = dict(boxes=[], labels=[], visible=np.zeros(0), total=np.zeros(0), owner=owner)
    anywhere = functools.partial(_sample_box, rng, h, w, opts["scale_range"], opts["ratio_range"])
    if not crowded:
        for label in rng.integers(1, len(CLASSES), size=count):
            _place_one(rng, img, owner, scene, label, anywhere, opts)
        return scene
    for _ in range(count):
        if scene["boxes"] and rng.random() < _NEIGHBOUR_PROB:
            j = int(rng.integers(len(scene["boxes"])))
            anchor, label = scene["boxes"][j], scene["labels"][j]
            sample = functools.partial(_sample_neighbour, rng, anchor, h, w, opts["scale_range"],
                                       opts["ratio_range"])
        else:
            label, sample = rng.integers(1, len(CLASSES)), anywhere
        _place_one(rng, img, owner, scene, label, sample, opts)
    return scene


def _layout(crowded: bool, **given) -> dict:
    """The four layout arguments: those given (not None), else SPARSE's or CROWDED's values."""
    if not isinstance(crowded, bool):
        raise ValueError(f"crowded must be True or False, got {crowded!r}")
    defaults = CROWDED if crowded else SPARSE
    out = {k: defaults[k] if given[k] is None else given[k] for k in defaults}
    if not 1 <= out["min_objects"] <= out["max_objects"]:
        raise ValueError("need 1 <= min_objects <= max_objects, got "
                         f"{out['min_objects']}, {out['max_objects']}")
    if not (0 <= out["max_cover"] < 1 and 0 < out["max_box_iou"] <= 1):
        raise ValueError("need 0 <= max_cover < 1 and 0 < max_box_iou <= 1, got "
                         f"{out['max_cover']}, {out['max_box_iou']}")
    return out


def render_shapes_image(rng: np.random.Generator, image_size=(160, 160), *, crowded=False,
                        min_objects=None, max_objects=None, scale_range=(12.0, 96.0),
                        ratio_range=(1 / 3, 3.0), max_cover=None, max_box_iou=None,
                        texture_prob=0.6, outline_prob=0.3, max_distractors=6):
    """Draw one image; returns dict(image uint8 [H, W, 3] RGB, boxes float32 [G, 4],
    labels int64 [G], visible float32 [G]: the fraction of each object's pixels left visible,
    owner int16 [H, W]: the index of the object that paints each pixel, -1 for none; see
    `instance_masks`).

    Objects are listed in drawing order (a later object may occlude an earlier one, but never
    hides more than `max_cover` of its pixels), and no two boxes overlap with IoU above
    `max_box_iou`. By default (``SPARSE``) that is 0.3, the per-class test-time NMS threshold of
    the R-CNN and py-faster-rcnn code, so that such NMS can keep every object. ``crowded=True``
    (``CROWDED``) places 4 to 9 objects, most next to or over an earlier one of the same class,
    up to IoU 0.7, so that NMS at 0.3 or 0.5 suppresses true neighbours. The four layout
    arguments left at None take the values of ``SPARSE`` or ``CROWDED``.
    """
    layout = _layout(crowded, min_objects=min_objects, max_objects=max_objects,
                     max_cover=max_cover, max_box_iou=max_box_iou)
    h, w = image_size
    img = _background(rng, h, w, texture_prob)
    _draw_distractors(rng, img, max_distractors)
    count = int(rng.integers(layout["min_objects"], layout["max_objects"] + 1))
    opts = dict(scale_range=scale_range, ratio_range=ratio_range, outline_prob=outline_prob,
                max_cover=layout["max_cover"], max_box_iou=layout["max_box_iou"])
    scene = _place_objects(rng, img, count, crowded, opts)
    if rng.random() < 0.5:  # sensor noise over everything
        noise = _noise(rng, h, w) * np.float32(rng.uniform(2, 8))
        img = np.clip(img + noise, 0, 255).astype(np.uint8)
    visible = scene["visible"] / np.maximum(scene["total"], 1)
    return dict(image=img, boxes=np.asarray(scene["boxes"], dtype=np.float32).reshape(-1, 4),
                labels=np.asarray(scene["labels"], dtype=np.int64),
                visible=visible.astype(np.float32), owner=scene["owner"])


def instance_masks(owner: np.ndarray, count: int) -> np.ndarray:
    """uint8 [G, H, W] instance masks from the owner map [H, W] of `render_shapes_image`:
    mask g holds the pixels object g paints and no later object covers."""
    return (owner[None] == np.arange(count, dtype=owner.dtype)[:, None, None]).astype(np.uint8)


# ----------------------------------------------------------------------------- dataset
class ShapesDataset(torch.utils.data.Dataset):
    """Synthetic detection dataset; item ``i`` is a pure function of ``(seed, split, i)``.

    Args:
        split: "train", "val" or "test" (different random streams, so no shared images).
        num_images: length; default 1000 / 200 / 200 for train / val / test.
        image_size: (H, W) of every image, default (160, 160).
        seed: the dataset seed; change it to get a different dataset.
        transforms: optional callable (image, target) -> (image, target), e.g. from
            ``frcnn_edu.data.transforms``; applied in ``__getitem__`` only.
        crowded: False (default): ordinary images, the data of the lessons. True: crowded
            scenes (``CROWDED``): 4 to 9 objects, most of them next to or over an earlier
            object of the same class, boxes overlapping up to IoU 0.7 and at most half of an
            object hidden, so that a low NMS threshold suppresses true neighbours.
        min_objects, max_objects: objects per image are drawn uniformly from this range
            (fewer when a placement fails 30 times: rare at the default sizes). None: 1 and 5
            (``SPARSE``), or 4 and 9 when crowded.
        scale_range: range of sqrt(box area) in pixels, sampled log-uniformly.
        ratio_range: range of h / w, sampled log-uniformly.
        max_cover: later objects may hide at most this fraction of an earlier object's pixels.
            None: 0.4, or 0.5 when crowded.
        max_box_iou: no two ground-truth boxes overlap with a higher IoU. None: 0.3, or 0.7
            when crowded.
        texture_prob: probability of a photographic texture background.
        outline_prob: probability that an object (at least 18 px on each side) is outlined.
        max_distractors: at most this many unlabelled lines / blobs / scribbles.
        masks: also give each object's instance mask, ``target["masks"]`` uint8 [G, H, W]
            (see the module's docstring). Off by default: the detectors do not need them.

    Item: ``(image float32 [3, H, W] in [0, 1], target)`` with target ``boxes`` float32 [G, 4]
    (x1, y1, x2, y2), ``labels`` int64 [G] in 1..K, ``image_id`` int64 scalar (= index),
    ``area`` float32 [G] (of the box) and ``iscrowd`` int64 [G] (zeros; for COCO-style
    evaluation), and with ``masks=True`` ``masks`` uint8 [G, H, W]. The image, boxes and labels
    do not depend on ``masks``.
    """

    classes = CLASSES
    num_classes = len(CLASSES)  # K + 1, background included

    def __init__(self, split="train", num_images=None, image_size=(160, 160), seed=0,
                 transforms=None, *, crowded=False, min_objects=None, max_objects=None,
                 scale_range=(12.0, 96.0), ratio_range=(1 / 3, 3.0), max_cover=None,
                 max_box_iou=None, texture_prob=0.6, outline_prob=0.3, max_distractors=6,
                 masks=False):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {tuple(SPLITS)}, got {split!r}")
        self.num_images = DEFAULT_NUM_IMAGES[split] if num_images is None else int(num_images)
        if self.num_images < 0:
            raise ValueError(f"num_images must be >= 0, got {num_images}")
        self.image_size = _check_image_size(image_size)
        layout = _layout(crowded, min_objects=min_objects, max_objects=max_objects,
                         max_cover=max_cover, max_box_iou=max_box_iou)
        self.split, self.seed, self.transforms, self.crowded = split, int(seed), transforms, crowded
        if not isinstance(masks, bool):
            raise ValueError(f"masks must be True or False, got {masks!r}")
        self.masks = masks
        self.options = dict(crowded=crowded, **layout, scale_range=tuple(scale_range),
                            ratio_range=tuple(ratio_range), texture_prob=texture_prob,
                            outline_prob=outline_prob, max_distractors=max_distractors)

    def __len__(self) -> int:
        return self.num_images

    def _rng(self, index: int):
        if not -self.num_images <= index < self.num_images:
            raise IndexError(f"index {index} out of range for {self.num_images} images")
        index = index % self.num_images
        return np.random.default_rng([self.seed, SPLITS[self.split], index]), index

    def generate(self, index: int) -> dict:
        """Numpy dict(image uint8 [H, W, 3], boxes, labels, visible) of item `index`, see
        ``render_shapes_image``; no transforms."""
        rng, _ = self._rng(index)
        return render_shapes_image(rng, self.image_size, **self.options)

    def get_raw(self, index: int) -> np.ndarray:
        """The uint8 [H, W, 3] RGB image of item `index`, without transforms (selective search)."""
        return self.generate(index)["image"]

    def get_target(self, index: int) -> dict:
        """The target of item `index` without transforms (cheap enough: the image is redrawn)."""
        return self._target(index, self.generate(index))

    def _target(self, index, d) -> dict:
        index = index % self.num_images
        boxes = torch.from_numpy(d["boxes"])
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        target = dict(boxes=boxes, labels=torch.from_numpy(d["labels"]),
                      image_id=torch.tensor(index, dtype=torch.int64), area=area,
                      iscrowd=torch.zeros(len(d["labels"]), dtype=torch.int64))
        if self.masks:
            target["masks"] = torch.from_numpy(instance_masks(d["owner"], len(d["labels"])))
        return target

    def __getitem__(self, index: int):
        d = self.generate(index)
        image = torch.from_numpy(d["image"]).permute(2, 0, 1).float().div_(255.0)
        target = self._target(index, d)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target

    def __repr__(self) -> str:
        crowded = ", crowded=True" if self.crowded else ""  # the default repr stays as it was
        crowded += ", masks=True" if self.masks else ""
        return (f"ShapesDataset(split={self.split!r}, num_images={self.num_images}, "
                f"image_size={self.image_size}, seed={self.seed}{crowded}, "
                f"classes={self.classes[1:]})")


def _check_image_size(image_size) -> tuple:
    try:
        h, w = (int(s) for s in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (height, width), got {image_size!r}") from None
    if h < 32 or w < 32:
        raise ValueError(f"image_size must be at least (32, 32), got {(h, w)}")
    return (h, w)
