"""benchmarks/ops.py on two source trees, interleaved: has a change made our ops slower?

    git worktree add --detach /tmp/ops_before <commit>
    python benchmarks/ops_before_after.py /tmp/ops_before . --rounds 3 [-- ops.py options]
    git worktree remove /tmp/ops_before

Each round runs BEFORE's benchmarks/ops.py and then AFTER's, each in a new process with
PYTHONPATH set to its own tree, so each version times its own frcnn_edu (and its own ops.py).
The table gives, per op, the median over the rounds of our milliseconds for each version and
after / before (below 1: faster now). torchvision's times, taken in the same processes, are
printed too: they did not change between the versions, so a drift there is the machine's load.
"""
import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run_ops(tree, ops_args):
    """{(op, size): (ours ms, tv ms)} and the header lines of one run of tree's ops.py."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run([sys.executable, str(tree / "benchmarks" / "ops.py"), *ops_args],
                          cwd=tree, env=env, capture_output=True, text=True, check=True)
    rows, header = {}, []
    for line in done.stdout.splitlines():
        if line.startswith(("CPU:", "torch ")):
            header.append(line)
            continue
        fields = line[57:].split()            # ops.py: op (26 chars) size (30 chars) ours tv ratio
        try:
            ours, tv, _ = map(float, fields)
        except ValueError:                    # the table's head, rule and footnote
            continue
        rows[(line[:26].strip(), line[27:57].strip())] = (ours, tv)
    return rows, header


def load():
    return "load average " + " ".join(f"{x:.2f}" for x in os.getloadavg())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("before", type=Path, help="the older source tree")
    parser.add_argument("after", type=Path, help="the newer source tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("ops_args", nargs="*", help="passed to ops.py (after --)")
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    for name, tree in trees.items():
        commit = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
        print(f"{name}: {tree} ({commit or 'not a git tree'})")
    print(f"start: {load()}", flush=True)
    runs = {name: [] for name in trees}
    start = time.perf_counter()
    for r in range(args.rounds):
        for name, tree in trees.items():
            rows, header = run_ops(tree, args.ops_args)
            runs[name].append(rows)
            print(f"round {r + 1} {name}: {len(rows)} rows, {load()}", flush=True)
    print("\n".join(header))
    print(f"end: {load()}; {time.perf_counter() - start:.0f} s in all\n")

    keys = [k for k in runs["before"][0] if all(k in rows for v in runs.values() for rows in v)]
    head = (f"{'op':<26} {'size':<30} {'before ms':>9} {'after ms':>9} {'after/before':>12}"
            f" {'tv before':>9} {'tv after':>9}")
    print(head + "\n" + "-" * len(head))
    worst = 0.0
    for key in keys:
        ours = {n: statistics.median(rows[key][0] for rows in runs[n]) for n in trees}
        tv = {n: statistics.median(rows[key][1] for rows in runs[n]) for n in trees}
        ratio = ours["after"] / ours["before"]
        worst = max(worst, ratio)
        print(f"{key[0]:<26} {key[1]:<30} {ours['before']:>9.2f} {ours['after']:>9.2f}"
              f" {ratio:>12.2f} {tv['before']:>9.2f} {tv['after']:>9.2f}")
    dropped = set().union(*(rows for v in runs.values() for rows in v)) - set(keys)
    if dropped:
        print(f"rows not in every run (left out): {sorted(dropped)}")
    print(f"medians over {args.rounds} rounds; slowest after/before: {worst:.2f}")


if __name__ == "__main__":
    main()
