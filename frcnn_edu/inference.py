"""Running a trained detector over a dataset, timing it, and scoring it with VOC mAP (and, for
Mask R-CNN, COCO's box and mask AP).

`speed_ladder` times the papers' three detectors side by side on the same images (R-CNN sec. 2.2,
Fast R-CNN sec. 4.4, Faster R-CNN sec. 4.1 and table 5).

Shape key:
    B  images per forward pass    D  detections of one image    K  foreground classes
    P  proposals of one image
"""
import time

import torch

from .coco_eval import coco_evaluate, to_coco_instances
from .data.batching import batch_images
from .evaluation import voc_eval
from .models import FastRCNN, shapes_faster_rcnn, shapes_rcnn
from .proposals import selective_search


def _encode_masks(prediction):
    """Replace a prediction's ``masks`` [D, 1, H, W] by ``rles``, their COCO run-length
    encodings thresholded at 0.5: a dataset's pasted masks would not fit in memory."""
    if "masks" not in prediction:
        return prediction
    out = {k: v for k, v in prediction.items() if k != "masks"}
    out["rles"] = to_coco_instances(prediction)["rles"] or []
    return out


@torch.no_grad()
def predict_dataset(model, dataset, batch_size=8, device=None, proposals=None, encode_masks=False):
    """Run `model` in eval mode over `dataset`. Returns (predictions, targets, seconds).

    `proposals` (one [P, 4] per image) is passed to detectors that take external proposals
    (Fast R-CNN, R-CNN). Predictions and targets come back on the CPU. `encode_masks`: Mask
    R-CNN's masks come back as ``rles`` (COCO run-length encodings of the masks >= 0.5).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).eval()
    predictions, targets, seconds = [], [], 0.0
    for start in range(0, len(dataset), batch_size):
        items = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        images = [img.to(device) for img, _ in items]
        t0 = time.perf_counter()
        if proposals is None:
            out = model(images)
        elif hasattr(model, "predict"):
            out = model.predict(images, [p.to(device) for p in proposals[start:start + len(items)]])
        else:
            out = model(images, proposals=[p.to(device) for p in proposals[start:start + len(items)]])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - t0
        out = [{k: v.cpu() for k, v in o.items()} for o in out]
        predictions += [_encode_masks(o) for o in out] if encode_masks else out
        targets += [t for _, t in items]
    return predictions, targets, seconds


def evaluate(model, dataset, batch_size=8, device=None, proposals=None, method="area"):
    """mAP@0.5 (VOC), per-class AP by name, and inference images/s of `model` on `dataset`.

    A model that predicts masks, on a dataset with masks, also gets COCO's metrics (101-point
    AP, `frcnn_edu.coco_eval`): ``mask_mAP`` (mask AP at IoU 0.5), ``mask_AP`` (mask AP over IoU
    0.5:0.95), ``mask_AP75``, and the same for boxes, ``box_AP50``, ``box_AP``, ``box_AP75``.
    """
    predictions, targets, seconds = predict_dataset(model, dataset, batch_size, device, proposals,
                                                    encode_masks=True)
    result = voc_eval(predictions, targets, dataset.num_classes, 0.5, method, dataset.classes)
    metrics = {"mAP": round(result["mAP"], 4),
               "ap": {name: round(ap, 4) for name, ap in result["ap_by_name"].items()},
               "images_per_second": round(len(dataset) / max(seconds, 1e-9), 2)}
    if predictions and "rles" in predictions[0] and all("masks" in t for t in targets):
        metrics.update(coco_metrics(predictions, targets, dataset.num_classes))
    return metrics


def coco_metrics(predictions, targets, num_classes):
    """COCO box and mask AP (at 0.5, 0.75 and over 0.5:0.95), rounded to 4 decimals."""
    box = coco_evaluate(predictions, targets, num_classes, "bbox")
    mask = coco_evaluate(predictions, targets, num_classes, "segm")
    return {"mask_mAP": round(mask["AP50"], 4), "mask_AP": round(mask["AP"], 4),
            "mask_AP75": round(mask["AP75"], 4), "box_AP50": round(box["AP50"], 4),
            "box_AP": round(box["AP"], 4), "box_AP75": round(box["AP75"], 4)}


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _seconds_per_call(fn, inputs, device):
    """Mean wall-clock seconds of fn(x) over `inputs` (one call per image, GPU work included)."""
    _sync(device)
    start = time.perf_counter()
    for x in inputs:
        fn(x)
    _sync(device)
    return (time.perf_counter() - start) / len(inputs)


def _selective_search_timed(images, device, max_proposals, min_size):
    """Selective search (OpenCV, on the CPU) for each image: (proposals on `device`, s/image)."""
    proposals, start = [], time.perf_counter()
    for img in images:
        proposals.append(selective_search(img.cpu(), max_proposals=max_proposals,
                                          min_size=min_size))
    seconds = (time.perf_counter() - start) / len(images)
    return [p.to(device) for p in proposals], seconds


@torch.no_grad()
def speed_ladder(images, device="cpu", max_proposals=2000, ss_min_size=20, faster_rcnn=None):
    """Test-time seconds per image of R-CNN, Fast R-CNN and Faster R-CNN on the same images.

    R-CNN runs its CNN once per selective-search proposal; Fast R-CNN runs the conv layers once
    per image but still waits for selective search; Faster R-CNN computes its proposals with the
    RPN on the conv features it shares with the detector. Every detector sees one image at a
    time, after an untimed warm-up call; selective search runs once per image (OpenCV, CPU).

    images: list of float [3, H, W]. max_proposals, ss_min_size: selective search's settings.
    faster_rcnn: a (trained) FasterRCNN, put in eval mode on `device`; by default the course's
        ``shapes_faster_rcnn(pretrained=True)``. The Fast R-CNN of the ladder reuses its conv
        layers and RoI head, so the two differ only in where the proposals come from, as in the
        Faster R-CNN paper's timing table. R-CNN uses the pre-trained TinyVGG (its SVMs are
        untrained: the CNN passes over the warped crops are nearly all of its time).

    Returns a dict of seconds per image, proposals included: "selective search", "R-CNN",
    "Fast R-CNN", "Faster R-CNN", and two parts of Faster R-CNN: "conv layers" (the shared
    backbone alone) and "RPN proposals" (backbone + RPN + proposal layer).
    """
    if not isinstance(images, (list, tuple)) or len(images) == 0:
        raise ValueError("images must be a non-empty list of [3, H, W] tensors")
    device = torch.device(device)
    images = [img.to(device) for img in images]
    faster = (faster_rcnn if faster_rcnn is not None else shapes_faster_rcnn(pretrained=True))
    faster = faster.to(device).eval()
    fast = FastRCNN(faster.backbone, faster.num_classes).to(device).eval()
    fast.roi_heads = faster.roi_heads                       # the same detector, other proposals
    rcnn = shapes_rcnn(pretrained=True, num_classes=faster.num_classes).to(device).eval()
    proposals, ss_seconds = _selective_search_timed(images, device, max_proposals, ss_min_size)
    pairs = list(zip(images, proposals))
    few = [(images[0], proposals[0][:16])]                  # warm-ups: cheap, untimed
    _seconds_per_call(lambda p: rcnn.predict([p[0]], [p[1]]), few, device)
    _seconds_per_call(lambda p: fast([p[0]], [p[1]]), few, device)
    _seconds_per_call(lambda img: faster([img]), images[:1], device)
    stride = faster.backbone.stride
    rcnn_s = _seconds_per_call(lambda p: rcnn.predict([p[0]], [p[1]]), pairs, device)
    return {
        "selective search": ss_seconds,
        "R-CNN": ss_seconds + rcnn_s,
        "Fast R-CNN": ss_seconds + _seconds_per_call(lambda p: fast([p[0]], [p[1]]), pairs, device),
        "Faster R-CNN": _seconds_per_call(lambda img: faster([img]), images, device),
        "conv layers": _seconds_per_call(
            lambda img: faster.backbone(batch_images([img], stride)[0]), images, device),
        "RPN proposals": _seconds_per_call(lambda img: faster.propose([img]), images, device),
    }
