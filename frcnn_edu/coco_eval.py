"""COCO-style evaluation: AP averaged over IoU 0.5:0.95, AP50, AP75, AP by object size, AR.

Mask R-CNN (He et al., 2017, sec. 4) reports COCO's metrics: AP averaged over the IoU thresholds
0.5, 0.55, ..., 0.95, AP50 and AP75, and AP for small (area < 32^2), medium and large
(> 96^2) objects, with box IoU ("bbox") or mask IoU ("segm"). This module computes them as the
reference code, pycocotools' ``COCOeval``, does, written out step by step:

1. per image and class, detections sorted by score (stable, so ties keep their order), at most
   ``max_dets`` (100) of them; ground truth sorted so that ignored boxes come last;
2. per IoU threshold t, greedy matching: each detection in turn takes the unmatched
   ground-truth object with the highest IoU >= t, preferring objects that count over ignored
   ones (crowd regions, or objects outside the area range). A crowd region may absorb any number
   of detections, and its IoU is intersection / detection area (a detection inside a crowd
   overlaps it fully however large the crowd). A detection matched to an ignored object is
   ignored (neither TP nor FP, and a crowd is never a miss); so is an unmatched detection
   outside the area range;
3. per class, the detections of all images merged by score (stable: ties keep image order);
   precision at recall r in {0, 0.01, ..., 1} is the highest precision at any recall >= r
   (101-point interpolation); AP is the mean over those recall levels, then over classes
   (classes without ground truth are left out), then over thresholds.

The IoU thresholds are ``numpy.linspace(0.5, 0.95, 10)`` as in pycocotools (0.7 is stored as
0.7000000000000001), so that an IoU of exactly 0.7 is decided the same way as there. An object's
area (for small / medium / large) is its target's ``area`` when given (COCO files store the
segmentation's area), else its mask's pixel count when it has a mask, else its box's area; a
detection's is its box's area ("bbox") or its mask's ("segm"). Mask IoU uses
``pycocotools.mask.iou`` on run-length encodings.

Shape key:
    D  detections of one image (and class)     G  ground-truth objects of one image (and class)
    T  IoU thresholds (10)    R  recall levels (101)    K  classes    A  area ranges (4)
    M  max-detections settings (1, 10, 100)
"""
import json
from pathlib import Path

import numpy as np
import torch

__all__ = ["coco_evaluate", "write_coco_results", "to_coco_instances", "IOU_THRESHOLDS",
           "AREA_RANGES", "COCO_METRICS"]

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)        # as pycocotools (not exact decimals)
RECALL_LEVELS = np.linspace(0.0, 1.0, 101)
AREA_RANGES = {"all": (0.0, 1e10), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2),
               "large": (96.0 ** 2, 1e10)}
MAX_DETS = (1, 10, 100)
#: The twelve numbers COCO reports, in its order: name -> (AP or AR, IoU, area, max dets).
COCO_METRICS = {"AP": ("ap", None, "all", 100), "AP50": ("ap", 0.5, "all", 100),
                "AP75": ("ap", 0.75, "all", 100), "APs": ("ap", None, "small", 100),
                "APm": ("ap", None, "medium", 100), "APl": ("ap", None, "large", 100),
                "AR1": ("ar", None, "all", 1), "AR10": ("ar", None, "all", 10),
                "AR100": ("ar", None, "all", 100), "ARs": ("ar", None, "small", 100),
                "ARm": ("ar", None, "medium", 100), "ARl": ("ar", None, "large", 100)}


# ----------------------------------------------------------------------------- inputs
def _rles(masks, threshold):
    """Masks [D, 1, H, W] or [D, H, W] (probabilities or 0/1) -> list of compressed RLEs."""
    from pycocotools import mask as mask_utils

    masks = torch.as_tensor(masks).detach().cpu()
    if masks.dim() == 4:
        masks = masks[:, 0]
    if masks.dim() != 3:
        raise ValueError(f"masks must be [N, 1, H, W] or [N, H, W], got {list(masks.shape)}")
    binary = (masks >= threshold) if masks.is_floating_point() else (masks != 0)
    return mask_utils.encode(np.asfortranarray(binary.permute(1, 2, 0).numpy().astype(np.uint8)))


def to_coco_instances(entry, is_target=False, mask_threshold=0.5):
    """One prediction or target dict -> numpy dict(boxes float64 [N, 4] xyxy, labels, scores,
    iscrowd, area, mask_area, rles or None). Predictions may carry ``masks`` (probabilities, thresholded at
    `mask_threshold`) or ``rles`` (already encoded; keeps memory small over a dataset)."""
    from pycocotools import mask as mask_utils

    boxes = torch.as_tensor(entry["boxes"]).detach().cpu().double().reshape(-1, 4).numpy()
    n = len(boxes)
    out = dict(boxes=boxes, labels=torch.as_tensor(entry["labels"]).cpu().numpy().astype(np.int64))
    if len(out["labels"]) != n:
        raise ValueError(f"labels has {len(out['labels'])} entries for {n} boxes")
    rles = entry.get("rles")
    if rles is None and entry.get("masks") is not None:
        rles = _rles(entry["masks"], mask_threshold) if n else []
    out["rles"] = rles
    if is_target:
        crowd = entry.get("iscrowd")
        out["iscrowd"] = np.zeros(n, bool) if crowd is None else torch.as_tensor(crowd).cpu().numpy() != 0
        out["scores"] = None
    else:
        out["scores"] = torch.as_tensor(entry["scores"]).detach().cpu().double().numpy()
        out["iscrowd"] = np.zeros(n, bool)
    box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    out["mask_area"] = mask_utils.area(rles).astype(np.float64) if rles is not None and n else None
    if is_target and entry.get("area") is not None:
        out["area"] = torch.as_tensor(entry["area"]).cpu().double().numpy()   # as in COCO files
    elif is_target and out["mask_area"] is not None:
        out["area"] = out["mask_area"]
    else:
        out["area"] = box_area   # a detection's area for "bbox"; coco_evaluate swaps in the mask's
    return out


# ----------------------------------------------------------------------------- IoU
def box_iou_crowd(dt, gt, gt_crowd):
    """IoU [D, G] of boxes xyxy; against a crowd region it is intersection / detection area."""
    lt = np.maximum(dt[:, None, :2], gt[None, :, :2])
    rb = np.minimum(dt[:, None, 2:], gt[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area_d = (dt[:, 2] - dt[:, 0]) * (dt[:, 3] - dt[:, 1])
    area_g = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    union = np.where(gt_crowd[None, :], area_d[:, None], area_d[:, None] + area_g[None, :] - inter)
    return inter / union


def _iou(dt, gt, iou_type):
    """IoU [D, G] between the detections and ground truth of one image and class."""
    if len(dt["boxes"]) == 0 or len(gt["boxes"]) == 0:
        return np.zeros((len(dt["boxes"]), len(gt["boxes"])))
    if iou_type == "bbox":
        return box_iou_crowd(dt["boxes"], gt["boxes"], gt["iscrowd"])
    from pycocotools import mask as mask_utils
    return np.asarray(mask_utils.iou(dt["rles"], gt["rles"], [int(c) for c in gt["iscrowd"]]))


def _select(inst, keep):
    """The instances at index array `keep` (rles follow)."""
    out = {k: (v[keep] if isinstance(v, np.ndarray) else v) for k, v in inst.items()}
    if inst.get("rles") is not None:
        out["rles"] = [inst["rles"][i] for i in keep]
    return out


# ----------------------------------------------------------------------------- matching
def match_detections(ious, gt_ignore, gt_crowd, thresholds=IOU_THRESHOLDS):
    """Greedy matching of one image and class (COCOeval.evaluateImg).

    ious [D, G] with detections in decreasing score order and ground truth with the counted
    objects first. Returns (matched [T, D] bool, matched_ignored [T, D] bool): whether each
    detection found an object at each threshold, and whether that object is ignored.
    """
    T, (D, G) = len(thresholds), ious.shape
    matched, matched_ignored = np.zeros((T, D), bool), np.zeros((T, D), bool)
    for t, threshold in enumerate(thresholds):
        taken = np.zeros(G, bool)
        for d in range(D):
            best, m = min(threshold, 1 - 1e-10), -1
            for g in range(G):
                if taken[g] and not gt_crowd[g]:        # a crowd may take many detections
                    continue
                if m > -1 and not gt_ignore[m] and gt_ignore[g]:
                    break                                # counted objects come first: done
                if ious[d, g] < best:
                    continue
                best, m = ious[d, g], g
            if m > -1:
                matched[t, d], matched_ignored[t, d], taken[m] = True, gt_ignore[m], True
    return matched, matched_ignored


def evaluate_image(dt, gt, iou_type, area_range, max_det=100):
    """Match one image's detections and objects of one class within one area range; None when
    it has neither. Returns dict(scores [D], matched [T, D], ignored [T, D], gt_ignored [G])."""
    if len(dt["boxes"]) == 0 and len(gt["boxes"]) == 0:
        return None
    lo, hi = area_range
    gt_out = gt["iscrowd"] | (gt["area"] < lo) | (gt["area"] > hi)
    gt_order = np.argsort(gt_out, kind="mergesort")          # counted objects first
    dt_order = np.argsort(-dt["scores"], kind="mergesort")[:max_det]
    dt, gt = _select(dt, dt_order), _select(gt, gt_order)
    gt_out = gt_out[gt_order]
    matched, ignored = match_detections(_iou(dt, gt, iou_type), gt_out, gt["iscrowd"])
    dt_out = (dt["area"] < lo) | (dt["area"] > hi)
    ignored |= ~matched & dt_out[None, :]                    # unmatched and outside the range
    return dict(scores=dt["scores"], matched=matched, ignored=ignored, gt_ignored=gt_out)


# ----------------------------------------------------------------------------- accumulate
def precision_recall(evals, max_det):
    """Interpolated precision [T, R] and recall [T] of one class from its images' evaluations
    (COCOeval.accumulate); (None, None) when the class has no counted object."""
    evals = [e for e in evals if e is not None]
    if not evals:
        return None, None
    scores = np.concatenate([e["scores"][:max_det] for e in evals])
    order = np.argsort(-scores, kind="mergesort")            # ties keep image order
    matched = np.concatenate([e["matched"][:, :max_det] for e in evals], 1)[:, order]
    ignored = np.concatenate([e["ignored"][:, :max_det] for e in evals], 1)[:, order]
    n_pos = int(sum((~e["gt_ignored"]).sum() for e in evals))
    if n_pos == 0:
        return None, None
    tp = np.cumsum(matched & ~ignored, 1).astype(np.float64)
    fp = np.cumsum(~matched & ~ignored, 1).astype(np.float64)
    T = len(IOU_THRESHOLDS)
    precision, recall = np.zeros((T, len(RECALL_LEVELS))), np.zeros(T)
    for t in range(T):
        rc = tp[t] / n_pos
        pr = tp[t] / (tp[t] + fp[t] + np.spacing(1))
        recall[t] = rc[-1] if len(rc) else 0.0
        pr = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr   # precision envelope
        at = np.searchsorted(rc, RECALL_LEVELS, side="left")            # first recall >= r
        reached = at < len(pr)
        precision[t, reached] = pr[at[reached]]                         # 0 beyond the last
    return precision, recall


def _summary(precision, recall):
    """The twelve COCO numbers from precision [T, R, K, A, M] and recall [T, K, A, M] (-1 =
    no ground truth), each the mean over the entries that exist (-1 if none)."""
    areas, stats = list(AREA_RANGES), {}
    for name, (kind, iou, area, max_det) in COCO_METRICS.items():
        a, m = areas.index(area), MAX_DETS.index(max_det)
        values = precision[..., a, m] if kind == "ap" else recall[..., a, m]
        if iou is not None:
            values = values[np.where(np.isclose(IOU_THRESHOLDS, iou))[0]]
        values = values[values > -1]
        stats[name] = float(values.mean()) if values.size else -1.0
    return stats


def coco_evaluate(predictions, targets, num_classes, iou_type="bbox", mask_threshold=0.5):
    """COCO metrics of `predictions` against `targets` (lists, one dict per image).

    predictions: dict(boxes [D, 4] xyxy, labels [D], scores [D], and for "segm" masks
        [D, 1, H, W] probabilities (thresholded at `mask_threshold`) or uint8 [D, H, W], or
        rles (COCO RLEs)). targets: dict(boxes, labels, optional iscrowd [G], area [G], and for
        "segm" masks uint8 [G, H, W]). num_classes counts background (labels 1..K).
    Returns dict(AP, AP50, AP75, APs, APm, APl, AR1, AR10, AR100, ARs, ARm, ARl, ap_per_class,
    precision [T, R, K, A, M], recall [T, K, A, M]); -1 where there is no ground truth.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f'iou_type must be "bbox" (box IoU) or "segm" (mask IoU), got {iou_type!r}')
    if len(predictions) != len(targets):
        raise ValueError(f"{len(predictions)} predictions for {len(targets)} targets: give one per image")
    dts, gts = [], []
    for i, (p, t) in enumerate(zip(predictions, targets)):
        if iou_type == "segm" and (p.get("masks") is None and p.get("rles") is None
                                   or t.get("masks") is None):
            raise ValueError(f'iou_type="segm" needs masks: image {i} has none in its '
                             f'{"prediction" if t.get("masks") is not None else "target"}')
        dt = to_coco_instances(p, False, mask_threshold)
        if iou_type == "segm" and len(dt["boxes"]):
            dt["area"] = dt["mask_area"]          # a detection's size is its mask's area
        dts.append(dt)
        gts.append(to_coco_instances(t, True))
    K, T, R = num_classes - 1, len(IOU_THRESHOLDS), len(RECALL_LEVELS)
    precision = -np.ones((T, R, K, len(AREA_RANGES), len(MAX_DETS)))
    recall = -np.ones((T, K, len(AREA_RANGES), len(MAX_DETS)))
    for k in range(K):
        per_image = [(_select(d, np.nonzero(d["labels"] == k + 1)[0]),
                      _select(g, np.nonzero(g["labels"] == k + 1)[0])) for d, g in zip(dts, gts)]
        for a, area_range in enumerate(AREA_RANGES.values()):
            evals = [evaluate_image(d, g, iou_type, area_range, MAX_DETS[-1]) for d, g in per_image]
            for m, max_det in enumerate(MAX_DETS):
                p, r = precision_recall(evals, max_det)
                if p is not None:
                    precision[:, :, k, a, m], recall[:, k, a, m] = p, r
    stats = _summary(precision, recall)
    per_class = precision[:, :, :, 0, -1]
    stats["ap_per_class"] = [float(per_class[:, :, k].mean()) if (per_class[:, :, k] > -1).all()
                             else -1.0 for k in range(K)]
    stats.update(precision=precision, recall=recall)
    return stats


# ----------------------------------------------------------------------------- results file
def write_coco_results(detections, path, iou_type="bbox", image_ids=None, mask_threshold=0.5):
    """Write detections (one dict per image: boxes xyxy, labels, scores, and masks for "segm")
    as a COCO results file: a JSON list of dict(image_id, category_id, score, and bbox
    [x, y, w, h] for `iou_type` "bbox" or segmentation (compressed RLE, counts as a string)
    for "segm").

    Segmentation results carry no bbox, as Detectron and torchvision write them: given a bbox,
    pycocotools' ``loadRes`` would take the box's area, not the mask's, as the detection's
    area for the small / medium / large ranges. `image_ids` default to 1..N, the ids
    `frcnn_edu.data.write_coco` gives the images, so the file can be scored with pycocotools
    against that annotation file. Returns the list.
    """
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f'iou_type must be "bbox" or "segm", got {iou_type!r}')
    image_ids = list(range(1, len(detections) + 1)) if image_ids is None else list(image_ids)
    if len(image_ids) != len(detections):
        raise ValueError(f"image_ids has {len(image_ids)} ids for {len(detections)} images")
    results = []
    for image_id, det in zip(image_ids, detections):
        if iou_type == "segm" and det.get("masks") is None and det.get("rles") is None:
            raise ValueError(f'iou_type="segm" needs masks; the detections of image {image_id} have none')
        inst = to_coco_instances(det if iou_type == "segm" else dict(det, masks=None, rles=None),
                                 False, mask_threshold)
        for j, (box, label, score) in enumerate(zip(inst["boxes"], inst["labels"], inst["scores"])):
            res = dict(image_id=int(image_id), category_id=int(label), score=float(score))
            if iou_type == "bbox":
                x1, y1, x2, y2 = (float(v) for v in box)
                res["bbox"] = [x1, y1, x2 - x1, y2 - y1]
            else:
                rle = inst["rles"][j]
                counts = rle["counts"]
                res["segmentation"] = {"size": [int(v) for v in rle["size"]],
                                       "counts": counts.decode("ascii") if isinstance(counts, bytes)
                                       else counts}
            results.append(res)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(results))
    return results
