"""Running a trained detector over a dataset, timing it, and scoring it with VOC mAP.

Shape key:
    B  images per forward pass    D  detections of one image    K  foreground classes
"""
import time

import torch

from .evaluation import voc_eval


@torch.no_grad()
def predict_dataset(model, dataset, batch_size=8, device=None, proposals=None):
    """Run `model` in eval mode over `dataset`. Returns (predictions, targets, seconds).

    `proposals` (one [P, 4] per image) is passed to detectors that take external proposals
    (Fast R-CNN, R-CNN). Predictions and targets come back on the CPU.
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
            out = model(images, [p.to(device) for p in proposals[start:start + len(items)]])
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds += time.perf_counter() - t0
        predictions += [{k: v.cpu() for k, v in o.items()} for o in out]
        targets += [t for _, t in items]
    return predictions, targets, seconds


def evaluate(model, dataset, batch_size=8, device=None, proposals=None, method="area"):
    """mAP@0.5 (VOC), per-class AP by name, and inference images/s of `model` on `dataset`."""
    predictions, targets, seconds = predict_dataset(model, dataset, batch_size, device, proposals)
    result = voc_eval(predictions, targets, dataset.num_classes, 0.5, method, dataset.classes)
    return {"mAP": round(result["mAP"], 4),
            "ap": {name: round(ap, 4) for name, ap in result["ap_by_name"].items()},
            "images_per_second": round(len(dataset) / max(seconds, 1e-9), 2)}
