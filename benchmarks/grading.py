"""Grading a class: `python -m frcnn_edu grade` on N copies of one lesson, timed.

    python benchmarks/grading.py [--lesson 03_anchors_iou_labeling] [--copies 30] [--jobs 2]

Half the copies are the saved lesson (every exercise solved), half the student copy that
`make student` writes (nothing filled in). The grader runs each in a fresh kernel in the quick
setting, `--jobs` at a time. Prints the wall time, the seconds per notebook and the load
average, and checks the CSV (full marks for the solved copies, zero for the others). Writes
benchmarks/results/grading.json (the README quotes its time; tests/test_story.py holds them
together); the machine and its load go to benchmarks/RESULTS.md.
"""
import argparse
import csv
import json
import platform
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from frcnn_edu.student import make_student_copy  # noqa: E402


def make_class(lesson, copies, folder):
    """`copies` submissions in `folder`: student_00.ipynb ... (even: solved, odd: untouched)."""
    source = ROOT / "notebooks" / f"{lesson}.ipynb"
    blank, _ = make_student_copy(source, Path(folder) / "blank")
    for i in range(copies):
        shutil.copy(source if i % 2 == 0 else blank, Path(folder) / f"student_{i:02d}.ipynb")
    shutil.rmtree(Path(folder) / "blank")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lesson", default="03_anchors_iou_labeling")
    p.add_argument("--copies", type=int, default=30)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--timeout", type=int, default=600)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        subs, out = Path(tmp) / "submissions", Path(tmp) / "grades.csv"
        subs.mkdir()
        make_class(args.lesson, args.copies, subs)
        load = os.getloadavg()
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "frcnn_edu", "grade", str(subs), "--out", str(out),
                        "--jobs", str(args.jobs), "--timeout", str(args.timeout),
                        "--workdir", str(ROOT / "notebooks")], check=True)
        seconds = time.perf_counter() - start
        rows = list(csv.DictReader(out.open()))
    totals = {r["student"]: int(r["total"] or 0) for r in rows}   # the row's name: the file's stem
    solved = [totals[f"student_{i:02d}"] for i in range(0, args.copies, 2)]
    blank = [totals[f"student_{i:02d}"] for i in range(1, args.copies, 2)]
    timeouts = sorted(r["student"] for r in rows if r["run"].startswith("timeout"))
    print(f"{args.copies} copies of {args.lesson}, --jobs {args.jobs}: {seconds:.0f} s "
          f"({seconds / args.copies:.1f} s a notebook); load average before "
          f"{[round(x, 2) for x in load]}, after {[round(x, 2) for x in os.getloadavg()]}; "
          f"{os.cpu_count()} cores")
    print(f"solved copies: totals {sorted(set(solved))}; untouched: {sorted(set(blank))}; "
          f"timed out: {len(timeouts)} {timeouts}")
    ok = len(set(solved)) == 1 and set(blank) == {0}
    record = {"lesson": args.lesson, "copies": args.copies, "jobs": args.jobs,
              "timeout_s": args.timeout, "seconds": round(seconds, 1),
              "seconds_per_notebook": round(seconds / args.copies, 1),
              "rows_right": ok, "timed_out": timeouts, "cores": os.cpu_count(),
              "load_before": [round(x, 2) for x in load],
              "load_after": [round(x, 2) for x in os.getloadavg()],
              "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
              "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    (ROOT / "benchmarks" / "results" / "grading.json").write_text(json.dumps(record, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
