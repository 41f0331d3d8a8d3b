"""Running a trained detector over a dataset, timing it, and scoring it with VOC mAP (and, for
Mask R-CNN, COCO's box and mask AP).

The speed ladder of the papers' three detectors lives in `frcnn_edu.speed`.

Shape key:
    B  images per forward pass    D  detections of one image    K  foreground classes
    P  proposals of one image
"""
import time

import torch

from .coco_eval import coco_evaluate, to_coco_instances
from .evaluation import voc_eval


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
