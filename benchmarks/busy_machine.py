"""A busy machine: how fast one training step runs when another training shares the cores, with
OpenMP's waiting threads spinning (libgomp's default) or sleeping (OMP_WAIT_POLICY=PASSIVE, what
`python -m frcnn_edu` sets). benchmarks/RESULTS.md, "A busy machine".

    PYTHONPATH=$PWD python benchmarks/busy_machine.py [--steps 30]

Each case starts fresh worker processes (the policy is read when torch loads OpenMP) that time
`--steps` joint training steps of the command line's model (the fast recipe, 2 images a step,
after 3 warm-up steps), alone or two at once, with torch's default threads (one per core).
Prints seconds per step side by side and each case against "alone, spinning".
"""
import argparse
import json
import os
import subprocess
import sys
import time

WORKER = """
import json, sys, time
import torch
from frcnn_edu.data import ShapesDataset
from frcnn_edu.models import shapes_faster_rcnn
from frcnn_edu.models.recipes import RECIPES
from frcnn_edu.training.loop import make_optimizer, training_step
steps = int(sys.argv[1])
data = ShapesDataset("train", num_images=2 * (steps + 3))
torch.manual_seed(0)
model = shapes_faster_rcnn(**RECIPES["fast"]["model"]).train()
optimizer = make_optimizer(model.parameters(), "adam", 5e-4, 0.9, 0.0)
for step in range(steps + 3):
    if step == 3:
        start = time.perf_counter()
    images, targets = zip(*[data[2 * step], data[2 * step + 1]])
    training_step(model, list(images), list(targets), optimizer)
print(json.dumps({"s_per_step": (time.perf_counter() - start) / steps,
                  "threads": torch.get_num_threads()}))
"""

CASES = [("alone, spinning (default)", 1, None), ("alone, sleeping (PASSIVE)", 1, "PASSIVE"),
         ("two at once, spinning", 2, None), ("two at once, sleeping", 2, "PASSIVE")]


def run_case(copies, policy, steps):
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    if policy:
        env["OMP_WAIT_POLICY"] = policy
    workers = [subprocess.Popen([sys.executable, "-c", WORKER, str(steps)], env=env,
                                stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    return [json.loads(w.communicate()[0]) for w in workers]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--spinning-pair-steps", type=int, default=10,
                    help="steps for the spinning pair (about 5 s a step on 2 cores)")
    args = ap.parse_args()
    print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    base = None
    for name, copies, policy in CASES:
        steps = args.spinning_pair_steps if copies > 1 and policy is None else args.steps
        rows = run_case(copies, policy, steps)
        worst = max(r["s_per_step"] for r in rows)
        base = base or worst
        print(f"{name:<28} {worst:7.3f} s/step (x{worst / base:5.2f})  "
              f"{copies} process(es) x {rows[0]['threads']} threads, {steps} steps", flush=True)
    print(f"load after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
