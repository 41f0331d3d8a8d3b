"""One image's detections with their masks, and the mask head's 28 x 28 grid on one RoI (lesson 07).

The mask branch predicts each RoI's mask on an m x m grid laid over the RoI (sec. 3); the
pasted mask in the image is that grid scaled to the box. These helpers show both for the
detection chosen with a slider: the image with every mask, and beside it the chosen RoI's grid
(the predicted probabilities) with its mask target, the ground-truth mask resampled onto the
same grid (`project_masks_on_boxes`).

    draw_mask_grid(ax, probs, target=None)          the m x m probabilities, target outlined
    draw_masks_and_grid(axes, image, prediction, ...)   image + masks, and one RoI's grid
    mask_explorer(image, prediction, target, ...)   slider: which detection

Shape key:
    D  detections of the image    m  mask size (28)    H, W  image height and width
"""
from __future__ import annotations

import numpy as np
import torch

from frcnn_edu.viz import draw_boxes, draw_masks, label_color, show_image

__all__ = ["draw_mask_grid", "draw_masks_and_grid", "mask_explorer"]


def draw_mask_grid(ax, probs, target=None, title=None):
    """The m x m mask probabilities of one RoI (one ``AxesImage``), cell lines every 7 cells,
    and the target's 0/1 grid outlined (one contour set) when given. Returns ax."""
    probs = torch.as_tensor(probs).detach().cpu().float()
    if probs.dim() != 2 or probs.shape[0] != probs.shape[1]:
        raise ValueError(f"probs must be an m x m grid, got {list(probs.shape)}")
    m = probs.shape[0]
    ax.imshow(probs.numpy(), cmap="viridis", vmin=0, vmax=1, interpolation="nearest",
              extent=(0, m, m, 0))
    for k in range(0, m + 1, 7):
        ax.axhline(k, color="white", lw=0.3, alpha=0.5)
        ax.axvline(k, color="white", lw=0.3, alpha=0.5)
    if target is not None:
        t = torch.as_tensor(target).detach().cpu().float().numpy()
        centres = np.arange(m) + 0.5
        ax.contour(centres, centres, t, levels=[0.5], colors="red", linewidths=1.2)
    ax.set_xlim(0, m)
    ax.set_ylim(m, 0)
    ax.set_title(title or f"{m} x {m} mask of the RoI", fontsize=9)
    return ax


def draw_masks_and_grid(axes, image, prediction, index=0, target=None, class_names=None,
                        mask_size=28):
    """Left: the image, every detection's mask and box, detection `index` drawn thicker.
    Right: its grid, ``prediction["mask_probs"][index]`` (m x m), with its mask target when
    `target` (with masks) is given: the target of the RoI is the ground-truth object of highest
    IoU. Returns dict(index, label, mask_pixels, target_pixels or None)."""
    from frcnn_edu.boxes import box_iou
    from frcnn_edu.models.mask_rcnn import project_masks_on_boxes

    boxes, labels = prediction["boxes"], prediction["labels"]
    if not 0 <= index < len(boxes):
        raise ValueError(f"index must be in 0..{len(boxes) - 1}, got {index}")
    show_image(axes[0], image)
    draw_masks(axes[0], prediction["masks"], labels)
    draw_boxes(axes[0], boxes, labels, class_names=class_names, show_text=False, linewidth=1)
    draw_boxes(axes[0], boxes[index:index + 1], labels[index:index + 1], class_names=class_names,
               color=label_color(labels[index]), linewidth=3)
    grid_target = None
    if target is not None and len(target["boxes"]):
        matched = box_iou(boxes[index:index + 1], target["boxes"]).argmax(1)
        grid_target = project_masks_on_boxes(target["masks"], boxes[index:index + 1], matched,
                                             mask_size)[0]
    name = class_names[int(labels[index])] if class_names is not None else int(labels[index])
    draw_mask_grid(axes[1], prediction["mask_probs"][index], grid_target,
                   title=f"detection {index} ({name}): probabilities" +
                         (", target in red" if grid_target is not None else ""))
    pixels = int((torch.as_tensor(prediction["masks"][index]) >= 0.5).sum())
    return {"index": index, "label": int(labels[index]), "mask_pixels": pixels,
            "target_pixels": None if grid_target is None else int(grid_target.sum())}


def mask_explorer(image, prediction, target=None, class_names=None, panel_size=4.0):
    """A slider over the detections of one image (`prediction`: boxes, labels, masks [D, 1, H,
    W] and mask_probs [D, m, m]). Returns the ``ipywidgets.interactive``; ``w.result`` is the
    dict of `draw_masks_and_grid` for the chosen detection."""
    import ipywidgets as widgets
    import matplotlib.pyplot as plt

    if len(prediction["boxes"]) == 0:
        raise ValueError("the prediction has no detections to browse")

    def show(detection):
        fig, axes = plt.subplots(1, 2, figsize=(2 * panel_size, panel_size))
        result = draw_masks_and_grid(axes, image, prediction, detection, target, class_names,
                                     prediction["mask_probs"].shape[-1])
        fig.tight_layout()
        plt.show()
        return result

    return widgets.interactive(show, detection=widgets.IntSlider(
        value=0, min=0, max=len(prediction["boxes"]) - 1, description="detection"))
