"""Cutting large annotated photographs into tiles, and what happens to the objects on a cut.

Aerial photographs are thousands of pixels wide and hold hundreds of small objects. Resized to
the papers' 600-pixel scale a 2,400-pixel image would shrink its 20-pixel tree crowns to 5
pixels, smaller than one cell of a stride-8 feature map; so the image is cut into tiles that
the detector takes at their own scale (DeepForest, whose images lesson 08 uses, does the same
with 400-pixel windows).

The grid. An image of W x H pixels is cut into ``nx = max(1, round(W / tile))`` columns and
``ny`` rows (the same with H) of equal size, with whole-pixel edges: the tiles are about `tile`
pixels wide (0.75 to 1.5 times `tile` when W is at least one tile), never overlap and cover
every pixel, so no object is lost at the right or bottom border.

The rule for an object cut by a tile edge. Its box is clipped to every tile it overlaps (an
overlap of positive area) and the piece is kept in that tile, with

    visible = area(box clipped to the tile) / area(box)

* ``visible >= min_visible`` (default 0.5): an ordinary object of the tile;
* ``visible < min_visible``: kept, with its clipped box, flagged ``difficult``. VOC's metric
  ignores difficult objects (a detection on one is neither right nor wrong, missing it costs
  nothing), and training still sees them as objects, since their pixels are the object's.

No box is dropped: every box is in at least one tile, whole or in pieces. `tile_annotations`
counts the cut ones so that a tool can report them.

Shape key:
    G  objects of the whole image      G_t  objects (or pieces) of one tile
    T  tiles
"""
from __future__ import annotations

import torch

from ..boxes import box_area
from .targets import check_target

__all__ = ["tile_grid", "boxes_in_window", "tile_annotations", "crop_image"]


def _edges(length: int, tile: int) -> list:
    """Whole-pixel edges of round(length / tile) (at least 1) equal parts of [0, length]."""
    parts = max(1, round(length / tile))
    return [round(i * length / parts) for i in range(parts + 1)]


def tile_grid(height: int, width: int, tile: int) -> list:
    """The tiles of an image as windows (x1, y1, x2, y2) of whole pixels, row by row [T].

    ``tile_grid(1035, 1249, 400)`` -> 3 x 3 windows of 416-417 x 345 pixels; they partition
    the image (see the module docstring).
    """
    for name, value in (("height", height), ("width", width), ("tile", tile)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a whole number of pixels >= 1, got {value!r}")
    xs, ys = _edges(width, tile), _edges(height, tile)
    return [(x1, y1, x2, y2) for y1, y2 in zip(ys, ys[1:]) for x1, x2 in zip(xs, xs[1:])]


def boxes_in_window(boxes: torch.Tensor, window, min_visible: float = 0.5):
    """The objects of `boxes` [G, 4] that a window (x1, y1, x2, y2) shows, in the window's pixels.

    Returns (index [G_t] int64 into `boxes`, clipped boxes [G_t, 4] relative to the window's
    top-left corner, difficult [G_t] bool: less than `min_visible` of the box is inside).
    """
    if not 0.0 < min_visible <= 1.0:
        raise ValueError(f"min_visible is the share of a box's area that must lie inside a tile "
                         f"for it to count as a whole object, in (0, 1]; got {min_visible}")
    x1, y1, x2, y2 = (float(v) for v in window)
    lo = torch.tensor([x1, y1, x1, y1], dtype=boxes.dtype)
    hi = torch.tensor([x2, y2, x2, y2], dtype=boxes.dtype)
    clipped = torch.maximum(torch.minimum(boxes, hi), lo)
    inside = box_area(clipped)
    index = torch.nonzero(inside > 0).flatten()        # a positive overlap: the tile shows it
    visible = inside[index] / box_area(boxes[index])
    return index, clipped[index] - lo, visible < min_visible


def tile_annotations(target: dict, image_size, tile: int, min_visible: float = 0.5):
    """Cut one image's target into its tiles: [(window, tile target)] [T], and counts.

    `target` holds boxes [G, 4] and labels [G] (and optionally difficult [G], kept: a box
    difficult in the image stays difficult in every tile). Each tile target has boxes (in
    the tile's pixels), labels and difficult. The counts: {"boxes": G, "cut": boxes cut by a
    tile edge, "pieces_difficult": pieces flagged difficult by the rule, "empty_tiles": tiles
    without any object}. Every box lands in at least one tile (checked).
    """
    height, width = image_size
    target = check_target(target, image_size=(height, width), name="target")
    boxes, labels = target["boxes"], target["labels"]
    was_difficult = target.get("difficult", torch.zeros(len(boxes), dtype=torch.bool))
    tiles, seen = [], torch.zeros(len(boxes), dtype=torch.int64)
    counts = {"boxes": len(boxes), "cut": 0, "pieces_difficult": 0, "empty_tiles": 0}
    for window in tile_grid(height, width, tile):
        index, clipped, small = boxes_in_window(boxes, window, min_visible)
        seen[index] += 1
        counts["pieces_difficult"] += int(small.sum())
        counts["empty_tiles"] += int(len(index) == 0)
        tiles.append((window, dict(boxes=clipped, labels=labels[index],
                                   difficult=small | was_difficult[index])))
    assert bool((seen >= 1).all()), "the tiles partition the image, so each box is in one"
    counts["cut"] = int((seen > 1).sum())
    return tiles, counts


def crop_image(image: torch.Tensor, window) -> torch.Tensor:
    """The pixels [C, y2 - y1, x2 - x1] of a window (x1, y1, x2, y2) of an image [C, H, W]."""
    x1, y1, x2, y2 = (int(v) for v in window)
    return image[:, y1:y2, x1:x2]
