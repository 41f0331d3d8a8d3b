"""Grade a class: run every submitted notebook in a fresh kernel and tabulate its exercises.

    python -m frcnn_edu grade SUBMISSIONS_DIR --out grades.csv [--timeout 600] [--jobs 2]

Each ``*.ipynb`` in SUBMISSIONS_DIR runs in its own process and kernel (quick setting,
FRCNN_EDU_FAST=1; OMP_NUM_THREADS = cores / jobs unless set), top to bottom, keeping on after a cell that raises, within a time limit for
the whole notebook. Every checker a lesson calls records {exercise, status, message}
(`frcnn_edu.checks.result`); after the student's cells a last cell prints those records, and
the displayed results carry them in their output metadata too, so a notebook whose cells were
deleted or reordered is graded for what ran. One CSV row per submission: `student` (the file's
name), `lesson`, `run` (ok / timeout / kernel died / unreadable, with details), one column per
exercise ("pass", "fail: <hint>", "error: <message>" or "not run"; an exercise checked more
than once counts its last check) and `total` (exercises passed). The grader never stops on a
bad submission, and exits 0.

A grader reads what the notebook printed: a student who forges a checker's output could fool
it. It is a tool for feedback at scale, not an exam proctor.
"""
import concurrent.futures
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

RECORDS_MARK = "FRCNN_EDU_RECORDS "
RECORD_CELL = ("from frcnn_edu.checks.result import records_json as _frcnn_edu_records\n"
               f"print({RECORDS_MARK!r} + _frcnn_edu_records())")
MISSING = ("the grade command needs nbclient and nbformat, which the 'instructor' extra "
           "installs: pip install \"frcnn_edu[instructor]\"")


class GraderMissing(RuntimeError):
    """nbclient / nbformat are not installed (the [instructor] extra)."""


def _imports():
    try:
        import nbclient
        import nbformat
    except ImportError as e:
        raise GraderMissing(f"{MISSING} ({e})") from None
    return nbclient, nbformat


def _records_from(nb, key="frcnn_edu"):
    """Records printed by the last cell, else those in the outputs' metadata."""
    for cell in reversed(nb.cells):
        for out in cell.get("outputs", []):
            text = out.get("text", "") if out.get("output_type") == "stream" else ""
            for line in text.splitlines():
                if line.startswith(RECORDS_MARK):
                    return json.loads(line[len(RECORDS_MARK):])
    found = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            record = out.get("metadata", {}).get(key)
            if record:
                found.append(record)
    return found


def run_notebook(path, timeout, workdir):
    """Execute one submission; returns {"run": ..., "records": [...], "cells_raised": n}."""
    nbclient, nbformat = _imports()
    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as e:  # not JSON, not a notebook, a broken cell: reported, not raised
        return {"run": f"unreadable: {type(e).__name__}: {' '.join(str(e).split())[:200]}",
                "records": []}
    nb.cells.append(nbformat.v4.new_code_cell(RECORD_CELL))
    from frcnn_edu.checks.runner import notebook_client   # nbclient without its lost wake-up

    client = notebook_client(
        nb, timeout=timeout, allow_errors=True, kernel_name="python3",
        interrupt_on_timeout=True, error_on_timeout={"ename": "TimeoutError", "evalue": "",
                                                     "traceback": []},
        resources={"metadata": {"path": str(workdir)}})
    deadline, run = time.monotonic() + timeout, "ok"
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells[:-1]):
                left = deadline - time.monotonic()
                if left <= 0:
                    run = f"timeout: the notebook ran over {timeout} s (graded for what ran)"
                    break
                client.timeout = max(1, int(left))
                client.execute_cell(cell, index)       # a cell that raises: the next one runs
                if time.monotonic() >= deadline:       # nbclient interrupted it at the limit
                    run = (f"timeout: cell {index + 1} still ran after the notebook's {timeout} s"
                           " (graded for what ran)")
                    break
            client.timeout = 60
            client.execute_cell(nb.cells[-1], len(nb.cells) - 1)
    except nbclient.exceptions.DeadKernelError as e:
        run = f"kernel died: {e}"
    except Exception as e:  # a kernel that will not start or answer: reported per student
        run = f"{run if run != 'ok' else 'error'}: {type(e).__name__}: {e}"
    raised = sum(1 for c in nb.cells[:-1] for o in c.get("outputs", [])
                 if o.get("output_type") == "error")
    return {"run": run, "records": _records_from(nb), "cells_raised": raised}


def _cell(record):
    status, message = record["status"], record.get("message", "")
    if status == "pass":
        return "pass"
    return f"{'error' if status == 'error' else 'fail'}: {message}"


def grade_row(name, result, exercises_of):
    """One CSV row (a dict) from a run's result; `exercises_of(lesson)` lists a lesson's ids."""
    last = {}
    for record in result["records"]:
        if record.get("exercise"):
            last[record["exercise"]] = record
    lessons = sorted({ex.split(".")[0] for ex in last})
    row = {"student": name, "lesson": " ".join(lessons), "run": result["run"]}
    if result.get("cells_raised"):
        row["run"] += f"; {result['cells_raised']} cell(s) raised"
    for lesson in lessons:
        for ex in exercises_of(lesson):
            row[ex] = _cell(last[ex]) if ex in last else "not run"
    for ex, record in last.items():
        row.setdefault(ex, _cell(record))
    row["total"] = sum(1 for ex, r in last.items() if r["status"] == "pass")
    return row


def _exercises_of(lesson):
    from importlib import import_module

    from .result import EXERCISES
    try:
        import_module(f"frcnn_edu.checks.{lesson}")
    except ImportError:
        return []
    return list(EXERCISES.get(lesson, []))


def _grade_in_subprocess(path, timeout, workdir, threads):
    """Run one notebook in its own Python process (a crash there cannot stop the grader)."""
    env = dict(os.environ, FRCNN_EDU_FAST="1", MPLBACKEND="Agg")
    # jobs kernels share the cores: more threads than cores makes OpenMP spin, not compute
    env.setdefault("OMP_NUM_THREADS", str(threads))
    cmd = [sys.executable, "-m", "frcnn_edu.checks.grade", str(path), "--timeout", str(timeout),
           "--workdir", str(workdir)]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout + 120)
    except subprocess.TimeoutExpired:
        return {"run": f"timeout: the grader's process ran over {timeout + 120} s", "records": []}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    tail = " ".join(done.stderr.split())[-300:]
    return {"run": f"grader process failed (exit {done.returncode}): {tail}", "records": []}


def grade_folder(folder, out, timeout=600, jobs=2, workdir=None, progress=print):
    """Grade every *.ipynb in `folder` into the CSV `out`; returns the rows (dicts)."""
    _imports()
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: pass the folder of submitted notebooks")
    paths = sorted(folder.glob("*.ipynb"))
    if not paths:
        raise FileNotFoundError(f"{folder} holds no *.ipynb files")
    workdir = Path(workdir or folder).resolve()
    threads = max(1, (os.cpu_count() or 1) // max(1, jobs))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {pool.submit(_grade_in_subprocess, p.resolve(), timeout, workdir, threads): p
                   for p in paths}
        results = {}
        for future in concurrent.futures.as_completed(futures):
            path = futures[future]
            results[path] = future.result()
            progress(f"graded {path.name}: {results[path]['run']}")
    rows = [grade_row(p.stem, results[p], _exercises_of) for p in paths]
    write_csv(rows, out)
    return rows


def write_csv(rows, out):
    exercises = sorted({k for r in rows for k in r} - {"student", "lesson", "run", "total"})
    fields = ["student", "lesson", *exercises, "total", "run"]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(rows)


def _main_one(argv):
    """python -m frcnn_edu.checks.grade NOTEBOOK --timeout T --workdir W: one JSON line."""
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("notebook")
    p.add_argument("--timeout", type=int, default=600)
    p.add_argument("--workdir", default=".")
    args = p.parse_args(argv)
    try:
        result = run_notebook(args.notebook, args.timeout, args.workdir)
    except GraderMissing as e:
        result = {"run": str(e), "records": []}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(_main_one(sys.argv[1:]))
