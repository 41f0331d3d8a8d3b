"""frcnn_edu.coco_eval against pycocotools' COCOeval on generated cases (bbox and segm)."""
import contextlib
import io
import json

import numpy as np
import pytest
import torch

from frcnn_edu.coco_eval import (COCO_METRICS, box_iou_crowd, coco_evaluate, match_detections,
                                 write_coco_results)
from frcnn_edu.data import write_coco

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

H, W, K = 120, 130, 3
NAMES = ("__background__", "a", "b", "c")


def _blob(rng, box):
    """uint8 [H, W] mask: a filled rectangle or ellipse inside `box` (integer corners)."""
    x1, y1, x2, y2 = box
    m = np.zeros((H, W), dtype=np.uint8)
    if rng.random() < 0.5:
        m[y1:y2, x1:x2] = 1
    else:
        yy, xx = np.mgrid[0:H, 0:W] + 0.5
        cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
        m[((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1] = 1
    return m


def _random_box(rng):
    size = np.exp(rng.uniform(np.log(3), np.log(120), 2)).astype(int).clip(2, None)
    x1, y1 = rng.integers(0, W - size[0] + 1), rng.integers(0, H - size[1] + 1)
    return [int(x1), int(y1), int(min(x1 + size[0], W)), int(min(y1 + size[1], H))]


def _case(seed, n_images=8):
    """Random images: several classes, crowd regions, empty images, images with no detections,
    near-duplicates and false positives, scores with ties."""
    rng = np.random.default_rng(seed)
    targets, predictions = [], []
    for i in range(n_images):
        g = 0 if i == 0 else int(rng.integers(0, 6))
        boxes = [_random_box(rng) for _ in range(g)] + ([[3, 2, 127, 118]] if i == 2 else [])
        masks = [_blob(rng, b) for b in boxes]
        keep = [j for j, m in enumerate(masks) if m.any()]
        boxes, masks = [boxes[j] for j in keep], [masks[j] for j in keep]
        g = len(boxes)
        labels = rng.integers(1, K + 1, g)
        crowd = rng.random(g) < 0.2
        targets.append(dict(boxes=torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                            labels=torch.tensor(labels, dtype=torch.int64),
                            iscrowd=torch.tensor(crowd, dtype=torch.int64),
                            masks=torch.tensor(np.array(masks, dtype=np.uint8).reshape(g, H, W))))
        dboxes, dlabels, dmasks = [], [], []
        if i != 1:  # image 1 has no detections
            for j in range(g):
                for _ in range(int(rng.integers(0, 3))):  # duplicates of an object
                    jit = rng.normal(0, 1 + 0.05 * (boxes[j][2] - boxes[j][0]), 4)
                    b = np.clip(np.array(boxes[j]) + jit, 0, [W, H, W, H])
                    if b[2] - b[0] < 1 or b[3] - b[1] < 1:
                        continue
                    dboxes.append(b)
                    dlabels.append(labels[j] if rng.random() < 0.85 else rng.integers(1, K + 1))
                    shift = rng.integers(-3, 4, 2)
                    dmasks.append(np.roll(masks[j], tuple(shift), (0, 1)))
            for _ in range(int(rng.integers(0, 4))):  # false positives
                b = _random_box(rng)
                dboxes.append(np.array(b, dtype=np.float64))
                dlabels.append(rng.integers(1, K + 1))
                dmasks.append(_blob(rng, b))
        d = len(dboxes)
        scores = np.round(rng.random(d), 1)  # many ties
        predictions.append(dict(boxes=torch.tensor(np.array(dboxes), dtype=torch.float32).reshape(-1, 4),
                                labels=torch.tensor(np.array(dlabels, dtype=np.int64).reshape(-1)),
                                scores=torch.tensor(scores, dtype=torch.float32),
                                masks=torch.tensor(np.array(dmasks, dtype=np.float32)
                                                   .reshape(d, 1, H, W) * 0.8)))
    return predictions, targets


def _pycocotools(predictions, targets, iou_type, tmp_path):
    image = torch.zeros(3, H, W)
    write_coco([(image, t) for t in targets], tmp_path / "gt.json", class_names=NAMES)
    write_coco_results(predictions, tmp_path / "dt.json", iou_type)
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "gt.json"))
        dt = gt.loadRes(str(tmp_path / "dt.json"))
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
@pytest.mark.parametrize("seed", range(6))
def test_equals_pycocotools(seed, iou_type, tmp_path):
    predictions, targets = _case(seed)
    ev = _pycocotools(predictions, targets, iou_type, tmp_path)
    ours = coco_evaluate(predictions, targets, K + 1, iou_type)
    assert sum(ours[k] > 0 for k in ("APs", "APm", "APl")) >= 2  # the sizes are exercised
    np.testing.assert_allclose([ours[k] for k in COCO_METRICS], ev.stats, atol=1e-6)
    np.testing.assert_allclose(ours["precision"], ev.eval["precision"], atol=1e-6)
    np.testing.assert_allclose(ours["recall"], ev.eval["recall"], atol=1e-6)


def test_crowd_and_ignored_objects(tmp_path):
    """Hand-made: a detection inside a crowd region is neither TP nor FP, and the crowd is not
    a miss; two detections on one object: one TP, one FP."""
    targets = [dict(boxes=torch.tensor([[0.0, 0, 100, 100], [10, 10, 40, 40]]),
                    labels=torch.tensor([1, 1]), iscrowd=torch.tensor([1, 0]))]
    predictions = [dict(boxes=torch.tensor([[60.0, 60, 70, 70], [10, 10, 40, 40], [11, 10, 40, 40]]),
                        labels=torch.tensor([1, 1, 1]), scores=torch.tensor([0.9, 0.8, 0.7]))]
    ours = coco_evaluate(predictions, targets, 2)
    # precision 1 up to recall 1 at the TP (the crowd hit is ignored); the FP comes after
    assert ours["AP"] == pytest.approx(1.0) and ours["AR100"] == pytest.approx(1.0)
    ev = _pycocotools(predictions, targets, "bbox", tmp_path)
    assert ev.stats[0] == pytest.approx(1.0)


def test_box_iou_crowd_is_intersection_over_detection_area():
    dt = np.array([[0.0, 0, 10, 10], [0, 0, 40, 10]])
    gt = np.array([[0.0, 0, 20, 20], [0, 0, 20, 20]])
    iou = box_iou_crowd(dt, gt, np.array([False, True]))
    np.testing.assert_allclose(iou, [[100 / 400, 1.0], [200 / 600, 200 / 400]])


def test_matching_prefers_counted_objects_and_lets_crowds_absorb():
    ious = np.array([[0.6, 0.9], [0.55, 0.9]])     # object 1 is ignored (crowd)
    matched, ignored = match_detections(ious, np.array([False, True]), np.array([False, True]),
                                        thresholds=[0.5])
    # detection 0 takes the counted object despite the higher IoU with the crowd; detection 1
    # finds the object taken and falls to the crowd, which can take any number: ignored
    assert matched.tolist() == [[True, True]] and ignored.tolist() == [[False, True]]


def test_empty_cases():
    empty_pred = dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64),
                      scores=torch.zeros(0))
    target = dict(boxes=torch.tensor([[0.0, 0, 10, 10]]), labels=torch.tensor([2]))
    empty_target = dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64))
    ours = coco_evaluate([empty_pred, empty_pred], [target, empty_target], 3)
    assert ours["AP"] == 0.0 and ours["AR100"] == 0.0 and ours["APl"] == -1.0
    assert ours["ap_per_class"] == [-1.0, 0.0]
    nothing = coco_evaluate([empty_pred], [empty_target], 3)
    assert all(nothing[k] == -1.0 for k in COCO_METRICS)


def test_bad_arguments():
    p = dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64), scores=torch.zeros(0))
    t = dict(boxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.int64))
    with pytest.raises(ValueError, match="iou_type"):
        coco_evaluate([p], [t], 2, "mask")
    with pytest.raises(ValueError, match="needs masks"):
        coco_evaluate([p], [t], 2, "segm")
    with pytest.raises(ValueError, match="one per image"):
        coco_evaluate([p], [t, t], 2)


def test_results_file(tmp_path):
    predictions, _ = _case(3, n_images=3)
    written = write_coco_results(predictions, tmp_path / "r.json", image_ids=[5, 6, 7])
    read = json.loads((tmp_path / "r.json").read_text())
    assert read == written and len(read) == sum(len(p["boxes"]) for p in predictions)
    first = next(i for i, p in enumerate(predictions) if len(p["boxes"]))
    r, p = read[0], predictions[first]
    x1, y1, x2, y2 = p["boxes"][0].tolist()
    assert r["image_id"] == 5 + first and r["category_id"] == int(p["labels"][0])
    assert r["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1]) and r["score"] == pytest.approx(float(p["scores"][0]))
    assert "segmentation" not in r
    r = write_coco_results(predictions, tmp_path / "s.json", "segm", image_ids=[5, 6, 7])[0]
    assert "bbox" not in r and r["image_id"] == 5 + first
    from pycocotools import mask as mask_utils
    decoded = mask_utils.decode(dict(r["segmentation"], counts=r["segmentation"]["counts"].encode()))
    assert np.array_equal(decoded, (p["masks"][0, 0] >= 0.5).numpy().astype(np.uint8))
    with pytest.raises(ValueError, match="image_ids"):
        write_coco_results(predictions, tmp_path / "r.json", image_ids=[1])
    with pytest.raises(ValueError, match="needs masks"):
        write_coco_results([dict(predictions[0], masks=None)], tmp_path / "r.json", "segm")
