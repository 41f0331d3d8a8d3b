"""The papers' speed ladder in miniature: test-time detection per image for the three detectors.

R-CNN runs the CNN once per selective-search proposal; Fast R-CNN once per image, but still
waits for selective search; Faster R-CNN computes its proposals on the shared features. The
papers (VGG-16, GPU) report 47 s per image for R-CNN, 0.32 s for Fast R-CNN without proposals,
1830 ms for selective search + Fast R-CNN and 198 ms for Faster R-CNN (Faster R-CNN, K40; its
proposals: selective search 1510 ms, RPN 10 ms). Here: the same three on the shapes test images,
with the same pre-trained TinyVGG, timed end to end (proposals included), in one run, by
`frcnn_edu.speed.speed_ladder` (lesson 05 calls the same function).

    python benchmarks/speed_ladder.py [--images 10] [--device cpu] [--max-proposals 2000]
"""
import argparse
import platform

import torch

from frcnn_edu.data import ShapesDataset
from frcnn_edu.speed import speed_ladder


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=10)
    p.add_argument("--device", default="cpu")
    p.add_argument("--max-proposals", type=int, default=2000, help="selective search boxes kept")
    p.add_argument("--ss-min-size", type=float, default=20,
                   help="selective search's minimum box side in pixels (R-CNN: 20 at 500 px wide)")
    args = p.parse_args()
    data = ShapesDataset("test", num_images=args.images)
    images = [data[i][0] for i in range(len(data))]
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, device {args.device}, {len(images)} images of 160x160")
    times = speed_ladder(images, args.device, max_proposals=args.max_proposals,
                         ss_min_size=args.ss_min_size)
    faster = times["Faster R-CNN"]
    print(f"{'detector':<18} {'s/image':>9} {'x Faster R-CNN':>15}")
    for name, sec in times.items():
        print(f"{name:<18} {sec:>9.4f} {sec / faster:>15.2f}")
    print("papers (VGG-16, GPU): R-CNN 47 s, selective search + Fast R-CNN 1.83 s, "
          "Faster R-CNN 0.198 s per image; proposals: selective search 1.51 s, RPN 0.01 s")


if __name__ == "__main__":
    main()
