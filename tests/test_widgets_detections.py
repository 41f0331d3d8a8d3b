"""Tests for frcnn_edu.widgets.detections: the per-image counts, the side-by-side drawing and the
explorer's result as its sliders move (with fake detectors that return fixed outputs)."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

from frcnn_edu.data import CLASSES, ShapesDataset  # noqa: E402
from frcnn_edu.widgets.detections import (count_found, detection_explorer,  # noqa: E402
                                          draw_detection_comparison)

GT = {"boxes": torch.tensor([[10.0, 10, 50, 50], [80, 80, 120, 130]]),
      "labels": torch.tensor([1, 2])}


def _pred(boxes, labels, scores):
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64), "scores": torch.tensor(scores)}


# gt 0 found (class 1, IoU 0.9); gt 1 overlapped but by the wrong class; one false positive
PRED = _pred([[11, 11, 50, 50], [80, 80, 120, 128], [0, 100, 30, 150]], [1, 1, 3], [0.9, 0.8, 0.3])


def test_count_found_needs_the_class_and_the_threshold():
    assert count_found(PRED, GT, 0.5) == {"detections": 2, "found": 1, "objects": 2}
    assert count_found(PRED, GT, 0.2) == {"detections": 3, "found": 1, "objects": 2}
    assert count_found(PRED, GT, 0.95) == {"detections": 0, "found": 0, "objects": 2}
    right_class = _pred([[80, 80, 120, 128]], [2], [0.6])
    assert count_found(right_class, GT, 0.5)["found"] == 1
    assert count_found(right_class, GT, 0.5, iou_threshold=0.99)["found"] == 0
    assert count_found(_pred([], [], []), GT) == {"detections": 0, "found": 0, "objects": 2}


def test_count_found_rejects_non_predictions():
    with pytest.raises(ValueError, match="prediction"):
        count_found([1, 2], GT)


def test_draw_detection_comparison_titles_and_counts():
    image = torch.rand(3, 160, 160)
    fig, axes = plt.subplots(1, 2)
    out = draw_detection_comparison(axes, image, {"A": PRED, "B": _pred([], [], [])}, GT, CLASSES)
    assert out == {"A": {"detections": 2, "found": 1, "objects": 2},
                   "B": {"detections": 0, "found": 0, "objects": 2}}
    assert axes[0].get_title() == "A: 2 detections, 1 of 2 objects found"
    assert len(axes[0].patches) == 2 + 2 and len(axes[1].patches) == 2   # gt dashed + kept
    out = draw_detection_comparison(axes, image, {"A": PRED}, score_threshold=0.2)
    assert out == {"A": {"detections": 3}}


def test_draw_detection_comparison_bad_input():
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="one axes per detector"):
        draw_detection_comparison([ax], torch.rand(3, 8, 8), {"A": PRED, "B": PRED})
    with pytest.raises(ValueError, match="predictions\\['A'\\]"):
        draw_detection_comparison([ax], torch.rand(3, 8, 8), {"A": torch.zeros(3)})


class FixedDetector(nn.Module):
    """Returns PRED for every image and counts its calls."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.calls = 0

    def forward(self, images):
        self.calls += 1
        return [dict(PRED) for _ in images]


def test_detection_explorer_follows_the_sliders_and_caches():
    pytest.importorskip("ipywidgets")
    data = ShapesDataset("test", num_images=3)
    a, b = FixedDetector(), FixedDetector()
    w = detection_explorer({"A": a, "B": b}, data, index=1, score_threshold=0.5)
    image_s, score_s = w.children[:2]
    assert (image_s.description, score_s.description) == ("test image", "score >=")
    w.update()
    assert set(w.result) == {"A", "B"}
    assert w.result["A"]["detections"] == 2
    assert w.result["A"]["objects"] == len(data[1][1]["boxes"])
    score_s.value = 0.2
    assert w.result["B"]["detections"] == 3
    assert a.calls == 1 and b.calls == 1            # same image: cached
    image_s.value = 2
    assert a.calls == 2 and w.result["A"]["objects"] == len(data[2][1]["boxes"])
    with pytest.raises(ValueError, match="models"):
        detection_explorer({}, data)
