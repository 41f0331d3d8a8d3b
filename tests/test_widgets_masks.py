"""The lesson 07 widget: the drawing functions directly, and the explorer's slider."""
import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from frcnn_edu.data import CLASSES, ShapesDataset  # noqa: E402
from frcnn_edu.models.mask_rcnn import paste_masks_in_image  # noqa: E402
from frcnn_edu.widgets import masks as W  # noqa: E402


@pytest.fixture(scope="module")
def item():
    image, target = ShapesDataset("test", num_images=1, masks=True)[0]
    probs = torch.rand(len(target["boxes"]), 28, 28)
    prediction = dict(boxes=target["boxes"], labels=target["labels"],
                      scores=torch.ones(len(target["boxes"])), mask_probs=probs,
                      masks=paste_masks_in_image(probs, target["boxes"], (160, 160))[:, None])
    return image, target, prediction


def test_draw_mask_grid(item):
    fig, ax = plt.subplots()
    W.draw_mask_grid(ax, torch.rand(28, 28), (torch.rand(28, 28) > 0.5).float())
    assert len(ax.images) == 1 and ax.images[0].get_array().shape == (28, 28)
    assert len(ax.collections) >= 1           # the target's outline
    with pytest.raises(ValueError, match="m x m"):
        W.draw_mask_grid(ax, torch.rand(28, 14))
    plt.close(fig)


def test_draw_masks_and_grid_reports_the_roi(item):
    image, target, prediction = item
    fig, axes = plt.subplots(1, 2)
    out = W.draw_masks_and_grid(axes, image, prediction, 0, target, CLASSES)
    assert out["label"] == int(target["labels"][0])
    assert out["mask_pixels"] == int((prediction["masks"][0] >= 0.5).sum())
    assert out["target_pixels"] > 0 and len(axes[0].images) == 2   # image + mask overlay
    with pytest.raises(ValueError, match="index"):
        W.draw_masks_and_grid(axes, image, prediction, 99)
    plt.close(fig)


def test_explorer_slider(item):
    image, target, prediction = item
    w = W.mask_explorer(image, prediction, target, CLASSES)
    last = len(prediction["boxes"]) - 1
    w.children[0].value = last
    assert w.result["index"] == last and w.children[0].max == last
    plt.close("all")
    empty = dict(prediction, boxes=torch.zeros(0, 4))
    with pytest.raises(ValueError, match="no detections"):
        W.mask_explorer(image, empty)
