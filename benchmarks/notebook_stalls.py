"""How often nbclient's lost wake-up stalls a cell, with nbclient's own client and with ours.

    python benchmarks/notebook_stalls.py [--lesson 03_anchors_iou_labeling] [--runs 8] [--jobs 2]

Runs the student copy of a lesson in the quick setting `--runs` times with each client
(`nbclient.NotebookClient` as shipped, and `frcnn_edu.checks.runner.notebook_client`),
alternating, `--jobs` at a time. For every cell it compares the kernel's reply time (the
``shell.execute_reply`` timestamp the kernel stamps) with the moment the client saw the
reply: a cell whose reply waited more than `LAG` seconds in the client's socket is a stall.
The plain client runs with a cell timeout of `--timeout` s (a stall lasts exactly that long);
prints one line per run and a table of stalls per client, with the load average. The numbers
go to benchmarks/RESULTS.md by hand.
"""
import argparse
import concurrent.futures
import os
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LAG = 3.0   # seconds a reply may wait in the client before we call it a stall (slice is 1 s)


def _seen_late(nb_path, sliced, timeout):
    """Run one notebook; returns (seconds, [(cell index, lag seconds)] of the stalled cells)."""
    import nbformat
    from nbclient import NotebookClient

    from frcnn_edu.checks.runner import notebook_client

    nb = nbformat.read(nb_path, as_version=4)
    lags = []

    def executed(cell, cell_index, execute_reply, **_):
        replied = execute_reply["header"]["date"]
        replied = replied if isinstance(replied, datetime) else datetime.fromisoformat(replied)
        lag = (datetime.now(timezone.utc) - replied).total_seconds()
        if lag > LAG:
            lags.append((cell_index, round(lag, 1)))

    make = notebook_client if sliced else NotebookClient
    client = make(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                  on_cell_executed=executed,
                  resources={"metadata": {"path": str(ROOT / "notebooks")}})
    start = time.perf_counter()
    client.execute()
    return round(time.perf_counter() - start, 1), lags


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lesson", default="03_anchors_iou_labeling")
    p.add_argument("--runs", type=int, default=8, help="runs per client")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--timeout", type=int, default=120, help="cell timeout, seconds")
    args = p.parse_args(argv)
    os.environ.update(FRCNN_EDU_FAST="1", MPLBACKEND="Agg")
    from frcnn_edu.student import make_student_copy

    folder = Path(tempfile.mkdtemp(prefix="stalls-"))
    copy, _ = make_student_copy(ROOT / "notebooks" / f"{args.lesson}.ipynb", folder)
    jobs = [i % 2 == 1 for i in range(2 * args.runs)]          # plain, sliced, plain, ...
    tally = {False: [0, 0, 0.0], True: [0, 0, 0.0]}             # runs, stalled cells, seconds
    start = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(args.jobs) as pool:
        futures = {pool.submit(_seen_late, copy, s, args.timeout): s for s in jobs}
        for f in concurrent.futures.as_completed(futures):
            sliced = futures[f]
            seconds, lags = f.result()
            tally[sliced][0] += 1
            tally[sliced][1] += len(lags)
            tally[sliced][2] += seconds
            print(f"{'sliced' if sliced else 'plain '} {seconds:7.1f} s  stalls: {lags}",
                  flush=True)
    print(f"\n{len(jobs)} runs of {args.lesson} (student copy, quick), {args.jobs} at a time, "
          f"{time.perf_counter() - start:.0f} s, load average {os.getloadavg()[0]:.2f}")
    print(f"{'client':<28}{'runs':>6}{'stalled cells':>15}{'mean s/run':>12}")
    for sliced, name in ((False, "nbclient.NotebookClient"), (True, "runner.notebook_client")):
        runs, stalls, seconds = tally[sliced]
        print(f"{name:<28}{runs:>6}{stalls:>15}{seconds / max(runs, 1):>12.1f}")


if __name__ == "__main__":
    main()
