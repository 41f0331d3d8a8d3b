"""VOC's difficult and COCO's iscrowd: both kept through the formats, both ignored by the VOC
metric the way the devkit ignores difficult boxes (a detection whose best box is ignored is
neither a true nor a false positive; ignored boxes do not count as positives)."""
import json

import pytest
import torch

from frcnn_edu.boxes import box_iou
from frcnn_edu.data import AnnotationError, VOCDataset, read_coco, write_coco, write_voc
from frcnn_edu.data.shapes import CLASSES
from frcnn_edu.evaluation import average_precision, voc_eval

G1, G2, MISS = [0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0], [50.0, 50.0, 60.0, 60.0]
HARD = [40.0, 0.0, 50.0, 10.0]


def _pred(boxes, scores, labels=None):
    labels = [1] * len(boxes) if labels is None else labels
    return dict(boxes=torch.tensor(boxes).reshape(-1, 4), scores=torch.tensor(scores),
                labels=torch.tensor(labels, dtype=torch.int64))


def _gt(boxes, labels=None, **flags):
    labels = [1] * len(boxes) if labels is None else labels
    out = dict(boxes=torch.tensor(boxes).reshape(-1, 4), labels=torch.tensor(labels, dtype=torch.int64))
    out.update({k: torch.tensor(v) for k, v in flags.items()})
    return out


def devkit_ap(preds, gts, cls, ignored, threshold=0.5):
    """VOCevaldet's loop, written out plainly: global score order, best gt by IoU, ignored
    (difficult) best box -> neither TP nor FP; `ignored[i]` flags the boxes of image i."""
    dets = sorted(((float(s), i, b) for i, p in enumerate(preds)
                   for b, s, l in zip(p["boxes"], p["scores"], p["labels"]) if l == cls),
                  key=lambda d: -d[0])
    mine = [g["labels"] == cls for g in gts]
    used = [torch.zeros(int(m.sum()), dtype=torch.bool) for m in mine]
    npos = sum(int((~ignored[i][m]).sum()) for i, m in enumerate(mine))
    tp, fp = [], []
    for _, i, box in dets:
        boxes = gts[i]["boxes"][mine[i]]
        if len(boxes) == 0:
            tp.append(0), fp.append(1)
            continue
        iou, j = box_iou(box[None].double(), boxes.double())[0].max(0)
        if iou < threshold:
            tp.append(0), fp.append(1)
        elif ignored[i][mine[i]][j]:
            continue
        elif not used[i][j]:
            used[i][j] = True
            tp.append(1), fp.append(0)
        else:
            tp.append(0), fp.append(1)
    tp, fp = torch.tensor(tp, dtype=torch.float64).cumsum(0), torch.tensor(fp, dtype=torch.float64).cumsum(0)
    return average_precision(tp / max(npos, 1), tp / (tp + fp).clamp(min=1))


def test_iscrowd_is_ignored_like_difficult_and_changes_ap():
    preds = [_pred([HARD, G1, MISS, G2], [0.95, 0.9, 0.8, 0.7])]
    crowd = [_gt([G1, HARD, G2], iscrowd=[0, 1, 0])]
    plain = [_gt([G1, HARD, G2])]
    got = voc_eval(preds, crowd, 2)
    # the crowd detection is ignored: TP, FP, TP over 2 positives -> 0.5 * 1 + 0.5 * 2/3
    assert got["num_gt"][1] == 2 and got["mAP"] == pytest.approx(5 / 6)
    # counted as an object it would be a TP over 3 positives: 2/3 * 1 + 1/3 * 3/4
    assert voc_eval(preds, plain, 2)["mAP"] == pytest.approx(11 / 12)
    same = voc_eval(preds, [_gt([G1, HARD, G2], difficult=[False, True, False])], 2)
    assert same["mAP"] == got["mAP"]
    # missing a crowd region costs nothing
    assert voc_eval([_pred([G1, G2], [0.9, 0.8])], crowd, 2)["mAP"] == pytest.approx(1.0)


def test_ignore_flags_match_the_devkit_rule_on_random_data():
    g = torch.Generator().manual_seed(0)
    for trial in range(20):
        preds, gts, ignored = [], [], []
        for _ in range(4):
            xy = torch.randint(0, 60, (5, 2), generator=g).float()
            gt_boxes = torch.cat([xy, xy + torch.randint(8, 30, (5, 2), generator=g)], 1)
            jitter = torch.randint(-4, 5, (7, 4), generator=g).float()
            det = gt_boxes[torch.randint(0, 5, (7,), generator=g)] + jitter
            det[:, 2:] = torch.maximum(det[:, 2:], det[:, :2] + 1)
            labels = torch.randint(1, 3, (5,), generator=g)
            difficult = torch.rand(5, generator=g) < 0.2
            iscrowd = (torch.rand(5, generator=g) < 0.2).long()
            gts.append(dict(boxes=gt_boxes, labels=labels, difficult=difficult, iscrowd=iscrowd))
            preds.append(dict(boxes=det, scores=torch.rand(7, generator=g),
                              labels=torch.randint(1, 3, (7,), generator=g)))
            ignored.append(difficult | iscrowd.bool())
        got = voc_eval(preds, gts, 3)
        for cls in (1, 2):
            assert got["ap"][cls] == pytest.approx(devkit_ap(preds, gts, cls, ignored)), trial


def test_write_coco_keeps_difficult_and_the_metric_agrees(tmp_path):
    image = torch.rand(3, 64, 64)
    target = _gt([G1, HARD, G2], labels=[1, 1, 2], difficult=[False, True, False])
    write_voc([(image, target)], tmp_path / "voc", split="test", image_format="png")
    voc = VOCDataset(tmp_path / "voc", "test", class_names=CLASSES)
    data = write_coco(voc, tmp_path / "coco.json", class_names=CLASSES)
    assert [a["difficult"] for a in data["annotations"]] == [0, 1, 0]
    assert [a["iscrowd"] for a in data["annotations"]] == [0, 0, 0]   # a crowd is another thing
    back = read_coco(tmp_path / "coco.json").targets[0]
    assert back["difficult"].tolist() == [False, True, False]
    assert back["iscrowd"].tolist() == [0, 0, 0]
    preds = [_pred([HARD, MISS, G1, G2], [0.95, 0.9, 0.8, 0.7], labels=[1, 1, 1, 2])]
    from_voc = voc_eval(preds, [voc[0][1]], len(CLASSES))["mAP"]
    from_coco = voc_eval(preds, [back], len(CLASSES))["mAP"]
    dropped = voc_eval(preds, [dict(back, difficult=torch.zeros(3, dtype=torch.bool))],
                       len(CLASSES))["mAP"]
    assert from_coco == from_voc and from_coco != dropped   # the flag changes AP, and survives


def test_coco_difficult_field_must_be_0_or_1(tmp_path):
    data = dict(images=[dict(id=1, file_name="a.png", height=50, width=60)],
                categories=[dict(id=1, name="dog")],
                annotations=[dict(id=4, image_id=1, category_id=1, bbox=[1, 2, 5, 8],
                                  difficult="yes")])
    (tmp_path / "a.json").write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"a\.json: annotation id 4: 'difficult': .*0 or 1"):
        read_coco(tmp_path / "a.json")
    data["annotations"][0].pop("difficult")          # absent: not difficult
    (tmp_path / "a.json").write_text(json.dumps(data))
    assert read_coco(tmp_path / "a.json").targets[0]["difficult"].tolist() == [False]
