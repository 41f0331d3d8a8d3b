"""Non-approximate against approximate joint training (Faster R-CNN sec. 3.2) at lesson 05's
setting but a longer budget; writes benchmarks/results/exact_joint.json.

    python benchmarks/exact_joint.py [--steps 1000] [--train 1000] [--test 200]

Both schemes train the command line's recipe (`RECIPES["fast"]`: stride 8, RoIAlign, 240-pixel
images, Adam) from the same pre-trained TinyVGG, with the same seed, images, flips and steps;
the only difference is `joint="exact"`, which lets the detector loss back-propagate through
RoIAlign's box gradient into the proposals and the RPN's box regression. Recorded: mAP@0.5 on
the held-out images, seconds per step (wall clock and CPU time of this process), and, at the
start and after training, what the detector loss does to the RPN's box-regression weights
(`rpn_regression_gradients`: the two gradients' norms and their cosine). Lesson 05 runs the
same comparison for fewer steps and quotes this file for the longer run.
"""
import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from frcnn_edu.data import ShapesDataset  # noqa: E402
from frcnn_edu.inference import evaluate  # noqa: E402
from frcnn_edu.models import shapes_faster_rcnn  # noqa: E402
from frcnn_edu.models.recipes import RECIPES  # noqa: E402
from frcnn_edu.training import rpn_regression_gradients, train_joint  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "exact_joint.json"


def _load():
    return [round(x, 2) for x in os.getloadavg()]


def gradient_row(net, train):
    n_rpn, n_det, cosine = rpn_regression_gradients(net, train)
    return {"norm_from_rpn_loss": round(n_rpn, 4), "norm_from_detector_loss": round(n_det, 4),
            "ratio_detector_to_rpn": round(n_det / n_rpn, 4), "cosine": round(cosine, 4)}


def run(joint, train, test, steps, seed=0):
    """Train one scheme; its mAP, step times and the gradient measure after training."""
    recipe = RECIPES["fast"]
    torch.manual_seed(seed)
    net = shapes_faster_rcnn(pretrained=True, joint=joint, **recipe["model"])
    load_before, start, cpu_start = _load(), time.perf_counter(), time.process_time()
    history = train_joint(net, train, steps=steps, optimizer=recipe["optimizer"], lr=recipe["lr"],
                          seed=seed)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    result = evaluate(net, test)
    return {"mAP": result["mAP"], "ap": result["ap"], "steps": len(history),
            "ms_per_step": round(1000 * wall / len(history), 1),
            "cpu_ms_per_step": round(1000 * cpu / len(history), 1),
            "load_average_before": load_before, "load_average_after": _load(),
            "gradients_after": gradient_row(net, train)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--train", type=int, default=1000, help="training images")
    parser.add_argument("--test", type=int, default=200, help="held-out test images")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    train = ShapesDataset("train", num_images=args.train)
    test = ShapesDataset("test", num_images=args.test)
    torch.manual_seed(0)
    start_net = shapes_faster_rcnn(pretrained=True, joint="exact", **RECIPES["fast"]["model"])
    results = {
        "machine": {"cpu": platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "date": time.strftime("%Y-%m-%d")},
        "settings": {"steps": args.steps, "train_images": args.train, "test_images": args.test,
                     "images_per_step": 2, "recipe": RECIPES["fast"], "seed": 0},
        "gradients_at_start": gradient_row(start_net, train),
    }
    for name, joint in (("approximate", "approximate"), ("exact", "exact")):
        results[name] = run(joint, train, test, args.steps)
        print(name, json.dumps(results[name]), flush=True)
    results["exact_over_approximate_time"] = round(
        results["exact"]["ms_per_step"] / results["approximate"]["ms_per_step"], 3)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
