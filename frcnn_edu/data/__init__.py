"""Datasets, transforms and file formats for detection (targets in torchvision's format).

    from frcnn_edu.data import ShapesDataset, CLASSES, collate_fn

``ShapesDataset`` draws the synthetic shapes images (no download); ``transforms`` holds the flip
and the papers' shorter-side resize; ``voc``, ``coco`` and ``pennfudan`` read and write real
formats (downloads only through the explicit ``download_*`` functions: https, a checksum, safe
extraction; see ``download``). A malformed annotation file raises ``AnnotationError``.
``spec`` opens a dataset named in one string (the command line's ``--data voc:ROOT``) after
checking its folder; ``export`` writes any dataset as a VOC or COCO folder (PNG, exact boxes).
``treecrowns`` opens the aerial photographs of tree crowns that ship with the package (lesson
08; ``tree_crowns_root()`` is their VOC folder), cut into tiles by ``tiling``.
``batching`` pads images into one normalised batch and checks them; ``targets`` checks targets.
"""
from .coco import COCODataset, CocoAnnotations, read_coco, write_coco
from .errors import AnnotationError
from .export import export_coco, export_voc
from .pennfudan import PENNFUDAN_CLASSES, PennFudanDataset, download_pennfudan
from .shapes import CLASSES, ShapesDataset, render_shapes_image
from .targets import check_target, collate_fn
from .transforms import (ColorJitter, Compose, RandomHorizontalFlip, RandomRotate90,
                         RandomVerticalFlip, ResizeShorterSide, aerial_augmentation)
from .spec import DataError, held_out_spec, open_dataset, parse_data_spec
from .voc import VOC_CLASSES, VOCDataset, download_voc, read_voc_annotation, write_voc
from .tiling import boxes_in_window, tile_annotations, tile_grid
from .treecrowns import TREE_CLASSES, tree_crowns, tree_crowns_root

__all__ = [
    "CLASSES", "ShapesDataset", "render_shapes_image", "check_target", "collate_fn",
    "Compose", "RandomHorizontalFlip", "ResizeShorterSide", "RandomVerticalFlip", "RandomRotate90",
    "ColorJitter", "aerial_augmentation",
    "VOC_CLASSES", "VOCDataset", "write_voc", "read_voc_annotation", "download_voc",
    "COCODataset", "CocoAnnotations", "read_coco", "write_coco",
    "PENNFUDAN_CLASSES", "PennFudanDataset", "download_pennfudan", "AnnotationError",
    "export_voc", "export_coco", "open_dataset", "parse_data_spec", "held_out_spec", "DataError",
    "tile_grid", "boxes_in_window", "tile_annotations", "TREE_CLASSES", "tree_crowns",
    "tree_crowns_root",
]
