"""The one error type of the annotation readers (VOC XML, COCO JSON, Penn-Fudan masks).

A malformed file (bad XML or JSON, a missing element or key, a value that is not a number, a box
outside its image) raises `AnnotationError`, a ValueError, whose message names the file, the
element or key, and what was expected; `except ValueError` keeps catching it.
"""

__all__ = ["AnnotationError"]


class AnnotationError(ValueError):
    """A malformed annotation file; the message reads ``<file>: <element or key>: <expected>``."""

    def __init__(self, path, where, expected):
        super().__init__(f"{path}: {where}: {expected}")
        self.path, self.where = path, where
