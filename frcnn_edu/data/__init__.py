"""Datasets, transforms and file formats for detection (targets in torchvision's format).

    from frcnn_edu.data import ShapesDataset, CLASSES, collate_fn

``ShapesDataset`` draws the synthetic shapes images (no download); ``transforms`` holds flips
and the papers' shorter-side resize; ``voc``/``coco``/``pennfudan`` read and write real formats.
"""
from .shapes import CLASSES, ShapesDataset, render_shapes_image
from .targets import check_target, collate_fn

__all__ = ["CLASSES", "ShapesDataset", "render_shapes_image", "check_target", "collate_fn"]
