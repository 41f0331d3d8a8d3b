"""RPN proposals, drawn and explored (lesson 04).

The proposal layer (Faster R-CNN sec. 3.3, `frcnn_edu.proposals.generate_proposals`) turns the
RPN's scored anchors into proposals: decode the deltas (eq. 2), clip to the image, keep the
``pre_nms_top_n`` best, NMS at IoU 0.7, keep the ``post_nms_top_n`` best (the paper: 2000 in
training, 300 at test). This module runs a model's RPN once per image and replays the proposal
layer with other settings, counts what each stage keeps, measures proposal recall
(`frcnn_edu.evaluation.proposal_recall`) and draws the result.

The paper scores every anchor at test time and clips the cross-boundary proposals (sec. 3.3),
although anchors that cross the border were ignored in training, so their objectness was never
trained. ``inside_only=True`` gives the proposal layer only the anchors inside the image, to
measure what those untrained scores cost.

    rpn_outputs(model, image)                       backbone + RPN head once: anchors, logits,
                                                    deltas
    proposal_stages(outputs, pre_nms_top_n, ...)    the proposal layer with counts after each stage
                                                    (optionally on the inside anchors only)
    proposal_stats(proposals, gt_boxes)             recall at IoU 0.5 and 0.7, average recall
    draw_proposals(ax, image, proposals, ...)       top proposals by rank, each gt box's best one
    proposal_explorer(model, dataset, ...)          sliders for NMS IoU, pre- and post-NMS top-N,
                                                    a switch for cross-border anchors

Shape key:
    A  anchors of the image (Hf * Wf * k)      P  proposals kept      G  ground-truth boxes
    scale  [4] (x, y, x, y): resized pixels per image pixel (1 without image_scale)
"""
from __future__ import annotations

import matplotlib
import torch
from matplotlib import patches as mpatches
from matplotlib.collections import PatchCollection

from frcnn_edu.anchors import inside_image
from frcnn_edu.boxes import box_iou
from frcnn_edu.evaluation import average_recall, proposal_recall
from frcnn_edu.data.batching import batch_images
from frcnn_edu.proposals import generate_proposals
from frcnn_edu.viz import draw_boxes, show_image
from frcnn_edu.widgets.explorer import explorer, checkbox

__all__ = ["BEST_COLOR", "PRE_NMS_CHOICES", "rpn_outputs", "proposal_stages", "proposal_stats",
           "draw_proposals", "proposal_explorer"]

#: Colour of each gt box's best proposal in `draw_proposals`.
BEST_COLOR = "#00E676"
#: Pre-NMS top-N values offered by the explorer (6000 / 12000: py-faster-rcnn's test / training).
PRE_NMS_CHOICES = (10, 30, 100, 300, 1000, 6000, 12000)
_RANK_CMAP = "viridis"


@torch.no_grad()
def rpn_outputs(model, image):
    """Run ``model``'s backbone and RPN head on one image [3, H, W] (no proposal layer).

    ``model`` is a `FasterRCNN` (or anything with ``.backbone`` and ``.rpn``); it runs in eval
    mode and gets its mode back. Returns dict(anchors [A, 4], logits [A], deltas [A, 4],
    image_size (H, W), scale [4]), all detached, on the model's device. A model with an
    ``image_scale`` (the paper's s) sees the image resized as in its own forward (`resize`):
    anchors and image_size are then in resized pixels, and ``scale`` holds the factors (x, y,
    x, y) that `proposal_stages` divides its boxes by to return them in the image's pixels
    (all ones without resizing).
    """
    if not (torch.is_tensor(image) and image.dim() == 3 and image.shape[0] == 3):
        raise ValueError(f"image must be a float [3, H, W] tensor, got "
                         f"{list(image.shape) if torch.is_tensor(image) else type(image).__name__}")
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        image = image.to(device)
        scale = image.new_ones(4)
        if getattr(model, "image_scale", None) is not None:  # resized exactly as model() does
            (image,), (scale,) = model.resize([image])
        x, sizes = batch_images([image], model.backbone.stride)
        features = model.backbone(x)
        logits, deltas = model.rpn.head(features)
    finally:
        model.train(was_training)
    return dict(anchors=model.rpn.anchors_for(features), logits=logits[0], deltas=deltas[0],
                image_size=tuple(sizes[0]), scale=torch.as_tensor(scale, dtype=logits.dtype))


def _layer(outputs, pre_nms_top_n, post_nms_top_n, nms_thresh, min_size):
    boxes, scores = generate_proposals(outputs["anchors"], outputs["logits"][None],
                                       outputs["deltas"][None], [outputs["image_size"]],
                                       pre_nms_top_n=pre_nms_top_n, post_nms_top_n=post_nms_top_n,
                                       nms_thresh=nms_thresh, min_size=min_size)
    return boxes[0], scores[0]


def proposal_stages(outputs, pre_nms_top_n=6000, post_nms_top_n=300, nms_thresh=0.7, min_size=0.0,
                    inside_only=False):
    """The proposal layer on `rpn_outputs`, with the count after each stage.

    With ``inside_only`` only the anchors that lie inside the image (`anchors.inside_image`, the
    ones that could be labelled in training) are passed on; the paper passes all of them.
    Returns dict(boxes [P, 4], scores [P], anchors: A passed on, pre_nms: boxes entering NMS (after
    clipping, dropping empty / small boxes and the pre-NMS top-N), after_nms: boxes NMS keeps,
    kept: P = min(after_nms, post_nms_top_n)). ``boxes`` and ``scores`` equal
    `generate_proposals` with the same settings (its post-NMS top-N is a prefix of the NMS
    output, so one call with no post-NMS limit gives every stage); ``boxes`` are divided by
    ``outputs["scale"]`` when present, so they are in the input image's pixels, as
    `FasterRCNN.propose` returns them.
    """
    if inside_only:
        keep = inside_image(outputs["anchors"], outputs["image_size"])
        outputs = dict(outputs, anchors=outputs["anchors"][keep], logits=outputs["logits"][keep],
                       deltas=outputs["deltas"][keep])
    num_anchors = outputs["anchors"].shape[0]
    if num_anchors == 0:
        empty = outputs["anchors"][:0]
        return dict(boxes=empty, scores=outputs["logits"][:0], anchors=0, pre_nms=0, after_nms=0,
                    kept=0)
    every = num_anchors
    entering, _ = _layer(outputs, pre_nms_top_n, every, 1.0, min_size)  # IoU > 1: NMS keeps all
    boxes, scores = _layer(outputs, pre_nms_top_n, every, nms_thresh, min_size)
    if "scale" in outputs:  # resized pixels -> the image's pixels
        boxes = boxes / outputs["scale"]
    return dict(boxes=boxes[:post_nms_top_n], scores=scores[:post_nms_top_n], anchors=num_anchors,
                pre_nms=len(entering), after_nms=len(boxes), kept=min(len(boxes), post_nms_top_n))


def proposal_stats(proposals, gt_boxes, iou_thresholds=(0.5, 0.7)):
    """dict(proposals P, "recall@t" for each threshold t, AR) for one image's proposals [P, 4]
    (best first) and its gt boxes [G, 4]; AR averages recall over IoU 0.5:0.05:0.95."""
    props = [torch.as_tensor(proposals, dtype=torch.float32).reshape(-1, 4)]
    gt = [torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)]
    recall = proposal_recall(props, gt, tuple(iou_thresholds))
    out = {"proposals": props[0].shape[0]}
    out.update({f"recall@{t:g}": round(float(r), 4) for t, r in zip(iou_thresholds, recall)})
    out["AR"] = round(average_recall(props, gt), 4)
    return out


def draw_proposals(ax, image, proposals, gt_boxes=None, max_draw=30, best=True, title=None,
                   linewidth=1.0):
    """The image, its first ``max_draw`` proposals coloured by rank (yellow = best scored, purple
    = last drawn; one collection, the best drawn on top), the gt boxes (dashed white) and, with
    ``best``, each gt box's best proposal among ALL given ones (thick green, its IoU written
    next to it).

    Patches: the gt boxes, then the best proposals (one each). Returns dict(drawn, best_iou:
    list of G floats, 0.0 for a box without proposals).
    """
    show_image(ax, image)
    props = torch.as_tensor(proposals, dtype=torch.float32).reshape(-1, 4)
    shown = props[:max_draw]
    if len(shown):  # drawn last-ranked first, so the best end on top
        colors = matplotlib.colormaps[_RANK_CMAP](torch.linspace(0, 1, len(shown)).numpy())
        rects = [mpatches.Rectangle((x1, y1), x2 - x1, y2 - y1)
                 for x1, y1, x2, y2 in shown.flip(0).tolist()]
        ax.add_collection(PatchCollection(rects, facecolor="none", edgecolor=colors,
                                          linewidth=linewidth))
    best_iou = []
    if gt_boxes is not None:
        gt = torch.as_tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4)
        draw_boxes(ax, gt, color="white", linewidth=1.5, linestyle="--", show_text=False)
        iou = box_iou(props, gt) if len(props) and len(gt) else torch.zeros(len(props), len(gt))
        best_iou = iou.max(0).values.tolist() if len(props) else [0.0] * len(gt)
        if best and len(props):
            for j, i in enumerate(iou.argmax(0).tolist()):
                x1, y1, x2, y2 = props[i].tolist()
                ax.add_patch(mpatches.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False,
                                                edgecolor=BEST_COLOR, linewidth=2.5))
                ax.text(x1 + 1, y2 - 1, f"{best_iou[j]:.2f}", color="black", fontsize=7,
                        va="bottom", clip_on=True, bbox=dict(facecolor=BEST_COLOR, alpha=0.85,
                                                            pad=0.8, edgecolor="none"))
    h, w = image.shape[-2:]
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    if title:
        ax.set_title(title, fontsize=9)
    return dict(drawn=len(shown), best_iou=[round(v, 4) for v in best_iou])


def proposal_explorer(model, dataset, index=0, nms_thresh=0.7, pre_nms_top_n=6000,
                      post_nms_top_n=300, max_draw=20, inside_only=False, min_size=0.0,
                      figsize=(5.5, 5.5)):
    """Interactive proposal layer on item ``index`` of ``dataset`` with ``model``'s RPN.

    Children: 0 image index, 1 NMS IoU threshold, 2 pre-NMS top-N, 3 post-NMS top-N, 4 how many
    of the kept proposals to draw, 5 inside-the-image anchors only, then the output. The RPN
    runs once per image (cached); the sliders replay only the proposal layer. The function
    returns `proposal_stages`' counts (anchors, pre_nms, after_nms, kept) and `proposal_stats`
    of the kept proposals (``w.result``).
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    cache = {}

    def update(index, nms_thresh, pre_nms_top_n, post_nms_top_n, max_draw, inside_only):
        image, target = dataset[index]
        if index not in cache:
            cache[index] = rpn_outputs(model, image)
        stages = proposal_stages(cache[index], pre_nms_top_n, post_nms_top_n, nms_thresh, min_size,
                                 inside_only)
        stats = proposal_stats(stages["boxes"], target["boxes"])
        fig, ax = plt.subplots(figsize=figsize)
        draw_proposals(ax, image, stages["boxes"], target["boxes"], max_draw=max_draw)
        ax.set_title(f"{stages['anchors']} anchors -> {stages['pre_nms']} into NMS -> "
                     f"{stages['after_nms']} after NMS -> {stages['kept']} kept\nrecall@0.5 "
                     f"{stats['recall@0.5']:.2f}, recall@0.7 {stats['recall@0.7']:.2f}, AR "
                     f"{stats['AR']:.2f} (top {min(max_draw, stages['kept'])} drawn)", fontsize=9)
        plt.show()
        counts = {k: stages[k] for k in ("anchors", "pre_nms", "after_nms", "kept")}
        return {**counts, **stats}

    style = {"description_width": "initial"}
    pre_options = sorted({*PRE_NMS_CHOICES, int(pre_nms_top_n)})
    return explorer(
        update,
        index=widgets.IntSlider(value=index, min=0, max=len(dataset) - 1, description="image",
                                style=style),
        nms_thresh=widgets.FloatSlider(value=nms_thresh, min=0.3, max=1.0, step=0.05,
                                       description="NMS IoU", style=style),
        pre_nms_top_n=widgets.Dropdown(options=pre_options, value=int(pre_nms_top_n),
                                       description="pre-NMS top-N", style=style),
        post_nms_top_n=widgets.IntSlider(value=post_nms_top_n, min=1, max=max(2000, post_nms_top_n),
                                         description="post-NMS top-N", style=style),
        max_draw=widgets.IntSlider(value=max_draw, min=0, max=100, description="draw the top",
                                   style=style),
        inside_only=checkbox(inside_only, "anchors inside the image only"),
    )
