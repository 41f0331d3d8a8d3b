"""The tree-crown photographs shipped with the package (lesson 08): where they are, how to open.

    from frcnn_edu.data import tree_crowns_root, tree_crowns
    tree_crowns_root()            # the VOC folder inside the installed package
    tree_crowns("train")          # VOCDataset of the training tiles, one class "tree"
    python -m frcnn_edu train --data treecrowns --color-jitter 0.3 --hue 0.05 --out runs/trees

Aerial RGB tiles of about 400 x 400 pixels with a box on every tree crown, made from DeepForest's
example data (MIT licence; NEON photographs) by tools/make_treecrowns.py. Splits: "train" and
"test" are two photographs of the same site 13 km apart (no tile of one overlaps the other),
"othersites" two photographs of other forests. Crowns cut by a tile edge follow
`frcnn_edu.data.tiling`'s rule (kept, clipped; difficult when under half is inside).
The folder's README.md has the counts, the licence and the attribution.

Shape key: none (see `voc`).
"""
from __future__ import annotations

from pathlib import Path

from .voc import VOCDataset

__all__ = ["TREE_CLASSES", "TREE_SPLITS", "tree_crowns_root", "tree_crowns"]

TREE_CLASSES = ("__background__", "tree")
TREE_SPLITS = ("train", "test", "othersites")


def tree_crowns_root() -> Path:
    """The tree-crown VOC folder that ships inside the package (no download)."""
    root = Path(__file__).resolve().parent.parent / "assets" / "treecrowns"
    if not (root / "ImageSets" / "Main" / "train.txt").is_file():
        raise FileNotFoundError(f"{root} is missing or incomplete: reinstall frcnn_edu, or "
                                "regenerate it with tools/make_treecrowns.py --wheel "
                                "deepforest-2.1.0-py3-none-any.whl")
    return root


def tree_crowns(split: str = "train", transforms=None) -> VOCDataset:
    """The tiles of one split ("train", "test" or "othersites") as a `VOCDataset`."""
    if split not in TREE_SPLITS:
        raise ValueError(f"split must be one of {TREE_SPLITS}, got {split!r}")
    return VOCDataset(tree_crowns_root(), split, class_names=TREE_CLASSES, transforms=transforms)
