"""Evaluation: PASCAL VOC average precision / mAP and proposal recall.

Every paper of the series reports PASCAL VOC mean average precision (R-CNN sec. 3, Fast R-CNN
sec. 4, Faster R-CNN sec. 4; the metric is defined by Everingham et al., IJCV 2010, and its
devkit). Faster R-CNN sec. 4.1 (Fig. 4) also plots proposal recall against the IoU threshold;
average recall is from Hosang et al., "What makes for effective detection proposals?" (2016).

Two AP definitions exist, selected by ``method``:

* ``"11point"``: VOC 2007 (the one the three papers use): mean over t in {0, 0.1, ..., 1} of the
  highest precision at any recall >= t.
* ``"area"``: VOC 2010 and later: exact area under the monotone precision envelope
  (precision made non-increasing from the right).

Matching follows the official VOC devkit (``VOCevaldet.m``):

1. the detections of one class from *all* images are sorted by decreasing score (a stable sort,
   so ties keep image order, then the order within the image);
2. each detection takes the ground-truth box of its image and class with the highest IoU, matched
   or not (the devkit does not look for the best *unmatched* box, unlike COCO);
3. IoU >= ``iou_threshold`` and that box "difficult": the detection is ignored (neither TP nor
   FP); IoU >= threshold and the box not yet matched: TP, the box becomes matched; already
   matched: FP (a duplicate); IoU < threshold or no box of that class in the image: FP;
4. difficult boxes do not count in the number of positives ``npos``.

COCO's ``iscrowd`` regions (a target key, as `read_coco` gives it) are ignored the same way: a
crowd box is a group the annotators did not split into objects, so a detection on it is neither
right nor wrong and missing it costs nothing. The ignore flag of a box is ``difficult OR
iscrowd``. (COCO's own evaluation matches crowd regions by the share of the *detection* inside
them and lets several detections match one; here a crowd box is matched by IoU like a difficult
one, which ignores every detection whose best box it is, so several are ignored as well.)

Deviations from the devkit, both deliberate: IoU uses this library's continuous box convention
(width ``x2 - x1``; the devkit adds 1 for pixel-index boxes), and the 11 recall levels are
``i / 10`` exactly (``numpy.arange(0, 1.1, 0.1)`` in the Python ports yields 0.30000000000000004).
py-faster-rcnn's Python port tests ``IoU > threshold``; the MATLAB devkit (followed here) ``>=``.

Shape key:
    D  detections of one image
    G  ground-truth boxes of one image
    P  proposals of one image
    T  IoU thresholds
    num_classes = K + 1 classes, background 0 included (labels of boxes are 1..K)
"""
import math

import torch

from frcnn_edu.boxes import box_iou
from frcnn_edu.data.targets import check_labels

__all__ = ["COCO_IOU_THRESHOLDS", "average_precision", "voc_eval", "sliding_window_baseline",
           "proposal_recall",
           "average_recall"]

#: IoU thresholds 0.5, 0.55, ..., 0.95 (exact decimals), as in COCO and Hosang et al.
COCO_IOU_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def _as_curve(values, name):
    """1-D float64 CPU tensor with values in [0, 1], or a clear error."""
    values = torch.as_tensor(values).detach().to("cpu", torch.float64)
    if values.dim() != 1:
        raise ValueError(f"{name} must be 1-D (one value per detection), got shape {list(values.shape)}")
    if not torch.isfinite(values).all() or (values < 0).any() or (values > 1).any():
        raise ValueError(f"{name} values must lie in [0, 1] (no NaN), got {values.tolist()}")
    return values


def average_precision(recall, precision, method="area"):
    """Average precision of one class from its precision/recall curve (VOC devkit ``VOCap``).

    Args:
        recall: [D] recall after each detection, in score order (non-decreasing).
        precision: [D] precision after each detection.
        method: "area" (VOC 2010+, area under the monotone precision envelope) or "11point"
            (VOC 2007, mean of the interpolated precision at recall 0, 0.1, ..., 1).

    Returns:
        float in [0, 1]; 0.0 for an empty curve (no detections).
    """
    recall, precision = _as_curve(recall, "recall"), _as_curve(precision, "precision")
    if recall.shape != precision.shape:
        raise ValueError(f"recall and precision must have the same length, got {len(recall)} and "
                         f"{len(precision)}")
    if (recall[1:] < recall[:-1]).any():
        raise ValueError("recall must be non-decreasing (the curve in decreasing score order)")
    if method == "11point":
        levels = torch.arange(11, dtype=torch.float64) / 10
        reached = recall[None, :] >= levels[:, None]              # [11, D]
        best = torch.where(reached, precision[None, :], 0.0).amax(1) \
            if len(recall) else torch.zeros(11, dtype=torch.float64)
        return float(best.mean())
    if method == "area":
        zero, one = torch.zeros(1, dtype=torch.float64), torch.ones(1, dtype=torch.float64)
        mrec = torch.cat([zero, recall, one])
        mpre = torch.cat([zero, precision, zero])
        mpre = mpre.flip(0).cummax(0).values.flip(0)               # precision envelope
        steps = torch.nonzero(mrec[1:] != mrec[:-1]).flatten()     # where recall changes
        return float(((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]).sum())
    raise ValueError(f'method must be "area" or "11point", got {method!r}')


def _check_entry(entry, where, num_classes, is_target):
    """Validate one prediction/target dict; return CPU tensors (boxes float64)."""
    keys = ("boxes", "labels") if is_target else ("boxes", "labels", "scores")
    if not isinstance(entry, dict) or not all(k in entry for k in keys):
        found = sorted(entry) if isinstance(entry, dict) else type(entry).__name__
        raise TypeError(f"{where} must be a dict with keys {list(keys)}, got {found}")
    out = {k: torch.as_tensor(entry[k]).detach().cpu() for k in keys}
    boxes = out["boxes"]
    if boxes.dim() != 2 or boxes.shape[1] != 4 or not boxes.is_floating_point():
        raise ValueError(f"{where}['boxes'] must be a float tensor of shape [N, 4], got "
                         f"{boxes.dtype} {list(boxes.shape)}")
    if not torch.isfinite(boxes).all():
        raise ValueError(f"{where}['boxes'] contains NaN or inf")
    n = boxes.shape[0]
    check_labels(out["labels"], f"{where}['labels']", n, num_classes, dtype=None)
    extras = ("difficult", "iscrowd") if is_target else ("scores",)
    for extra in extras:
        if is_target:
            out[extra] = torch.as_tensor(entry.get(extra, [False] * n)).detach().cpu().bool()
        if out[extra].shape != (n,):
            raise ValueError(f"{where}['{extra}'] must have shape [{n}] (one per box), got "
                             f"{list(out[extra].shape)}")
    if is_target:  # the devkit's ignore rule, for VOC's difficult and COCO's crowd boxes alike
        out["difficult"] = out.pop("difficult") | out.pop("iscrowd")
    if not is_target and not torch.isfinite(out["scores"].double()).all():
        raise ValueError(f"{where}['scores'] contains NaN or inf")
    out["boxes"] = boxes.double()
    return out


def _check_inputs(predictions, targets, num_classes, iou_threshold, class_names):
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes counts background too and must be an int >= 2, got {num_classes!r}")
    if not isinstance(predictions, (list, tuple)) or not isinstance(targets, (list, tuple)):
        raise TypeError("predictions and targets must be lists with one dict per image")
    if len(predictions) != len(targets):
        raise ValueError(f"predictions and targets must have one entry per image, got "
                         f"{len(predictions)} and {len(targets)}")
    if not 0 < iou_threshold <= 1:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"class_names must have num_classes={num_classes} names (background "
                         f"first), got {len(class_names)}")
    preds = [_check_entry(p, f"predictions[{i}]", num_classes, False) for i, p in enumerate(predictions)]
    gts = [_check_entry(t, f"targets[{i}]", num_classes, True) for i, t in enumerate(targets)]
    return preds, gts


def _class_detections(preds, gts, cls):
    """Detections of class ``cls`` over all images, with their best gt (devkit step 2).

    Returns scores [D], image index [D], best IoU [D] (-1 when the image has no gt of the class),
    best gt index within the image's class-``cls`` boxes [D], per-image difficult flags, npos.
    """
    # empty first entries: no images at all ([] predictions) still concatenates to [0] tensors
    scores, image_ids = [torch.zeros(0, dtype=torch.float64)], [torch.zeros(0, dtype=torch.int64)]
    best_iou, best_gt = [torch.zeros(0, dtype=torch.float64)], [torch.zeros(0, dtype=torch.int64)]
    difficult = []
    for i, (pred, gt) in enumerate(zip(preds, gts)):
        det, keep_gt = pred["labels"] == cls, gt["labels"] == cls
        det_boxes, gt_boxes = pred["boxes"][det], gt["boxes"][keep_gt]
        difficult.append(gt["difficult"][keep_gt])
        if len(gt_boxes):
            iou_max, iou_arg = box_iou(det_boxes, gt_boxes).max(1)
        else:
            iou_max = torch.full((len(det_boxes),), -1.0, dtype=torch.float64)
            iou_arg = torch.zeros(len(det_boxes), dtype=torch.int64)
        scores.append(pred["scores"][det].double())
        image_ids.append(torch.full((len(det_boxes),), i, dtype=torch.int64))
        best_iou.append(iou_max)
        best_gt.append(iou_arg)
    npos = int(sum((~d).sum() for d in difficult))
    return (torch.cat(scores), torch.cat(image_ids), torch.cat(best_iou), torch.cat(best_gt),
            difficult, npos)


def _match_class(preds, gts, cls, iou_threshold):
    """TP flags [D'] in decreasing score order (ignored detections left out) and npos."""
    scores, image_ids, best_iou, best_gt, difficult, npos = _class_detections(preds, gts, cls)
    order = torch.sort(scores, descending=True, stable=True).indices
    matched = [torch.zeros(len(d), dtype=torch.bool) for d in difficult]
    is_tp = []
    for d in order.tolist():
        img, j = int(image_ids[d]), int(best_gt[d])
        if best_iou[d] < iou_threshold:
            is_tp.append(False)                 # no box overlaps enough: FP
        elif difficult[img][j]:
            continue                            # best box is difficult: ignored
        elif matched[img][j]:
            is_tp.append(False)                 # duplicate detection: FP
        else:
            matched[img][j] = True
            is_tp.append(True)
    return torch.tensor(is_tp, dtype=torch.bool), npos


def voc_eval(predictions, targets, num_classes, iou_threshold=0.5, method="area", class_names=None):
    """PASCAL VOC per-class AP and mAP (matching rules in the module docstring).

    Args:
        predictions: list (one per image) of dict(boxes float [D, 4] xyxy, labels int64 [D] in
            1..num_classes-1, scores [D]).
        targets: list (same images) of dict(boxes float [G, 4], labels int64 [G], optional
            difficult bool [G] and iscrowd [G] (COCO's 0/1), default all False; a box flagged
            by either is ignored).
        num_classes: K + 1, background included (as the models' ``num_classes``).
        iou_threshold: minimum IoU of a true positive (VOC: 0.5).
        method: "area" (VOC 2010+) or "11point" (VOC 2007, used by the three papers).
        class_names: optional num_classes names (background first) for ``ap_by_name``.

    Returns:
        dict with ``mAP`` (float), ``ap`` {class_id: float}, ``num_gt`` {class_id: int,
        non-difficult boxes}, ``recall`` / ``precision`` {class_id: float64 tensor [D']} (the
        curve, ignored detections left out) and, with class_names, ``ap_by_name``.
        A class without any non-difficult gt box has AP ``nan`` and is left out of the mAP
        (VOC never has such a class; a small synthetic test set can). mAP is ``nan`` when no
        class has a gt box. A class with gt boxes but no detections has AP 0.
    """
    preds, gts = _check_inputs(predictions, targets, num_classes, iou_threshold, class_names)
    result = {"ap": {}, "num_gt": {}, "recall": {}, "precision": {}}
    for cls in range(1, num_classes):
        is_tp, npos = _match_class(preds, gts, cls, iou_threshold)
        tp = torch.cumsum(is_tp.double(), 0)
        fp = torch.cumsum((~is_tp).double(), 0)
        recall = tp / max(npos, 1)
        precision = tp / (tp + fp)
        result["recall"][cls], result["precision"][cls], result["num_gt"][cls] = recall, precision, npos
        result["ap"][cls] = average_precision(recall, precision, method) if npos else math.nan
    valid = [ap for cls, ap in result["ap"].items() if result["num_gt"][cls] > 0]
    result["mAP"] = sum(valid) / len(valid) if valid else math.nan
    if class_names is not None:
        result["ap_by_name"] = {class_names[c]: ap for c, ap in result["ap"].items()}
    return result


def _check_box_list(boxes, name):
    if not isinstance(boxes, (list, tuple)):
        raise TypeError(f"{name} must be a list with one Tensor[N, 4] per image, got {type(boxes).__name__}")
    for i, b in enumerate(boxes):
        if not torch.is_tensor(b) or b.dim() != 2 or b.shape[1] != 4 or not b.is_floating_point():
            shape = list(b.shape) if torch.is_tensor(b) else type(b).__name__
            raise ValueError(f"{name}[{i}] must be a float Tensor of shape [N, 4], got {shape}")


def proposal_recall(proposals, gt_boxes, iou_thresholds=COCO_IOU_THRESHOLDS, top_n=None):
    """Fraction of gt boxes covered by a proposal, per IoU threshold (Faster R-CNN Fig. 4).

    A gt box counts as covered at threshold t when its highest IoU with the first ``top_n``
    proposals of its image (all when None; proposals are assumed sorted best first) is >= t.
    Recall pools the gt boxes of all images.

    Args:
        proposals: list of [P, 4] per image (P may be 0: that image's gt boxes are missed).
        gt_boxes: list of [G, 4] per image.
        iou_thresholds: T thresholds (default 0.5, 0.55, ..., 0.95).
        top_n: positive int or None.

    Returns:
        float32 [T] on the device of the gt boxes; ``nan`` everywhere when there is no gt box.
    """
    _check_box_list(proposals, "proposals")
    _check_box_list(gt_boxes, "gt_boxes")
    if len(proposals) != len(gt_boxes):
        raise ValueError(f"proposals and gt_boxes must have one entry per image, got "
                         f"{len(proposals)} and {len(gt_boxes)}")
    if top_n is not None and (not isinstance(top_n, int) or top_n < 1):
        raise ValueError(f"top_n must be a positive int or None, got {top_n!r}")
    device = gt_boxes[0].device if len(gt_boxes) else torch.device("cpu")
    dtype = gt_boxes[0].dtype if len(gt_boxes) else torch.float32
    best = [torch.zeros(0, dtype=dtype, device=device)]
    for props, gt in zip(proposals, gt_boxes):
        props, gt = props[:top_n].to(device, dtype), gt.to(device, dtype)
        if len(gt) and len(props):
            best.append(box_iou(props, gt).max(0).values)             # best IoU of each gt box
        elif len(gt):
            best.append(torch.zeros(len(gt), dtype=dtype, device=device))
    best = torch.cat(best)
    # compare in the IoU's own dtype, so an IoU of exactly 0.7 counts at the threshold 0.7
    thresholds = torch.as_tensor(iou_thresholds, dtype=dtype, device=device).reshape(-1)
    if not len(best):
        return torch.full(thresholds.shape, math.nan, dtype=torch.float32, device=device)
    covered = (best[None, :] >= thresholds[:, None]).sum(1)           # [T]
    return (covered.double() / len(best)).float()


def average_recall(proposals, gt_boxes, iou_thresholds=COCO_IOU_THRESHOLDS, top_n=None):
    """Average recall (AR): mean of :func:`proposal_recall` over the IoU thresholds.

    Hosang et al. define AR as twice the area under the recall-vs-IoU curve on [0.5, 1]; the
    mean over 0.5, 0.55, ..., 0.95 (COCO's AR) approximates it. Returns a float (nan without gt).
    """
    return float(proposal_recall(proposals, gt_boxes, iou_thresholds, top_n).mean())


def sliding_window_baseline(dataset, size, stride=16, seed=0):
    """A detector that knows the box statistics and nothing else (lesson 08's baseline): squares
    of `size` pixels every `stride` pixels over each image of `dataset` (the anchors of one size
    and ratio 1, without an RPN's scores or deltas), each with a random score, label 1. A model
    scoring above it on held-out images learned something from the pixels.

    Returns one dict(boxes [D, 4], labels [D], scores [D]) per image, as a detector's eval
    output; the image sizes come from `dataset.get_annotation(i)["size"]` (no image is read).
    """
    from frcnn_edu.anchors import grid_anchors, make_base_anchors

    g = torch.Generator().manual_seed(seed)
    base = make_base_anchors(sizes=(size,), ratios=(1.0,))
    predictions = []
    for i in range(len(dataset)):
        h, w = dataset.get_annotation(i)["size"]
        boxes = grid_anchors(base, (h // stride, w // stride), stride)
        predictions.append(dict(boxes=boxes, labels=torch.ones(len(boxes), dtype=torch.int64),
                                scores=torch.rand(len(boxes), generator=g)))
    return predictions
