"""Drawing for the lessons: images, boxes, anchors and anchor labels (matplotlib).

Pictures of the papers' figures: boxes with class and score (Faster R-CNN fig. 5), anchors of
several scales and ratios at one position (fig. 3) and the anchor labels of sec. 3.1.2
(positive / negative / ignored). Every ``draw_*`` function takes a matplotlib ``ax`` first,
draws on it and returns it, so the widgets in ``frcnn_edu.widgets`` can reuse them and the tests
can count what was drawn: boxes are ``Rectangle`` patches in ``ax.patches``, anchors are one
``PatchCollection`` per group in ``ax.collections``.

Shape key:
    N     boxes to draw
    A     anchors
    H, W  image height and width
"""
from __future__ import annotations

import numpy as np
import torch
from matplotlib import patches as mpatches
from matplotlib.collections import PatchCollection
from matplotlib.colors import to_rgba

__all__ = ["ANCHOR_LABEL_COLORS", "label_color", "show_image", "draw_boxes", "draw_anchors",
           "draw_anchor_labels", "draw_masks", "show_detections", "show_samples"]

#: Okabe-Ito colours (readable with colour-blindness) for anchor labels 1 / 0 / -1.
ANCHOR_LABEL_COLORS = {1: "#009E73", 0: "#D55E00", -1: "#999999"}
_ANCHOR_LABEL_NAMES = {1: "positive", 0: "negative", -1: "ignored"}
_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
            "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#7f7f7f")


def label_color(label: int) -> str:
    """The colour used for class `label` (a fixed 10-colour cycle)."""
    return _PALETTE[int(label) % len(_PALETTE)]


def _to_numpy(x, name: str) -> np.ndarray:
    if torch.is_tensor(x):
        return x.detach().cpu().numpy()
    if isinstance(x, (np.ndarray, list, tuple)):
        return np.asarray(x)
    raise TypeError(f"{name} must be a tensor or a numpy array, got {type(x).__name__}")


def _as_boxes(boxes, name: str = "boxes") -> np.ndarray:
    """Any [N, 4] boxes (tensor, array, list) -> float64 numpy [N, 4]; ValueError otherwise."""
    arr = _to_numpy(boxes, name).astype(np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (x1, y1, x2, y2), got {list(arr.shape)}")
    return arr


def _image_to_hwc(image) -> np.ndarray:
    """Tensor [3, H, W] / [1, H, W] / [H, W] in [0, 1] or numpy H x W (x 3) -> H x W (x 3)."""
    arr = _to_numpy(image, "image")
    if torch.is_tensor(image) and arr.ndim == 3:
        arr = arr.transpose(1, 2, 0)  # tensors are channels-first
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)):
        raise ValueError("image must be a tensor [3, H, W] or an array H x W x 3, got shape "
                         f"{list(np.shape(image))}")
    if arr.dtype.kind == "f":
        arr = np.clip(arr, 0.0, 1.0)
    return arr


def show_image(ax, image, title: str | None = None):
    """Show a tensor [3, H, W] in [0, 1] or a uint8/float array H x W x 3, without axis ticks."""
    arr = _image_to_hwc(image)
    ax.imshow(arr, cmap="gray" if arr.ndim == 2 else None, interpolation="nearest")
    ax.set_axis_off()
    if title is not None:
        ax.set_title(title)
    return ax


def _text_color(background) -> str:
    """Black on light colours, white on dark ones (relative luminance)."""
    r, g, b, _ = to_rgba(background)
    return "black" if 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.6 else "white"


def _box_caption(i, labels, scores, class_names) -> str | None:
    parts = []
    if labels is not None:
        lab = int(labels[i])
        parts.append(class_names[lab] if class_names is not None and 0 <= lab < len(class_names)
                     else str(lab))
    if scores is not None:
        parts.append(f"{float(scores[i]):.2f}")
    return " ".join(parts) or None


def draw_boxes(ax, boxes, labels=None, scores=None, class_names=None, color=None,
               linewidth: float = 2.0, linestyle: str = "-", fontsize: float = 8,
               show_text: bool = True, alpha: float = 1.0):
    """Draw boxes [N, 4] as rectangles, coloured by label (or all in `color`), with captions.

    The caption is the class name (``class_names[label]``) and/or the score. Returns ax.
    """
    arr = _as_boxes(boxes)
    labels = None if labels is None else _to_numpy(labels, "labels").reshape(-1)
    scores = None if scores is None else _to_numpy(scores, "scores").reshape(-1)
    for name, v in (("labels", labels), ("scores", scores)):
        if v is not None and len(v) != len(arr):
            raise ValueError(f"{name} must have one entry per box ({len(arr)}), got {len(v)}")
    for i, (x1, y1, x2, y2) in enumerate(arr):
        c = color if color is not None else label_color(labels[i] if labels is not None else 0)
        ax.add_patch(mpatches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor=c,
                                        linewidth=linewidth, linestyle=linestyle, alpha=alpha))
        caption = _box_caption(i, labels, scores, class_names) if show_text else None
        if caption:
            ax.text(x1, y1, caption, fontsize=fontsize, color=_text_color(c), va="bottom", clip_on=True,
                    bbox=dict(facecolor=c, alpha=0.75, pad=1, edgecolor="none"))
    return ax


def _add_rectangles(ax, arr: np.ndarray, color, linewidth, alpha, label=None):
    """One PatchCollection of unfilled rectangles (fast for thousands of anchors)."""
    rects = [mpatches.Rectangle((x1, y1), x2 - x1, y2 - y1) for x1, y1, x2, y2 in arr]
    coll = PatchCollection(rects, facecolor="none", edgecolor=color, linewidth=linewidth,
                           alpha=alpha, label=label)
    ax.add_collection(coll, autolim=not ax.images)
    if not ax.images:  # no picture sets the view: fit the anchors, y pointing down like images
        ax.autoscale_view()
        ax.set_aspect("equal")
        if not ax.yaxis_inverted():
            ax.invert_yaxis()
    return coll


def _subsample(n: int, max_count: int | None) -> np.ndarray:
    """Evenly spaced (deterministic) indices of at most `max_count` out of `n`."""
    if max_count is None or n <= max_count:
        return np.arange(n)
    return np.linspace(0, n - 1, max_count).round().astype(int)


def draw_anchors(ax, anchors, color: str = "#E69F00", linewidth: float = 1.0, alpha: float = 0.8,
                 max_anchors: int | None = None, show_centers: bool = False):
    """Draw anchors [A, 4] (at most `max_anchors`, evenly spaced) as one collection. Returns ax."""
    arr = _as_boxes(anchors, "anchors")
    arr = arr[_subsample(len(arr), max_anchors)]
    _add_rectangles(ax, arr, color, linewidth, alpha)
    if show_centers and len(arr):
        ax.plot((arr[:, 0] + arr[:, 2]) / 2, (arr[:, 1] + arr[:, 3]) / 2, ".", color=color,
                markersize=3)
    return ax


def draw_anchor_labels(ax, anchors, labels, colors=None, linewidth: float = 1.0,
                       alpha: float = 0.8, show=(1, 0, -1), max_per_label: int | None = None,
                       legend: bool = True):
    """Draw anchors [A, 4] coloured by their label [A] in {1, 0, -1} (Faster R-CNN sec. 3.1.2).

    Positives, negatives and ignored anchors each become one collection in its own colour
    (`colors`, default ``ANCHOR_LABEL_COLORS``); `show` picks the groups (ignored first so that
    positives are drawn on top), `max_per_label` thins a group evenly. The legend gives the
    full counts. Returns ax.
    """
    arr = _as_boxes(anchors, "anchors")
    lab = _to_numpy(labels, "labels").reshape(-1)
    if len(lab) != len(arr):
        raise ValueError(f"labels must have one entry per anchor ({len(arr)}), got {len(lab)}")
    if not np.isin(lab, (1, 0, -1)).all():
        raise ValueError("labels must be 1 (positive), 0 (negative) or -1 (ignored), got "
                         f"values {sorted(set(np.unique(lab).tolist()) - {1, 0, -1})}")
    colors = {**ANCHOR_LABEL_COLORS, **(colors or {})}
    handles = []
    for value in sorted(show):  # -1, 0, 1: positives end on top
        group = arr[lab == value]
        name = f"{_ANCHOR_LABEL_NAMES[value]} ({len(group)})"
        _add_rectangles(ax, group[_subsample(len(group), max_per_label)], colors[value],
                        linewidth * (2 if value == 1 else 1), alpha, label=name)
        handles.append(mpatches.Patch(facecolor="none", edgecolor=colors[value], label=name))
    if legend:
        ax.legend(handles=handles[::-1], loc="upper right", fontsize=8, framealpha=0.8)
    return ax


def draw_masks(ax, masks, labels=None, alpha: float = 0.45, threshold: float = 0.5):
    """Overlay instance masks [N, H, W] or [N, 1, H, W] (0/1, or probabilities thresholded at
    `threshold`) in their class colours; one RGBA image in ``ax.images`` per call. Returns ax."""
    masks = _to_numpy(masks, "masks")
    if masks.ndim == 4:
        masks = masks[:, 0]
    if masks.ndim != 3:
        raise ValueError(f"masks must be [N, H, W] or [N, 1, H, W], got {list(masks.shape)}")
    labels = np.arange(len(masks)) if labels is None else _to_numpy(labels, "labels").reshape(-1)
    overlay = np.zeros(masks.shape[1:] + (4,), dtype=np.float32)
    for mask, label in zip(masks, labels):
        overlay[mask >= threshold] = to_rgba(label_color(label), alpha)
    ax.imshow(overlay, interpolation="nearest")
    return ax


def show_detections(image, prediction, class_names=None, score_threshold: float = 0.5, ax=None,
                    target=None):
    """Image with the predicted boxes whose score >= `score_threshold` (and dashed gt boxes).

    `prediction` is a model output dict(boxes, labels, scores), and its ``masks`` (Mask R-CNN)
    are drawn too; `target` an optional gt dict. Creates a figure when `ax` is None. Returns ax.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5, 5))
    show_image(ax, image)
    if target is not None:
        draw_boxes(ax, target["boxes"], color="white", linewidth=1.5, linestyle="--",
                   show_text=False)
    scores = _to_numpy(prediction["scores"], "scores").reshape(-1)
    keep = np.nonzero(scores >= score_threshold)[0]
    if prediction.get("masks") is not None and len(keep):
        draw_masks(ax, _to_numpy(prediction["masks"], "masks")[keep],
                   _to_numpy(prediction["labels"], "labels").reshape(-1)[keep])
    draw_boxes(ax, _as_boxes(prediction["boxes"])[keep],
               _to_numpy(prediction["labels"], "labels").reshape(-1)[keep], scores[keep],
               class_names)
    return ax


def show_samples(dataset, indices=range(8), ncols: int = 4, class_names=None,
                 size: float = 2.5):
    """A grid of dataset items with their ground-truth boxes; returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    indices = list(indices)
    nrows = max(1, -(-len(indices) // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    names = class_names if class_names is not None else getattr(dataset, "classes", None)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, i in zip(axes.flat, indices):
        image, target = dataset[i]
        show_image(ax, image)
        draw_boxes(ax, target["boxes"], target["labels"], class_names=names, linewidth=1.5,
                   fontsize=6)
    fig.tight_layout()
    return fig
