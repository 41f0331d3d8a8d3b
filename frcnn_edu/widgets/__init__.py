"""Interactive explorers for the lessons (ipywidgets, inline matplotlib backend).

Each explorer is built on a plain drawing function `draw_*(ax, ...)` that is tested directly;
the builder returns an `ipywidgets.interactive` (`explorer.explorer`), so a test can set
`w.children[i].value` and read `w.result`. Only core widgets are used (Colab ships
ipywidgets 7.7.1; `ipywidgets>=7.6` is required).
"""
from importlib import import_module

TOPICS = ("iou_nms", "roi_pooling", "anchor_labeling", "proposals", "detections", "masks")


def __getattr__(name):  # import each topic on first use (ipywidgets loads only when needed)
    if name in TOPICS:
        return import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
