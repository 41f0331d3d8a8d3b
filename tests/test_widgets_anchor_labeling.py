"""Tests for frcnn_edu.widgets.anchor_labeling: anchors and labels equal the library's, what the
drawing functions put on the axes, the IoU table, and the explorer's counts as its widgets move."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.collections import PatchCollection  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from frcnn_edu.anchors import grid_anchors, inside_image, make_base_anchors  # noqa: E402
from frcnn_edu.data import ShapesDataset  # noqa: E402
from frcnn_edu.matching import label_anchors  # noqa: E402
from frcnn_edu.viz import ANCHOR_LABEL_COLORS  # noqa: E402
from frcnn_edu.widgets import anchor_labeling  # noqa: E402
from frcnn_edu.widgets.anchor_labeling import (GT_COLOR, anchor_labeling_explorer,  # noqa: E402
                                               count_labels, draw_anchor_labeling,
                                               draw_labeling_case, image_anchors, iou_table,
                                               label_image_anchors)


def _same_color(a, b):
    return np.allclose(to_rgba(a)[:3], to_rgba(b)[:3])


@pytest.fixture(scope="module")
def dataset():
    return ShapesDataset("train", num_images=4)


# A small case: A0 rule (i), A1 and A2 tie as G1's best (rule ii, IoU 1/3), A3 negative,
# A4 crosses the border of a 100 x 100 image.
CASE_ANCHORS = torch.tensor([[12.0, 10, 52, 50], [50, 60, 70, 100], [70, 60, 90, 100],
                             [0, 60, 20, 100], [80, 0, 120, 40]])
CASE_BOXES = torch.tensor([[10.0, 10, 50, 50], [60, 60, 80, 100]])


def test_module_reachable_from_widgets_package():
    from frcnn_edu import widgets

    assert widgets.anchor_labeling is anchor_labeling


def test_image_anchors_is_the_padded_feature_grid():
    anchors = image_anchors((160, 160), (20, 40, 80), (0.5, 1.0, 2.0), 16)
    assert anchors.shape == (10 * 10 * 9, 4)
    assert torch.equal(anchors, grid_anchors(make_base_anchors((20, 40, 80)), (10, 10), 16))
    assert image_anchors((160, 160), (40,), (1.0,), 32).shape == (25, 4)
    assert image_anchors((150, 170), (40,), (1.0,), 16).shape == (10 * 11, 4)  # ceil, as padding
    with pytest.raises(ValueError, match="stride"):
        image_anchors((160, 160), (40,), (1.0,), 0)


def test_label_image_anchors_matches_library(dataset):
    image, target = dataset[0]
    anchors, labels, valid = label_image_anchors((160, 160), target["boxes"], (20, 40, 80),
                                                 (0.5, 1.0, 2.0), 16)
    assert torch.equal(valid, inside_image(anchors, (160, 160)))
    expected, _ = label_anchors(anchors, target["boxes"], valid=valid)
    assert torch.equal(labels, expected)
    assert (labels[~valid] == -1).all() and (labels == 1).sum() >= len(target["boxes"])
    _, labels2, valid2 = label_image_anchors((160, 160), target["boxes"], (20, 40, 80),
                                             (0.5, 1.0, 2.0), 16, ignore_cross_border=False)
    assert valid2.all() and torch.equal(labels2, label_anchors(anchors, target["boxes"])[0])


def test_count_labels():
    labels = torch.tensor([1, 0, 0, -1, -1, -1])
    valid = torch.tensor([True, True, True, True, False, False])
    assert count_labels(labels, valid) == dict(anchors=6, positive=1, negative=2, ignored=3,
                                               cross_border=2)
    assert count_labels(labels)["cross_border"] == 0


def test_iou_table_rows_columns_and_maxima():
    valid = inside_image(CASE_ANCHORS, (100, 100))
    labels, _ = label_anchors(CASE_ANCHORS, CASE_BOXES, valid=valid)
    assert labels.tolist() == [1, 1, 1, 0, -1]
    text = iou_table(CASE_ANCHORS, CASE_BOXES, valid, labels)
    lines = text.splitlines()
    assert len(lines) == 1 + 5 + 2
    assert lines[0].split() == ["G0", "G1", "row", "max", "border", "label"]
    assert lines[1].split() == ["A0", "0.90", "0.00", "0.90", "in", "1"]
    assert lines[5].split() == ["A4", "0.00", "0.00", "0.00", "out", "-1"]
    assert lines[-2].split()[:4] == ["col", "max", "0.90", "0.33"]
    assert lines[-1].split()[:3] == ["best", "A0", "A1,A2"]
    bare = iou_table(CASE_ANCHORS, CASE_BOXES, valid, maxima=False).splitlines()
    assert len(bare) == 6 and bare[0].split() == ["G0", "G1", "border"]


def test_iou_table_box_without_valid_anchor():
    text = iou_table(CASE_ANCHORS[:1], torch.tensor([[90.0, 90, 99, 99]]))
    assert text.splitlines()[-1].split()[:2] == ["best", "none"]


def test_draw_labeling_case_patches_colours_and_names(ax):
    valid = inside_image(CASE_ANCHORS, (100, 100))
    labels, _ = label_anchors(CASE_ANCHORS, CASE_BOXES, valid=valid)
    counts = draw_labeling_case(ax, CASE_ANCHORS, CASE_BOXES, labels, image_size=(100, 100),
                                title="case")
    assert counts == dict(anchors=5, positive=3, negative=1, ignored=1, cross_border=0)
    assert len(ax.patches) == 2 + 1  # gt boxes, then the image border
    assert all(_same_color(p.get_edgecolor(), GT_COLOR) for p in ax.patches[:2])
    assert ax.patches[2].get_linestyle() == "--"
    colls = [c for c in ax.collections if isinstance(c, PatchCollection)]
    assert [len(c.get_paths()) for c in colls] == [1, 1, 3]  # ignored, negative, positive
    for coll, value in zip(colls, (-1, 0, 1)):
        assert _same_color(coll.get_edgecolor()[0], ANCHOR_LABEL_COLORS[value])
    names = [t.get_text() for t in ax.texts]
    assert names == ["G0", "G1", "A0", "A1", "A2", "A3", "A4"]
    assert ax.get_title() == "case" and ax.yaxis_inverted()


def test_draw_anchor_labeling_counts_and_groups(ax, dataset):
    image, target = dataset[1]
    anchors, labels, valid = label_image_anchors((160, 160), target["boxes"], (20, 40, 80),
                                                 (0.5, 1.0, 2.0), 16)
    counts = draw_anchor_labeling(ax, image, target["boxes"], anchors, labels, valid,
                                  show=(1, 0), max_per_label=50)
    assert counts == count_labels(labels, valid)
    assert counts["positive"] + counts["negative"] + counts["ignored"] == 900
    assert len(ax.patches) == len(target["boxes"])
    assert all(_same_color(p.get_edgecolor(), "white") and p.get_linestyle() == "--" for p in ax.patches)
    colls = [c for c in ax.collections if isinstance(c, PatchCollection)]
    assert [len(c.get_paths()) for c in colls] == [min(counts["negative"], 50),
                                                   min(counts["positive"], 50)]
    assert "positive" in ax.get_title() and len(ax.images) == 1
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"positive ({counts['positive']})", f"negative ({counts['negative']})"]


def test_explorer_result_follows_the_widgets(dataset):
    pytest.importorskip("ipywidgets")
    w = anchor_labeling_explorer(dataset, index=0)
    index, sizes, ratios, stride, pos, neg, border, show = w.children[:8]
    assert (pos.description, neg.description) == ("positive IoU >=", "negative IoU <")
    w.update()

    def expected(i, sz=(20, 40, 80), r=(0.5, 1.0, 2.0), s=16, p=0.7, n=0.3, b=True):
        image, target = dataset[i]
        _, lab, val = label_image_anchors((160, 160), target["boxes"], sz, r, s, p, n, b)
        return count_labels(lab, val)

    assert w.result == expected(0)
    index.value = 2
    assert w.result == expected(2)
    pos.value = 0.5
    assert w.result == expected(2, p=0.5)
    assert w.result["positive"] >= expected(2)["positive"]
    neg.value = 0.6  # above the positive threshold: lowered to it
    assert w.result == expected(2, p=0.5, n=0.5)
    neg.value = 0.3
    stride.value = 32
    assert w.result["anchors"] == 5 * 5 * 9 and w.result == expected(2, p=0.5, s=32)
    sizes.value = (40,)
    ratios.value = (1.0,)
    assert w.result == expected(2, sz=(40,), r=(1.0,), p=0.5, s=32)
    border.value = False
    assert w.result["cross_border"] == 0
    show.value = (1, 0, -1)
    assert w.result == expected(2, sz=(40,), r=(1.0,), p=0.5, s=32, b=False)


def test_explorer_accepts_sizes_not_in_the_menu(dataset):
    pytest.importorskip("ipywidgets")
    w = anchor_labeling_explorer(dataset, sizes=(24, 48), ratios=(1.0, 2.0), stride=12)
    w.update()
    assert w.children[1].value == (24, 48) and w.children[3].value == 12
    assert w.result["anchors"] == 14 * 14 * 4
