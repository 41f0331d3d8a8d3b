"""What one joint training step of the command line's model costs, per step and per image, for
the images per step (`train --batch-size`) and the proposal layer's training pre-NMS top-N
(issue 14, benchmarks/RESULTS.md "Third round").

    PYTHONPATH=$PWD python benchmarks/step_cost.py [--steps 40] [--rounds 3]

Each configuration is a model of the fast recipe (`RECIPES["fast"]`, Adam) with its own
optimizer; the configurations take turns, `--steps` steps each per round (after 3 untimed
warm-up steps), so a machine that gets busier mid-run slows them alike. Prints the median over
rounds of seconds per step and per image, and each against the recipe (2 images, pre-NMS top-N
12,000). Run it alone: on 2 cores any other process moves these numbers.

Shape key: none (timings only).
"""
import argparse
import statistics
import time

import torch

from frcnn_edu.data import ShapesDataset
from frcnn_edu.models import shapes_faster_rcnn
from frcnn_edu.models.recipes import RECIPES
from frcnn_edu.training.loop import make_optimizer, training_step

# (name, images per step, model keywords): the recipe first, the baseline of the ratios
CONFIGS = [
    ("recipe: 2 images a step, pre-NMS top 12,000 (py-faster-rcnn)", 2, {}),
    ("4 images a step (`--batch-size 4`)", 4, {}),
    ("2 images, training pre-NMS top 2,000 (torchvision's)", 2,
     {"rpn_pre_nms_top_n": (2000, 6000)}),
]


class Runner:
    """One configuration: its model, optimizer and its own stream of training images."""

    def __init__(self, batch, model_kw, data):
        torch.manual_seed(0)
        self.model = shapes_faster_rcnn(**RECIPES["fast"]["model"], **model_kw).train()
        self.optimizer = make_optimizer(self.model.parameters(), "adam", RECIPES["fast"]["lr"],
                                        0.9, 0.0)
        self.batch, self.data, self.next = batch, data, 0

    def steps(self, n):
        """Seconds per step over n steps."""
        start = time.perf_counter()
        for _ in range(n):
            items = [self.data[(self.next + k) % len(self.data)] for k in range(self.batch)]
            self.next += self.batch
            images, targets = zip(*items)
            training_step(self.model, list(images), list(targets), self.optimizer)
        return (time.perf_counter() - start) / n


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    data = ShapesDataset("train", num_images=1000)
    runners = [Runner(batch, kw, data) for _, batch, kw in CONFIGS]
    for r in runners:
        r.steps(3)  # warm-up, untimed
    times = [[] for _ in runners]
    for _ in range(args.rounds):
        for r, t in zip(runners, times):
            t.append(r.steps(args.steps))
    print(f"{torch.get_num_threads()} threads, {args.rounds} rounds of {args.steps} steps each "
          "(median)")
    print("| configuration | s / step | s / image | step vs recipe | image vs recipe |")
    print("| --- | ---: | ---: | ---: | ---: |")
    base = statistics.median(times[0])
    for (name, batch, _), t in zip(CONFIGS, times):
        s = statistics.median(t)
        print(f"| {name} | {s:.3f} | {s / batch:.4f} | {s / base:.2f} | "
              f"{(s / batch) / (base / 2):.2f} |")


if __name__ == "__main__":
    main()
