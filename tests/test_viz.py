"""Tests for frcnn_edu.viz: count and colour what each drawing function puts on the axes."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from frcnn_edu.data import CLASSES, ShapesDataset  # noqa: E402
from frcnn_edu.viz import (ANCHOR_LABEL_COLORS, draw_anchor_labels, draw_anchors,  # noqa: E402
                           draw_boxes, label_color, show_detections, show_image, show_samples)

BOXES = torch.tensor([[10.0, 20.0, 50.0, 40.0], [0.0, 0.0, 5.0, 5.0], [30.0, 30.0, 90.0, 70.0]])


def _same_color(a, b):
    return np.allclose(to_rgba(a)[:3], to_rgba(b)[:3])  # RGB; alpha is a drawing option


def test_show_image_tensor_and_array(ax):
    image = torch.rand(3, 12, 20)
    assert show_image(ax, image, title="x") is ax
    assert ax.images[0].get_array().shape == (12, 20, 3) and ax.get_title() == "x"
    show_image(ax, (np.random.rand(12, 20, 3) * 255).astype(np.uint8))
    assert len(ax.images) == 2
    with pytest.raises(ValueError, match="image"):
        show_image(ax, torch.rand(5, 12, 20))


def test_draw_boxes_counts_colours_and_captions(ax):
    labels = torch.tensor([1, 4, 1])
    out = draw_boxes(ax, BOXES, labels, scores=torch.tensor([0.9, 0.5, 0.25]), class_names=CLASSES)
    assert out is ax and len(ax.patches) == 3
    for patch, label in zip(ax.patches, labels.tolist()):
        assert _same_color(patch.get_edgecolor(), label_color(label))
    first = ax.patches[0]
    assert (first.get_x(), first.get_y(), first.get_width(), first.get_height()) == (10, 20, 40, 20)
    assert [t.get_text() for t in ax.texts] == ["ellipse 0.90", "star 0.50", "ellipse 0.25"]
    assert not _same_color(label_color(1), label_color(4))


def test_draw_boxes_options(ax):
    draw_boxes(ax, BOXES.numpy(), color="red", show_text=False, labels=[1, 2, 3])
    assert all(_same_color(p.get_edgecolor(), "red") for p in ax.patches) and not ax.texts
    draw_boxes(ax, torch.zeros(0, 4))
    draw_boxes(ax, [])
    assert len(ax.patches) == 3
    draw_boxes(ax, BOXES[:1], labels=torch.tensor([7]))  # no class names: the number is shown
    assert ax.texts[-1].get_text() == "7"
    with pytest.raises(ValueError, match=r"boxes must have shape \[N, 4\]"):
        draw_boxes(ax, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="labels must have one entry per box"):
        draw_boxes(ax, BOXES, labels=torch.tensor([1, 2]))


def test_draw_anchors(ax):
    anchors = torch.tensor([[-10.0, -10.0, 10.0, 10.0], [0, 0, 32, 16], [4, 4, 12, 40], [1, 1, 2, 2]])
    assert draw_anchors(ax, anchors, color="blue") is ax
    assert len(ax.collections) == 1 and len(ax.collections[0].get_paths()) == 4
    assert _same_color(ax.collections[0].get_edgecolor()[0], "blue")
    assert ax.yaxis_inverted()  # image convention without an image
    draw_anchors(ax, anchors, max_anchors=2, show_centers=True)
    assert len(ax.collections[1].get_paths()) == 2 and len(ax.lines) == 1
    with pytest.raises(ValueError, match="anchors"):
        draw_anchors(ax, torch.zeros(4))


def test_draw_anchors_keeps_the_image_view(ax):
    show_image(ax, torch.rand(3, 40, 60))
    limits = ax.get_xlim(), ax.get_ylim()
    draw_anchors(ax, torch.tensor([[-50.0, -50.0, 200.0, 200.0]]))
    assert (ax.get_xlim(), ax.get_ylim()) == limits


def test_draw_anchor_labels_three_colours_and_legend(ax):
    anchors = torch.rand(10, 2).repeat(1, 2) * 50 + torch.tensor([0.0, 0.0, 8.0, 8.0])
    labels = torch.tensor([1, 0, 0, -1, 0, 1, -1, 0, 0, 0])
    assert draw_anchor_labels(ax, anchors, labels) is ax
    assert len(ax.collections) == 3  # ignored, negatives, positives (positives on top)
    counts = {-1: 2, 0: 6, 1: 2}
    for coll, value in zip(ax.collections, (-1, 0, 1)):
        assert len(coll.get_paths()) == counts[value]
        assert _same_color(coll.get_edgecolor()[0], ANCHOR_LABEL_COLORS[value])
    colours = {to_rgba(c) for c in ANCHOR_LABEL_COLORS.values()}
    assert len(colours) == 3
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["positive (2)", "negative (6)", "ignored (2)"]


def test_draw_anchor_labels_options_and_errors(ax):
    anchors = torch.tensor([[0.0, 0, 10, 10]] * 6)
    labels = torch.tensor([1, 0, 0, 0, 0, -1])
    draw_anchor_labels(ax, anchors, labels, show=(1, 0), max_per_label=2, legend=False,
                       colors={1: "black"})
    assert [len(c.get_paths()) for c in ax.collections] == [2, 1]  # negatives thinned to 2
    assert _same_color(ax.collections[1].get_edgecolor()[0], "black") and ax.get_legend() is None
    with pytest.raises(ValueError, match="labels must be 1"):
        draw_anchor_labels(ax, anchors, torch.tensor([1, 0, 2, 0, 0, 0]))
    with pytest.raises(ValueError, match="one entry per anchor"):
        draw_anchor_labels(ax, anchors, torch.tensor([1, 0]))


def test_show_detections_threshold_and_gt(ax):
    image = torch.rand(3, 100, 100)
    prediction = dict(boxes=BOXES, labels=torch.tensor([1, 2, 3]),
                      scores=torch.tensor([0.9, 0.3, 0.6]))
    target = dict(boxes=BOXES[:2], labels=torch.tensor([1, 2]))
    assert show_detections(image, prediction, CLASSES, 0.5, ax=ax, target=target) is ax
    assert len(ax.patches) == 2 + 2  # dashed gt boxes + the predictions with score >= 0.5
    assert sorted(t.get_text() for t in ax.texts) == ["ellipse 0.90", "triangle 0.60"]
    new_ax = show_detections(image, prediction, CLASSES, score_threshold=0.95)
    assert len(new_ax.patches) == 0
    plt.close(new_ax.figure)


def test_show_samples():
    fig = show_samples(ShapesDataset("val", num_images=3), range(3), ncols=2)
    axes = fig.axes
    assert len(axes) == 4 and len(axes[0].images) == 1 and len(axes[3].images) == 0
    assert len(axes[0].patches) == len(ShapesDataset("val", num_images=3)[0][1]["boxes"])
    plt.close(fig)
