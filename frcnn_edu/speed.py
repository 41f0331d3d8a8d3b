"""The speed ladder: test-time seconds per image of R-CNN, Fast R-CNN and Faster R-CNN.

`speed_ladder` times the papers' three detectors side by side on the same images (R-CNN sec. 2.2,
Fast R-CNN sec. 4.4, Faster R-CNN sec. 4.1 and table 5); lesson 05 and benchmarks/speed_ladder.py
call it. Scoring a detector (mAP, images/s over a dataset) is `frcnn_edu.inference`.

Shape key:
    P  selective-search proposals of one image    H, W  image size
"""
import time

import torch

from .data.batching import batch_images
from .models import FastRCNN, shapes_faster_rcnn, shapes_rcnn
from .proposals import selective_search


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
