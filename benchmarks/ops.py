"""Speed of frcnn_edu's plain-PyTorch ops next to torchvision's compiled ones, in one run.

    python benchmarks/ops.py                 # CPU, torch's default number of threads
    python benchmarks/ops.py --threads 1
    python benchmarks/ops.py --device cuda

Each row times ours and torchvision's alternately (after a warm-up call) and reports medians, so
that a busy machine slows both sides alike. Sizes are those of Faster R-CNN on a ~1000 x 600
image with VGG16 (stride 16: a 38 x 63 feature map, ~20k anchors, 2000 / 12000 boxes before
NMS) and of the small feature maps used in the lessons.
"""
import argparse
import os
import platform
import statistics
import time

import torch
import torchvision
import torchvision.ops as tv
from torchvision.models.detection._utils import Matcher

from frcnn_edu import boxes as ours_boxes
from frcnn_edu import roi_ops
from frcnn_edu.anchors import grid_anchors, make_base_anchors
from frcnn_edu.matching import label_anchors


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def compare(ours, theirs, device, min_time):
    """Median milliseconds of ours and theirs, timed alternately after one warm-up call each."""
    ours(), theirs()
    t_ours, t_theirs = [], []
    while len(t_ours) < 5 or sum(t_ours) + sum(t_theirs) < min_time:
        t_ours.append(timed(ours, device))
        t_theirs.append(timed(theirs, device))
        if len(t_ours) >= 200:
            break
    return 1e3 * statistics.median(t_ours), 1e3 * statistics.median(t_theirs)


def random_boxes(n, image_size=(600, 1000), generator=None, device="cpu"):
    """n boxes of 16..~500 px inside an image (h, w), many overlapping."""
    h, w = image_size
    centre = torch.rand(n, 2, generator=generator) * torch.tensor([w, h])
    half = (16 + torch.rand(n, 2, generator=generator) * torch.tensor([w, h]) * 0.5) / 2
    boxes = torch.cat([centre - half, centre + half], dim=1)
    boxes = torch.max(torch.min(boxes, torch.tensor([w, h, w, h])), torch.zeros(4))
    return boxes.to(device)


def roi_cases(device, g):
    """(name, input, per-image boxes, spatial_scale): realistic and small."""
    cases = []
    for (n, c, h, w, per_image, scale) in [(2, 256, 38, 50, 128, 1 / 16),
                                           (2, 128, 10, 10, 64, 1 / 16)]:
        x = torch.randn(n, c, h, w, generator=g).relu().to(device)
        boxes = [random_boxes(per_image, (h / scale, w / scale), g, device) for _ in range(n)]
        cases.append((f"[{n},{c},{h},{w}] {n * per_image} RoIs 7x7", x, boxes, scale))
    return cases


def roi_call(op, x, boxes, scale, extra, backward):
    """A closure that runs op forward (and backward) on its own copy of the features."""
    if not backward:
        return lambda: op(x, boxes, 7, scale, *extra)
    x = x.clone().requires_grad_()
    return lambda: op(x, boxes, 7, scale, *extra).sum().backward()


def roi_rows(device, g):
    rows = []
    for size, x, boxes, scale in roi_cases(device, g):
        for name, ours, theirs, extra in [
                ("roi_pool", roi_ops.roi_pool, tv.roi_pool, ()),
                ("roi_align sr=2", roi_ops.roi_align, tv.roi_align, (2, False)),
                ("roi_align sr=-1", roi_ops.roi_align, tv.roi_align, (-1, False))]:
            for backward in (False, True):
                rows.append((name + (" fwd+bwd" if backward else " fwd"), size,
                             roi_call(ours, x, boxes, scale, extra, backward),
                             roi_call(theirs, x, boxes, scale, extra, backward), not backward))
    return rows


def torchvision_anchor_labels(anchors, gt_boxes, matcher):
    """What torchvision's RPN does to label anchors (rpn.assign_targets_to_anchors)."""
    matched = matcher(tv.box_iou(gt_boxes, anchors))
    labels = (matched >= 0).to(torch.int64)
    labels[matched == Matcher.BETWEEN_THRESHOLDS] = -1
    return labels, matched.clamp(min=0)


def other_rows(device, g):
    b1, b2 = random_boxes(2000, generator=g, device=device), random_boxes(2000, generator=g,
                                                                          device=device)
    rows = [("box_iou", "2000 x 2000", lambda: ours_boxes.box_iou(b1, b2),
             lambda: tv.box_iou(b1, b2))]
    for n in (2000, 12000):
        boxes = random_boxes(n, generator=g, device=device)
        scores = torch.rand(n, generator=g).to(device)
        rows.append(("nms", f"{n} boxes, IoU 0.7",
                     lambda b=boxes, s=scores: ours_boxes.nms(b, s, 0.7),
                     lambda b=boxes, s=scores: tv.nms(b, s, 0.7)))
    anchors = grid_anchors(make_base_anchors(device=device), (38, 63), 16)      # 21,546 anchors
    gt = random_boxes(8, generator=g, device=device)
    matcher = Matcher(0.7, 0.3, allow_low_quality_matches=True)
    rows.append(("anchor labeling", f"{len(anchors)} anchors, 8 gt",
                 lambda: label_anchors(anchors, gt), lambda: torchvision_anchor_labels(anchors, gt,
                                                                                       matcher)))
    return [(name, size, ours, theirs, True) for name, size, ours, theirs in rows]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--min-time", type=float, default=1.0,
                        help="seconds of timing per row (at least 5 runs each side)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores), torch threads: "
          f"{torch.get_num_threads()}, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")
    print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, device: "
          + (torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"))
    g = torch.Generator().manual_seed(0)
    header = f"{'op':<26} {'size':<30} {'ours ms':>9} {'tv ms':>9} {'ratio':>6}"
    print(header + "\n" + "-" * len(header))
    for name, size, ours, theirs, no_grad in other_rows(device, g) + roi_rows(device, g):
        with torch.set_grad_enabled(not no_grad):
            t_ours, t_tv = compare(ours, theirs, device, args.min_time)
        print(f"{name:<26} {size:<30} {t_ours:>9.2f} {t_tv:>9.2f} {t_ours / t_tv:>6.2f}",
              flush=True)
    print("ratio = ours / torchvision (lower is better for ours); medians of alternating runs.")


if __name__ == "__main__":
    main()
