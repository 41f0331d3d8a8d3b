"""The papers' speed ladder in miniature: test-time detection per image for the three detectors.

R-CNN runs the CNN once per selective-search proposal; Fast R-CNN once per image, but still
waits for selective search; Faster R-CNN computes its proposals on the shared features. The
papers (VGG-16, GPU) report 47 s per image for R-CNN, 0.32 s for Fast R-CNN without proposals,
1830 ms for selective search + Fast R-CNN and 198 ms for Faster R-CNN (Faster R-CNN, K40). Here: the same three on the shapes test images,
with the same pre-trained TinyVGG, timed end to end (proposals included), in one run.

    python benchmarks/speed_ladder.py [--images 10] [--device cpu]
"""
import argparse
import platform
import time

import torch

from frcnn_edu.data import ShapesDataset
from frcnn_edu.models import shapes_fast_rcnn, shapes_faster_rcnn, shapes_rcnn
from frcnn_edu.proposals import selective_search


def _time(fn, images):
    fn(images[:1])                                   # warm-up
    t0 = time.perf_counter()
    for img in images:
        fn([img])
    return (time.perf_counter() - t0) / len(images)


@torch.no_grad()
def ladder(images, device="cpu", max_proposals=2000):
    """Seconds per image for R-CNN, Fast R-CNN (+ selective search) and Faster R-CNN."""
    rcnn = shapes_rcnn(pretrained=True).to(device).eval()
    fast = shapes_fast_rcnn(pretrained=True).to(device).eval()
    faster = shapes_faster_rcnn(pretrained=True).to(device).eval()

    def ss(batch):
        return [selective_search(img, max_proposals=max_proposals).to(device) for img in batch]

    images = [img.to(device) for img in images]
    return {
        "selective search": _time(ss, images),
        "R-CNN": _time(lambda b: rcnn.predict(b, ss(b)), images),
        "Fast R-CNN": _time(lambda b: fast(b, ss(b)), images),
        "Faster R-CNN": _time(faster, images),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    data = ShapesDataset("test", num_images=args.images)
    images = [data[i][0] for i in range(len(data))]
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {args.device}, {len(images)} images of 160x160")
    times = ladder(images, args.device)
    faster = times["Faster R-CNN"]
    print(f"{'detector':<18} {'s/image':>9} {'x Faster R-CNN':>15}")
    for name, sec in times.items():
        print(f"{name:<18} {sec:>9.4f} {sec / faster:>15.1f}")
    print("papers (VGG-16, GPU): R-CNN 47 s, selective search + Fast R-CNN 1.83 s, "
          "Faster R-CNN 0.198 s per image")


if __name__ == "__main__":
    main()
