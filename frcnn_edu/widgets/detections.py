"""The detections of several trained detectors on the same held-out images (lesson 05).

Comparing two training schemes by one number (mAP) hides what differs image by image: missed
small objects, duplicates, confusions between classes. These helpers put the detectors side by
side on one image, with a score threshold to move.

    count_found(prediction, target, ...)             detections kept, objects found, objects
    draw_detection_comparison(axes, image, ...)      one panel per detector, gt dashed
    detection_explorer(models, dataset, ...)         sliders: test image, score threshold

Shape key:
    G  ground-truth boxes of the image      D  detections of one detector on the image
"""
from __future__ import annotations

import torch

from frcnn_edu.boxes import box_iou
from frcnn_edu.viz import show_detections
from frcnn_edu.widgets.explorer import explorer

__all__ = ["count_found", "draw_detection_comparison", "detection_explorer"]


def _check_prediction(prediction, name):
    if not isinstance(prediction, dict) or not {"boxes", "labels", "scores"} <= set(prediction):
        raise ValueError(f"{name} must be a dict(boxes, labels, scores), a detector's output "
                         f"in eval mode; got {type(prediction).__name__}")


def count_found(prediction, target, score_threshold=0.5, iou_threshold=0.5):
    """dict(detections, found, objects) for one image.

    detections: how many predicted boxes score >= ``score_threshold``; objects: G; found: the
    ground-truth boxes that some kept detection of the same class overlaps with IoU >=
    ``iou_threshold`` (no one-to-one matching, so duplicates do not count twice but are not
    penalised either: that is what mAP does).
    """
    _check_prediction(prediction, "prediction")
    scores = torch.as_tensor(prediction["scores"]).reshape(-1)
    keep = scores >= score_threshold
    boxes = torch.as_tensor(prediction["boxes"], dtype=torch.float32).reshape(-1, 4)[keep]
    labels = torch.as_tensor(prediction["labels"]).reshape(-1)[keep]
    gt_boxes = torch.as_tensor(target["boxes"], dtype=torch.float32).reshape(-1, 4)
    gt_labels = torch.as_tensor(target["labels"]).reshape(-1)
    if len(boxes) and len(gt_boxes):
        hit = (box_iou(gt_boxes, boxes) >= iou_threshold) & (gt_labels[:, None] == labels[None])
        found = int(hit.any(1).sum())
    else:
        found = 0
    return {"detections": int(keep.sum()), "found": found, "objects": len(gt_boxes)}


def draw_detection_comparison(axes, image, predictions, target=None, class_names=None,
                              score_threshold=0.5, fontsize=9):
    """One panel per detector: ``predictions`` maps a name to its dict(boxes, labels, scores).

    Each panel shows the image, the detections scoring >= ``score_threshold`` (``show_detections``)
    and, with ``target``, the ground truth dashed in white; its title gives the counts of
    ``count_found``. Returns dict name -> those counts (found and objects only with a target).
    """
    axes = list(axes) if not hasattr(axes, "flat") else list(axes.flat)
    if len(axes) < len(predictions):
        raise ValueError(f"need one axes per detector: {len(predictions)} detectors, "
                         f"{len(axes)} axes")
    out = {}
    for ax, (name, pred) in zip(axes, predictions.items()):
        _check_prediction(pred, f"predictions[{name!r}]")
        show_detections(image, pred, class_names, score_threshold=score_threshold, ax=ax,
                        target=target)
        if target is not None:
            out[name] = count_found(pred, target, score_threshold)
            title = (f"{name}: {out[name]['detections']} detections, "
                     f"{out[name]['found']} of {out[name]['objects']} objects found")
        else:
            kept = torch.as_tensor(pred["scores"]) >= score_threshold
            out[name] = {"detections": int(kept.sum())}
            title = f"{name}: {out[name]['detections']} detections"
        ax.set_title(title, fontsize=fontsize)
    return out


def detection_explorer(models, dataset, index=0, score_threshold=0.5, class_names=None,
                       panel_size=4.2):
    """Sliders for the image of ``dataset`` and the score threshold; one panel per detector.

    ``models`` maps a name to a detector taking ``model([image])`` (Faster R-CNN); each runs once
    per image, in eval mode, and its output is cached. Returns the ``ipywidgets.interactive``;
    ``w.result`` is the dict of ``draw_detection_comparison`` for the current setting.
    """
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    if not models:
        raise ValueError("models must map at least one name to a detector")
    names = class_names if class_names is not None else getattr(dataset, "classes", None)
    cache = {}

    @torch.no_grad()
    def predictions(i):
        if i not in cache:
            image = dataset[i][0]
            cache[i] = {}
            for name, model in models.items():
                device = next(model.parameters()).device
                out = model.eval()([image.to(device)])[0]
                cache[i][name] = {k: v.cpu() for k, v in out.items()}
        return cache[i]

    def show(image_index, threshold):
        image, target = dataset[image_index]
        fig, axes = plt.subplots(1, len(models), figsize=(panel_size * len(models), panel_size),
                                 squeeze=False)
        result = draw_detection_comparison(axes[0], image, predictions(image_index), target,
                                           names, threshold)
        fig.tight_layout()
        plt.show()
        return result

    return explorer(
        show,
        image_index=widgets.IntSlider(value=index, min=0, max=len(dataset) - 1,
                                      description="test image"),
        threshold=widgets.FloatSlider(value=score_threshold, min=0.05, max=0.95, step=0.05,
                                      description="score >="))
