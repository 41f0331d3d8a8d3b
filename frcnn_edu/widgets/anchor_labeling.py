"""Anchors and their training labels, drawn and explored (lesson 03).

The RPN's anchors (Faster R-CNN sec. 3.1.1) are labelled with the four IoU rules of sec. 3.1.2
(`frcnn_edu.matching.label_anchors`): positive (IoU >= 0.7 with some box, or the best anchor(s)
of some box), negative (max IoU < 0.3), ignored (the rest, and every anchor that crosses the
image border, sec. 3.3). This module only puts the library's anchors and labels on screen.

    image_anchors(image_size, sizes, ratios, stride)       all anchors of one image
    label_image_anchors(image_size, gt_boxes, ...)          (anchors, labels, valid) for one image
    count_labels(labels, valid)                             dict of positive / negative / ignored
    iou_table(anchors, gt_boxes, ...)                       the IoU matrix as text, both maxima
    draw_labeling_case(ax, anchors, gt_boxes, labels, ...)  a small hand-built case, anchors named
    draw_anchor_labeling(ax, image, gt_boxes, anchors, labels, ...)  labels on a real image
    anchor_labeling_explorer(dataset, ...)                  sliders for sizes, ratios, stride, IoUs

Shape key:
    A  anchors of the image (Hf * Wf * k, ordered [Hf, Wf, k])
    G  ground-truth boxes of the image
    k  anchors per position (len(sizes) * len(ratios))
"""
from __future__ import annotations

import math

import torch
from matplotlib import patches as mpatches

from frcnn_edu.anchors import grid_anchors, inside_image, make_base_anchors
from frcnn_edu.boxes import box_iou, check_boxes
from frcnn_edu.matching import label_anchors
from frcnn_edu.viz import ANCHOR_LABEL_COLORS, draw_anchor_labels, draw_boxes, show_image
from frcnn_edu.widgets.explorer import explorer, checkbox

__all__ = ["SIZE_CHOICES", "RATIO_CHOICES", "STRIDE_CHOICES", "GT_COLOR", "image_anchors",
           "label_image_anchors", "count_labels", "iou_table", "draw_labeling_case",
           "draw_anchor_labeling", "anchor_labeling_explorer"]

#: Anchor-size sets offered by the explorer (label, sizes). The course's (20, 40, 80) suits the
#: 160 x 160 shapes images as the paper's (128, 256, 512) suits ~600 x 1000 photographs.
SIZE_CHOICES = (("20, 40, 80 (course)", (20, 40, 80)), ("40 only", (40,)),
                ("10, 20, 40", (10, 20, 40)), ("16, 32, 64, 128", (16, 32, 64, 128)),
                ("128, 256, 512 (paper)", (128, 256, 512)))
#: Ratio (h / w) sets offered by the explorer.
RATIO_CHOICES = (("0.5, 1, 2 (paper)", (0.5, 1.0, 2.0)), ("1 only", (1.0,)),
                 ("1/3, 1/2, 1, 2, 3", (1 / 3, 0.5, 1.0, 2.0, 3.0)))
#: Feature-map strides offered by the explorer (16 is VGG-16 conv5 and the course's TinyVGG).
STRIDE_CHOICES = (8, 16, 32)
#: Colour of ground-truth boxes in the hand-built cases (`draw_labeling_case`).
GT_COLOR = "#0072B2"
_NAME_BOX = dict(facecolor="white", alpha=0.85, pad=0.8, edgecolor="none")  # names over lines
_SHOW_CHOICES = (("positives", (1,)), ("positives + negatives", (1, 0)),
                 ("all labels", (1, 0, -1)))


def image_anchors(image_size, sizes, ratios, stride):
    """All anchors of an image of ``image_size = (H, W)``: [A, 4].

    The feature map is ceil(H / stride) x ceil(W / stride), the map the course's models see
    after padding the image to a multiple of the stride (`data.batching.batch_images`).
    """
    h, w = (int(v) for v in image_size)
    if h <= 0 or w <= 0 or stride <= 0:
        raise ValueError(f"image_size and stride must be positive, got {image_size}, {stride}")
    feature_size = (math.ceil(h / stride), math.ceil(w / stride))
    return grid_anchors(make_base_anchors(sizes, ratios), feature_size, stride)


def label_image_anchors(image_size, gt_boxes, sizes, ratios, stride, pos_iou=0.7, neg_iou=0.3,
                        ignore_cross_border=True):
    """(anchors [A, 4], labels int64 [A] in {1, 0, -1}, valid bool [A]) for one image.

    ``valid`` marks the anchors inside the image (all True when ``ignore_cross_border`` is
    False); the labels are `label_anchors` with that mask, as the RPN computes them in training.
    """
    anchors = image_anchors(image_size, sizes, ratios, stride)
    gt = torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
    if ignore_cross_border:
        valid = inside_image(anchors, tuple(image_size))
    else:
        valid = torch.ones(anchors.shape[0], dtype=torch.bool)
    labels, _ = label_anchors(anchors, gt, pos_iou, neg_iou, valid=valid)
    return anchors, labels, valid


def count_labels(labels, valid=None):
    """dict(anchors, positive, negative, ignored, cross_border) of labels [A] in {1, 0, -1}.

    ``cross_border`` counts the ignored anchors that are ignored because ``valid`` is False
    (they are included in ``ignored``).
    """
    labels = torch.as_tensor(labels).reshape(-1)
    out = dict(anchors=int(labels.numel()), positive=int((labels == 1).sum()),
               negative=int((labels == 0).sum()), ignored=int((labels == -1).sum()))
    out["cross_border"] = 0 if valid is None else int((~torch.as_tensor(valid)).sum())
    return out


def iou_table(anchors, gt_boxes, valid=None, labels=None, maxima=True, decimals=2):
    """The IoU matrix [A, G] of ``anchors`` (rows A0..) and ``gt_boxes`` (columns G0..) as text.

    Columns after the matrix: "border" ("in", or "out" where ``valid`` is False) and the label
    when ``labels`` is given. With ``maxima``, each row also shows its maximum over the boxes
    (what rules i and iii look at), and two last rows give each column's maximum over the
    valid anchors and which anchor(s) reach it (the box's best anchors: rule ii).
    """
    anchors, gt = check_boxes(anchors, "anchors"), check_boxes(gt_boxes, "gt_boxes")
    iou = box_iou(anchors, gt.to(anchors.dtype))
    A, G = iou.shape
    valid = torch.ones(A, dtype=torch.bool) if valid is None else torch.as_tensor(valid).reshape(-1)
    masked = torch.where(valid[:, None], iou, torch.full_like(iou, -1.0))
    col_max = masked.max(0).values if A else torch.zeros(G)
    best = [",".join(f"A{a}" for a in torch.where(masked[:, g] == col_max[g])[0].tolist())
            if col_max[g] > 0 else "none" for g in range(G)]
    cw = max([decimals + 5] + [len(b) + 2 for b in best])
    fmt = lambda v: f"{float(v):>{cw}.{decimals}f}"  # noqa: E731
    head = f"{'':<8}" + "".join(f"{'G' + str(g):>{cw}}" for g in range(G))
    head += f"{'row max':>10}" * maxima + f"{'border':>8}" + f"{'label':>7}" * (labels is not None)
    lines = [head]
    for a in range(A):
        row = f"{'A' + str(a):<8}" + "".join(fmt(v) for v in iou[a])
        if maxima:
            row += f"{float(iou[a].max()) if G else 0.0:>10.{decimals}f}"
        row += f"{'in' if bool(valid[a]) else 'out':>8}"
        if labels is not None:
            row += f"{int(labels[a]):>7d}"
        lines.append(row)
    if maxima:
        lines.append(f"{'col max':<8}" + "".join(fmt(max(float(v), 0.0)) for v in col_max)
                     + "   (over the valid anchors)")
        lines.append(f"{'best':<8}" + "".join(f"{b:>{cw}}" for b in best)
                     + "   (the box's best anchor(s))")
    return "\n".join(lines)


def draw_labeling_case(ax, anchors, gt_boxes, labels, image_size=None, title=None, fontsize=8):
    """A small hand-built case: anchors coloured by label (named A0.. inside a corner: bottom
    right for even indices, top right for odd ones), gt boxes on top (blue, named G0.. above
    them), and the image border (dashed black) when ``image_size = (H, W)`` is given.

    Patches: one Rectangle per gt box, then the image border; anchors are one collection per
    label (`viz.draw_anchor_labels`). Returns `count_labels(labels)`.
    """
    anchors = torch.as_tensor(anchors, dtype=torch.float32).reshape(-1, 4)
    labels = torch.as_tensor(labels).reshape(-1)
    draw_anchor_labels(ax, anchors, labels, linewidth=1.5, alpha=0.9, legend=False)
    draw_boxes(ax, gt_boxes, color=GT_COLOR, linewidth=2.0, show_text=False)
    if image_size is not None:
        h, w = image_size
        ax.add_patch(mpatches.Rectangle((0, 0), w, h, fill=False, edgecolor="black",
                                        linestyle="--", linewidth=1.0))
    for j, (x1, y1, _, _) in enumerate(torch.as_tensor(gt_boxes).reshape(-1, 4).tolist()):
        ax.text(x1, y1 - 1, f"G{j}", color=GT_COLOR, fontsize=fontsize, va="bottom", fontweight="bold",
                bbox=_NAME_BOX)
    for a, (x1, y1, x2, y2) in enumerate(anchors.tolist()):
        y, va = (y2 - 1, "bottom") if a % 2 == 0 else (y1 + 1, "top")
        ax.text(x2 - 1, y, f"A{a}", color=ANCHOR_LABEL_COLORS[int(labels[a])], fontsize=fontsize,
                ha="right", va=va, bbox=_NAME_BOX)
    ax.margins(0.08)
    ax.autoscale_view()
    ax.set_aspect("equal")
    if not ax.yaxis_inverted():
        ax.invert_yaxis()
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=fontsize + 1)
    return count_labels(labels)


def draw_anchor_labeling(ax, image, gt_boxes, anchors, labels, valid=None, show=(1, 0),
                         max_per_label=40, title=True):
    """The image, its gt boxes (dashed white) and the anchors coloured by label (`viz.draw_anchor_labels`;
    ``show`` picks the groups, ``max_per_label`` thins each evenly, the legend has full counts).

    Returns `count_labels(labels, valid)`.
    """
    show_image(ax, image)
    draw_anchor_labels(ax, anchors, labels, show=show, max_per_label=max_per_label,
                       linewidth=1.2, alpha=0.9)
    draw_boxes(ax, gt_boxes, color="white", linewidth=1.5, linestyle="--", show_text=False)
    h, w = image.shape[-2:]
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    counts = count_labels(labels, valid)
    if title:
        ax.set_title(f"{counts['anchors']} anchors: {counts['positive']} positive, "
                     f"{counts['negative']} negative, {counts['ignored']} ignored "
                     f"({counts['cross_border']} cross the border)", fontsize=9)
    return counts


def _choices(options, value):
    """Dropdown options (label, value) with ``value`` added when it is not among them."""
    options = list(options)
    if all(tuple(v) != tuple(value) for _, v in options):
        options.insert(0, (", ".join(f"{x:g}" for x in value), tuple(value)))
    return options


def anchor_labeling_explorer(dataset, index=0, sizes=(20, 40, 80), ratios=(0.5, 1.0, 2.0),
                             stride=16, pos_iou=0.7, neg_iou=0.3, figsize=(6, 6)):
    """Interactive anchor labeling on item ``index`` of ``dataset`` (e.g. ShapesDataset("train")).

    Children: 0 image index, 1 anchor sizes, 2 ratios, 3 stride, 4 positive IoU, 5 negative
    IoU, 6 ignore cross-border anchors, 7 which labels to draw, then the output. The function
    returns `count_labels` (``w.result``). A negative threshold above the positive one is
    lowered to it (the library requires neg_iou <= pos_iou).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    def update(index, sizes, ratios, stride, pos_iou, neg_iou, ignore_cross_border, show):
        image, target = dataset[index]
        size = tuple(image.shape[-2:])
        anchors, labels, valid = label_image_anchors(size, target["boxes"], sizes, ratios, stride,
                                                     pos_iou, min(neg_iou, pos_iou),
                                                     ignore_cross_border)
        fig, ax = plt.subplots(figsize=figsize)
        counts = draw_anchor_labeling(ax, image, target["boxes"], anchors, labels, valid, show)
        plt.show()
        return counts

    style = {"description_width": "initial"}
    return explorer(
        update,
        index=widgets.IntSlider(value=index, min=0, max=len(dataset) - 1, description="image",
                                style=style),
        sizes=widgets.Dropdown(options=_choices(SIZE_CHOICES, sizes), value=tuple(sizes),
                               description="sizes", style=style),
        ratios=widgets.Dropdown(options=_choices(RATIO_CHOICES, ratios), value=tuple(ratios),
                                description="ratios (h/w)", style=style),
        stride=widgets.Dropdown(options=sorted({*STRIDE_CHOICES, stride}), value=stride,
                                description="stride", style=style),
        pos_iou=widgets.FloatSlider(value=pos_iou, min=0.05, max=1.0, step=0.05,
                                    description="positive IoU >=", style=style),
        neg_iou=widgets.FloatSlider(value=neg_iou, min=0.0, max=0.95, step=0.05,
                                    description="negative IoU <", style=style),
        ignore_cross_border=checkbox(True, "ignore cross-border anchors"),
        show=widgets.Dropdown(options=_SHOW_CHOICES, value=(1, 0), description="draw",
                              style=style),
    )
