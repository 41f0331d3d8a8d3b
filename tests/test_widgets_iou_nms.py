"""Tests for frcnn_edu.widgets.iou_nms: what the drawing functions put on the axes, the fixed
noisy detections, and the NMS explorer's result as its sliders move."""
import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from frcnn_edu.boxes import batched_nms, box_iou, nms  # noqa: E402
from frcnn_edu.data import CLASSES, ShapesDataset  # noqa: E402
from frcnn_edu.viz import label_color  # noqa: E402
from frcnn_edu.widgets import iou_nms  # noqa: E402
from frcnn_edu.widgets.iou_nms import (IOU_COLORS, SUPPRESSED_COLOR,  # noqa: E402
                                       draw_iou, draw_nms, nms_explorer, nms_keep,
                                       noisy_detections)


def _same_color(a, b):
    return np.allclose(to_rgba(a)[:3], to_rgba(b)[:3])


@pytest.fixture(scope="module")
def scene():
    image, target = ShapesDataset("test", num_images=5)[2]
    det = noisy_detections(target["boxes"], target["labels"], len(CLASSES), seed=2)
    return image, target, det


@pytest.fixture(scope="module")
def crowded():
    """The first crowded test image with two objects of one class at box IoU >= 0.6."""
    ds = ShapesDataset("test", num_images=20, crowded=True)
    for i in range(len(ds)):
        image, target = ds[i]
        same = target["labels"][:, None] == target["labels"][None]
        iou = (box_iou(target["boxes"], target["boxes"]) * same).fill_diagonal_(0)
        if iou.max() >= 0.6:
            det = noisy_detections(target["boxes"], target["labels"], len(CLASSES), seed=i)
            return dict(image=image, detections=det, gt_boxes=target["boxes"],
                        gt_labels=target["labels"])
    raise AssertionError("no crowded image with a same-class pair at IoU >= 0.6")


def _found(scene, iou_threshold):
    """Ground-truth objects that keep a detection of their class at IoU >= 0.5 after NMS."""
    det, gt = scene["detections"], scene["gt_boxes"]
    keep = nms_keep(det, iou_threshold, 0.05)
    gt_labels = scene["gt_labels"][:, None]
    iou = box_iou(gt, det["boxes"][keep]) * (gt_labels == det["labels"][keep][None])
    return int((iou.max(1).values >= 0.5).sum())


def test_module_reachable_from_widgets_package():
    from frcnn_edu import widgets

    assert widgets.iou_nms is iou_nms


def test_draw_iou_patches_colours_and_value(ax):
    a, b = (10, 10, 50, 40), (30, 20, 70, 60)
    iou = draw_iou(ax, a, b)
    expected = float(box_iou(torch.tensor([a], dtype=torch.float32),
                             torch.tensor([b], dtype=torch.float32))[0, 0])
    assert iou == pytest.approx(expected) == pytest.approx(400 / 2400)
    assert len(ax.patches) == 3
    assert _same_color(ax.patches[0].get_edgecolor(), IOU_COLORS["a"])
    assert _same_color(ax.patches[1].get_edgecolor(), IOU_COLORS["b"])
    inter = ax.patches[2]
    assert _same_color(inter.get_facecolor(), IOU_COLORS["intersection"])
    assert (inter.get_x(), inter.get_y(), inter.get_width(), inter.get_height()) == (30, 20, 20, 20)
    assert ax.get_title() == "IoU = 400 / 2400 = 0.17"
    assert ax.yaxis_inverted()


def test_draw_iou_disjoint_and_bad_input(ax):
    assert draw_iou(ax, (0, 0, 10, 10), (20, 20, 30, 30), title=False) == 0.0
    assert len(ax.patches) == 2 and ax.get_title() == ""
    with pytest.raises(ValueError, match="box_b"):
        draw_iou(ax, (0, 0, 10, 10), (5, 5, 5, 8))
    with pytest.raises(ValueError, match="box_a"):
        draw_iou(ax, (0, 0, 10), (5, 5, 6, 8))


def test_noisy_detections_reproducible_and_valid(scene):
    image, target, det = scene
    again = noisy_detections(target["boxes"], target["labels"], len(CLASSES), seed=2)
    for k in ("boxes", "labels", "scores"):
        assert torch.equal(det[k], again[k])
    other = noisy_detections(target["boxes"], target["labels"], len(CLASSES), seed=3)
    assert not torch.equal(det["boxes"], other["boxes"])
    g = len(target["boxes"])
    assert len(det["boxes"]) == g * 6 + 3  # 5 + 1 wrong-class per object, 3 false positives
    assert det["boxes"].dtype == torch.float32 and det["labels"].dtype == torch.int64
    assert (det["boxes"][:, 2:] > det["boxes"][:, :2]).all()
    assert (det["boxes"] >= 0).all() and (det["boxes"] <= 160).all()
    assert ((det["labels"] >= 1) & (det["labels"] < len(CLASSES))).all()
    assert ((det["scores"] > 0) & (det["scores"] < 1)).all()
    # every object is found: its best detection overlaps it well
    assert (box_iou(target["boxes"], det["boxes"]).max(1).values > 0.6).all()


def test_noisy_detections_bad_labels_and_empty():
    with pytest.raises(ValueError, match="gt_labels"):
        noisy_detections(torch.tensor([[0.0, 0, 10, 10]]), torch.tensor([6]), 6)
    empty = noisy_detections(torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), 6,
                             false_positives=0)
    assert empty["boxes"].shape == (0, 4) and empty["labels"].shape == (0,)


def test_nms_keep_matches_library(scene):
    _, _, det = scene
    b, s, lab = det["boxes"], det["scores"], det["labels"]
    assert torch.equal(nms_keep(det, 0.5), batched_nms(b, s, lab, 0.5))
    assert torch.equal(nms_keep(det, 0.5, per_class=False), nms(b, s, 0.5))
    kept = nms_keep(det, 0.3, score_threshold=0.5)
    assert (s[kept] >= 0.5).all()
    above = torch.where(s >= 0.5)[0]
    assert torch.equal(kept, above[batched_nms(b[above], s[above], lab[above], 0.3)])
    assert len(nms_keep(det, 0.5, score_threshold=1.0)) == 0


def test_draw_nms_patches_and_counts(ax, scene):
    image, _, det = scene
    keep = nms_keep(det, 0.5)
    counts = draw_nms(ax, det["boxes"], det["scores"], keep, det["labels"], CLASSES)
    n = len(det["boxes"])
    assert counts == dict(kept=len(keep), suppressed=n - len(keep), below_score=0)
    assert len(ax.patches) == n
    grey = ax.patches[:n - len(keep)]
    assert all(_same_color(p.get_edgecolor(), SUPPRESSED_COLOR) and p.get_linestyle() == "--"
               for p in grey)
    for patch, i in zip(ax.patches[n - len(keep):], keep.flip(0).tolist()):  # best on top
        assert _same_color(patch.get_edgecolor(), label_color(int(det["labels"][i])))
    assert len(ax.texts) == len(keep)  # captions on kept boxes only
    best = int(keep[0])
    caption = f"{CLASSES[int(det['labels'][best])]} {float(det['scores'][best]):.2f}"
    assert ax.texts[-1].get_text() == caption


def test_draw_nms_hides_suppressed_and_low_scores(ax, scene):
    _, _, det = scene
    keep = nms_keep(det, 0.5, score_threshold=0.6)
    counts = draw_nms(ax, det["boxes"], det["scores"], keep, show_suppressed=False,
                      score_threshold=0.6)
    low = int((det["scores"] < 0.6).sum())
    assert counts["below_score"] == low
    assert counts["kept"] + counts["suppressed"] + low == len(det["boxes"])
    assert len(ax.patches) == len(keep)
    with pytest.raises(ValueError, match="scores"):
        draw_nms(ax, det["boxes"], det["scores"][:-1], keep)


def test_nms_explorer_result_follows_the_sliders(scene):
    pytest.importorskip("ipywidgets")
    image, target, det = scene
    w = nms_explorer(image, det, CLASSES, gt_boxes=target["boxes"], iou_threshold=0.5)
    iou_s, score_s, per_class, show_sup = w.children[:4]
    assert (iou_s.description, score_s.description) == ("IoU threshold", "score threshold")
    w.update()
    assert w.result["kept"] == len(nms_keep(det, 0.5, 0.05))
    iou_s.value = 0.3
    strict = w.result["kept"]
    iou_s.value = 0.8
    assert w.result["kept"] >= strict
    assert w.result["kept"] == len(nms_keep(det, 0.8, 0.05))
    per_class.value = False
    assert w.result["kept"] == len(nms_keep(det, 0.8, 0.05, per_class=False))
    score_s.value = 0.95
    assert w.result["below_score"] == int((det["scores"] < 0.95).sum())
    show_sup.value = False
    assert sum(w.result.values()) == len(det["boxes"])


def test_nms_explorer_without_crowded_scene_has_no_switch(scene):
    pytest.importorskip("ipywidgets")
    image, target, det = scene
    w = nms_explorer(image, det, CLASSES)
    assert len(w.children) == 5  # 4 controls and the output
    assert all(getattr(c, "description", "") != "crowded image" for c in w.children)


def test_nms_explorer_switches_to_the_crowded_scene(scene, crowded):
    pytest.importorskip("ipywidgets")
    image, target, det = scene
    w = nms_explorer(image, det, CLASSES, gt_boxes=target["boxes"], iou_threshold=0.3,
                     crowded_scene=crowded)
    iou_s, switch = w.children[0], w.children[4]
    assert switch.description == "crowded image" and switch.value is False
    w.update()
    assert w.result["kept"] == len(nms_keep(det, 0.3, 0.05))
    switch.value = True
    cdet = crowded["detections"]
    assert w.result["kept"] == len(nms_keep(cdet, 0.3, 0.05))
    assert sum(w.result.values()) == len(cdet["boxes"])
    # the point of the crowded scene: at IoU 0.3 per-class NMS removes every box of a true
    # neighbour, at 0.5 each object keeps one
    assert _found(crowded, 0.3) < _found(crowded, 0.5) == len(crowded["gt_boxes"])
    iou_s.value = 0.7
    assert w.result["kept"] == len(nms_keep(cdet, 0.7, 0.05))
    switch.value = False
    assert w.result["kept"] == len(nms_keep(det, 0.7, 0.05))


def test_nms_explorer_bad_crowded_scene(scene):
    pytest.importorskip("ipywidgets")
    image, _, det = scene
    with pytest.raises(ValueError, match="crowded_scene"):
        nms_explorer(image, det, CLASSES, crowded_scene=dict(image=image))
