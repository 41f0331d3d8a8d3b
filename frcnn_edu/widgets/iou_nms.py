"""IoU and non-maximum suppression, drawn and explored (lesson 00).

A detector fires many times around each object; greedy NMS (R-CNN sec. 2.2, per class; the RPN
in Faster R-CNN sec. 3.3, class-agnostic, IoU 0.7) keeps the best-scored box and drops every
lower-scored box that overlaps a kept one by more than the IoU threshold.

    draw_iou(ax, box_a, box_b)                two boxes, their intersection shaded; returns IoU
    noisy_detections(boxes, labels, ...)      a fixed, seeded cloud of detections around gt boxes
    draw_nms(ax, boxes, scores, keep, ...)    kept boxes solid and labelled, suppressed dashed grey
    nms_explorer(image, detections, ...)      sliders for the IoU and score thresholds, and a
                                              switch to a crowded scene when one is given

Shape key:
    G  ground-truth boxes of the image
    D  detections (boxes [D, 4] xyxy in pixels, labels [D] in 1..K, scores [D])
"""
from __future__ import annotations

import torch
from matplotlib import patches as mpatches

from frcnn_edu.boxes import batched_nms, box_area, box_iou, check_boxes, clip_boxes, nms
from frcnn_edu.viz import draw_boxes, show_image
from frcnn_edu.widgets.explorer import explorer, checkbox

__all__ = ["IOU_COLORS", "SUPPRESSED_COLOR", "draw_iou", "noisy_detections", "nms_keep",
           "draw_nms", "nms_explorer"]

#: Colours of the two boxes and their intersection in `draw_iou` (Okabe-Ito).
IOU_COLORS = {"a": "#0072B2", "b": "#D55E00", "intersection": "#009E73"}
#: Colour of the boxes that NMS suppressed.
SUPPRESSED_COLOR = "#999999"


def _one_box(box, name):
    t = torch.as_tensor(box, dtype=torch.float64).reshape(-1)
    if t.numel() != 4:
        raise ValueError(f"{name} must be 4 numbers (x1, y1, x2, y2), got {list(t.shape)}")
    return check_boxes(t[None], name)[0]


def draw_iou(ax, box_a, box_b, title=True, fontsize=9):
    """Draw boxes a and b (outlines) and their intersection (shaded); return their IoU (float).

    Patches added, in order: box a, box b, and the intersection (only when it is not empty).
    With ``title`` the axes title reads ``IoU = inter / union = value``.
    """
    a, b = _one_box(box_a, "box_a"), _one_box(box_b, "box_b")
    iou = float(box_iou(a[None], b[None])[0, 0])
    for box, key, name in ((a, "a", "A"), (b, "b", "B")):
        x1, y1, x2, y2 = box.tolist()
        ax.add_patch(mpatches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linewidth=2,
                                        edgecolor=IOU_COLORS[key]))
        ax.text(x1 + 1, y1 + 1, name, color=IOU_COLORS[key], fontsize=fontsize, va="top",
                fontweight="bold")
    lt, rb = torch.maximum(a[:2], b[:2]), torch.minimum(a[2:], b[2:])
    wh = (rb - lt).clamp(min=0)
    inter = float(wh[0] * wh[1])
    if inter > 0:
        ax.add_patch(mpatches.Rectangle(tuple(lt.tolist()), float(wh[0]), float(wh[1]),
                                        facecolor=IOU_COLORS["intersection"], alpha=0.45,
                                        edgecolor="none"))
    if title:
        union = float(box_area(torch.stack([a, b])).sum()) - inter
        ax.set_title(f"IoU = {inter:.0f} / {union:.0f} = {iou:.2f}", fontsize=fontsize + 1)
    if not ax.images:  # no picture sets the view: fit both boxes, y pointing down like images
        both = torch.stack([a, b])
        lo, hi = both[:, :2].min(0).values - 5, both[:, 2:].max(0).values + 5
        ax.set_xlim(float(lo[0]), float(hi[0]))
        ax.set_ylim(float(hi[1]), float(lo[1]))
        ax.set_aspect("equal")
    return iou


def noisy_detections(gt_boxes, gt_labels, num_classes, image_size=(160, 160), per_object=5,
                     wrong_class=1, false_positives=3, jitter=0.12, score_noise=0.08, seed=0):
    """A reproducible set of imperfect detections of one image, as a detector's raw output.

    For each gt box: ``per_object`` jittered copies of its class (centre shift ~ N(0, jitter)
    times the box size, log-size ~ N(0, jitter)) scored 0.35 + 0.6 * IoU with the gt plus
    N(0, score_noise), and ``wrong_class`` copies labelled with another class and 0.6 times
    that score; plus ``false_positives`` random boxes with scores in [0.05, 0.75). Boxes are
    clipped to ``image_size`` (H, W); slivers (under 1 px after clipping) are dropped. Returns
    dict(boxes float32 [D, 4], labels int64 [D], scores float32 [D]) in generation order.
    """
    gt = check_boxes(torch.as_tensor(gt_boxes, dtype=torch.float32), "gt_boxes")
    gt_lab = torch.as_tensor(gt_labels, dtype=torch.int64).reshape(-1)
    bad = gt_lab.numel() and (gt_lab.min() < 1 or gt_lab.max() >= num_classes)
    if gt_lab.shape[0] != gt.shape[0] or bad:
        raise ValueError(f"gt_labels must be [G] = [{gt.shape[0]}] values in 1..{num_classes - 1}")
    g = torch.Generator().manual_seed(int(seed))
    h, w = image_size
    out_boxes, out_labels, out_scores = [], [], []
    for box, label in zip(gt, gt_lab.tolist()):
        size, ctr = box[2:] - box[:2], (box[:2] + box[2:]) / 2
        n = per_object + wrong_class
        c = ctr + torch.randn(n, 2, generator=g) * jitter * size
        s = size * torch.exp(torch.randn(n, 2, generator=g) * jitter)
        boxes = clip_boxes(torch.cat([c - s / 2, c + s / 2], 1), (h, w))
        iou = box_iou(boxes, box[None])[:, 0]
        score = (0.35 + 0.6 * iou + score_noise * torch.randn(n, generator=g)).clamp(0.05, 0.99)
        others = [k for k in range(1, num_classes) if k != label] or [label]
        lab = torch.full((n,), label, dtype=torch.int64)
        for j in range(per_object, n):
            lab[j] = others[int(torch.randint(len(others), (1,), generator=g))]
            score[j] = score[j] * 0.6
        out_boxes.append(boxes)
        out_labels.append(lab)
        out_scores.append(score)
    if false_positives:
        wh = torch.empty(false_positives, 2).uniform_(12, 48, generator=g)
        xy = torch.rand(false_positives, 2, generator=g) * (torch.tensor([w, h]) - wh)
        out_boxes.append(torch.cat([xy, xy + wh], 1))
        out_labels.append(torch.randint(1, num_classes, (false_positives,), generator=g))
        out_scores.append(torch.empty(false_positives).uniform_(0.05, 0.75, generator=g))
    boxes = torch.cat(out_boxes + [torch.zeros(0, 4)])
    labels = torch.cat(out_labels + [torch.zeros(0, dtype=torch.int64)])
    scores = torch.cat(out_scores + [torch.zeros(0)])
    keep = (boxes[:, 2] - boxes[:, 0] > 1) & (boxes[:, 3] - boxes[:, 1] > 1)  # clipped slivers
    return dict(boxes=boxes[keep].float(), labels=labels[keep], scores=scores[keep].float())


def nms_keep(detections, iou_threshold, score_threshold=0.0, per_class=True):
    """Indices kept by NMS after dropping scores below ``score_threshold`` (int64, best first).

    ``per_class`` runs NMS for each class separately (``batched_nms``, as R-CNN sec. 2.2 and
    the detectors' outputs); otherwise class-agnostic (``nms``, as the RPN's proposals).
    """
    scores = torch.as_tensor(detections["scores"])
    above = torch.where(scores >= score_threshold)[0]
    boxes = torch.as_tensor(detections["boxes"])[above]
    if per_class:
        keep = batched_nms(boxes, scores[above], torch.as_tensor(detections["labels"])[above],
                           iou_threshold)
    else:
        keep = nms(boxes, scores[above], iou_threshold)
    return above[keep]


def draw_nms(ax, boxes, scores, keep, labels=None, class_names=None, show_suppressed=True,
             score_threshold=0.0):
    """Draw an NMS result: suppressed boxes dashed in grey, kept ones solid with their captions.

    boxes [D, 4], scores [D], keep: indices of the kept boxes. Boxes scoring below
    ``score_threshold`` are not drawn. Patches: the suppressed boxes (when ``show_suppressed``)
    first, then the kept boxes in the reverse order of ``keep`` (NMS lists them best first, so
    the best box and its caption end on top). Returns dict(kept, suppressed, below_score) counts.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    scores = torch.as_tensor(scores, dtype=torch.float32).reshape(-1)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"scores must have one entry per box ({boxes.shape[0]}), "
                         f"got {scores.shape[0]}")
    kept = torch.zeros(len(boxes), dtype=torch.bool)
    kept[torch.as_tensor(keep, dtype=torch.int64)] = True
    shown = scores >= score_threshold
    suppressed = shown & ~kept
    labels = None if labels is None else torch.as_tensor(labels).reshape(-1)
    if show_suppressed and bool(suppressed.any()):
        draw_boxes(ax, boxes[suppressed], color=SUPPRESSED_COLOR, linewidth=1.0, linestyle="--",
                   show_text=False, alpha=0.9)
    order = torch.as_tensor(keep, dtype=torch.int64).reshape(-1).flip(0)  # best drawn on top
    draw_boxes(ax, boxes[order], None if labels is None else labels[order], scores[order],
               class_names, linewidth=2.0, fontsize=7)
    return dict(kept=int(kept.sum()), suppressed=int(suppressed.sum()),
                below_score=int((~shown).sum()))


def nms_explorer(image, detections, class_names=None, gt_boxes=None, iou_threshold=0.5,
                 score_threshold=0.05, figsize=(5.5, 5.5), crowded_scene=None):
    """Interactive NMS: sliders for the IoU and score thresholds, switches for per-class NMS and
    for showing the suppressed boxes, over a fixed set of detections drawn on ``image``.

    ``crowded_scene``, optional: a second scene, dict(image, detections, gt_boxes), e.g. from
    ``ShapesDataset(..., crowded=True)``; a checkbox "crowded image" then switches to it, to see
    a low IoU threshold suppress true neighbours.

    Children: 0 IoU threshold, 1 score threshold, 2 per class, 3 show suppressed, 4 crowded
    image (only with ``crowded_scene``), then the output. The function returns
    dict(kept, suppressed, below_score) (``w.result``).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    scenes = {False: dict(image=image, detections=detections, gt_boxes=gt_boxes)}
    if crowded_scene is not None:
        missing = {"image", "detections"} - set(crowded_scene)
        if missing:
            raise ValueError(f"crowded_scene must be dict(image, detections, gt_boxes); "
                             f"missing {sorted(missing)}")
        scenes[True] = crowded_scene

    def update(iou_threshold, score_threshold, per_class, show_suppressed, crowded):
        scene = scenes[crowded]
        det = scene["detections"]
        keep = nms_keep(det, iou_threshold, score_threshold, per_class)
        fig, ax = plt.subplots(figsize=figsize)
        show_image(ax, scene["image"])
        if scene.get("gt_boxes") is not None:
            draw_boxes(ax, scene["gt_boxes"], color="white", linewidth=1.0, linestyle=":",
                       show_text=False)
        counts = draw_nms(ax, det["boxes"], det["scores"], keep, det["labels"], class_names,
                          show_suppressed, score_threshold)
        ax.set_title(f"kept {counts['kept']}, suppressed {counts['suppressed']}, "
                     f"below score {counts['below_score']}", fontsize=9)
        plt.show()
        return counts

    style = {"description_width": "initial"}
    controls = dict(
        iou_threshold=widgets.FloatSlider(value=iou_threshold, min=0.05, max=0.95, step=0.05,
                                          description="IoU threshold", style=style),
        score_threshold=widgets.FloatSlider(value=score_threshold, min=0.0, max=0.95, step=0.05,
                                            description="score threshold", style=style),
        per_class=checkbox(True, "NMS per class"),
        show_suppressed=checkbox(True, "show suppressed"),
    )
    controls["crowded"] = (widgets.fixed(False) if crowded_scene is None else  # fixed: no child
                           checkbox(False, "crowded image"))
    return explorer(update, **controls)
