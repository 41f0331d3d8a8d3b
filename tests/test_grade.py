"""The instructor's grader and the student copies that run.

A small class built from `make student` output of lesson 03 (the lightest lesson) is graded with
`python -m frcnn_edu grade`: an untouched copy, a copy with every solution filled in, one that
raises in a cell and has one exercise filled, one that loops forever, and a file that is not a
notebook (marked slow: several minutes; FRCNN_EDU_SLOW=1 runs it, FRCNN_EDU_GRADE_TIMEOUT sets
the time limit per submission). Then: a student copy of lesson 03 runs top to bottom in the quick setting without a
cell error, its widget cell included.
"""
import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from frcnn_edu.checks.grade import RECORDS_MARK, grade_row, _records_from
from frcnn_edu.checks.result import EXERCISES
from frcnn_edu.student import make_student_copy

ROOT = Path(__file__).resolve().parents[1]
LESSON = ROOT / "notebooks" / "03_anchors_iou_labeling.ipynb"
LESSON03 = ["lesson03.anchor_shape", "lesson03.grid_anchors", "lesson03.anchor_count",
            "lesson03.labels_by_hand", "lesson03.label_anchors", "lesson03.sampled_counts"]


def _env():
    return dict(os.environ, PYTHONPATH=str(ROOT), FRCNN_EDU_FAST="1", MPLBACKEND="Agg")


def _class(folder):
    """Five submissions built from lesson 03."""
    folder.mkdir()
    out, _ = make_student_copy(LESSON, folder)
    out.rename(folder / "untouched.ipynb")
    shutil.copy(LESSON, folder / "full.ipynb")
    # partial: the solved lesson with a cell that raises early and one exercise put back to its stub
    nb = nbformat.read(LESSON, as_version=4)
    first = next(i for i, c in enumerate(nb.cells) if "check_anchor_shape" in c.source)
    nb.cells.insert(first, nbformat.v4.new_code_cell("raise RuntimeError('a student bug')"))
    stub = nbformat.read(folder / "untouched.ipynb", as_version=4)
    for i, cell in enumerate(nb.cells):
        if "check_sampled_counts" in cell.source:
            cell.source = next(c.source for c in stub.cells if "check_sampled_counts" in c.source)
    nbformat.write(nb, folder / "raises.ipynb")
    # loops: the solved lesson that never gets past its third exercise
    nb = nbformat.read(LESSON, as_version=4)
    third = next(i for i, c in enumerate(nb.cells) if "check_anchor_count" in c.source)
    nb.cells.insert(third, nbformat.v4.new_code_cell("while True:\n    pass"))
    nbformat.write(nb, folder / "loops.ipynb")
    (folder / "corrupt.ipynb").write_text('{"cells": [ this is not json')


# Seconds each submission may run: the solved lesson must finish within it (about 40 s on a
# quiet 2-core machine; several minutes on a busy one), the looping one always uses all of it.
TIMEOUT = os.environ.get("FRCNN_EDU_GRADE_TIMEOUT", "240")
slow = pytest.mark.skipif(os.environ.get("FRCNN_EDU_SLOW") != "1",
                          reason="grades a class of 5 (minutes): FRCNN_EDU_SLOW=1 (make test-slow)")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("class") / "submissions"
    _class(folder)
    out = folder.parent / "grades.csv"
    done = subprocess.run([sys.executable, "-m", "frcnn_edu", "grade", str(folder), "--out",
                           str(out), "--timeout", TIMEOUT, "--jobs", "2"], env=_env(),
                          capture_output=True, text=True, timeout=900)
    rows = {r["student"]: r for r in csv.DictReader(out.open())} if out.exists() else {}
    return done, rows


@pytest.mark.slow
@slow
def test_grader_exits_0_and_writes_one_row_per_submission(graded):
    done, rows = graded
    assert done.returncode == 0, done.stderr
    assert set(rows) == {"untouched", "full", "raises", "loops", "corrupt"}
    header = list(next(iter(rows.values())))
    assert header[0] == "student" and "total" in header and set(LESSON03) <= set(header)


@pytest.mark.slow
@slow
def test_full_marks_zero_and_partial(graded):
    _, rows = graded
    assert rows["full"]["total"] == "6" and all(rows["full"][ex] == "pass" for ex in LESSON03)
    assert rows["full"]["run"] == "ok"
    assert rows["untouched"]["total"] == "0"
    assert all(rows["untouched"][ex].startswith("fail: ") and "not filled in" in rows["untouched"][ex]
               for ex in LESSON03), rows["untouched"]
    assert rows["untouched"]["run"] == "ok", "a student copy runs top to bottom"
    partial = rows["raises"]
    assert partial["total"] == "5" and "not filled in" in partial["lesson03.sampled_counts"]
    assert "1 cell(s) raised" in partial["run"]


@pytest.mark.slow
@slow
def test_timeout_and_unreadable_are_reported(graded):
    _, rows = graded
    loops = rows["loops"]
    assert loops["run"].startswith("timeout") and "graded for what ran" in loops["run"]
    assert loops["lesson03.anchor_shape"] == loops["lesson03.grid_anchors"] == "pass"  # before the loop
    assert loops["lesson03.anchor_count"] == "not run" and loops["total"] == "2"
    assert rows["corrupt"]["run"].startswith("unreadable") and rows["corrupt"]["total"] == "0"


def test_rows_from_records_take_the_last_check_and_fill_missing_exercises():
    import frcnn_edu.checks.lesson03  # noqa: F401  (registers the lesson's exercises)
    result = {"run": "ok", "records": [
        {"exercise": "lesson03.anchor_shape", "status": "fail", "message": "swapped"},
        {"exercise": "lesson03.anchor_shape", "status": "pass", "message": "ok"},
        {"exercise": "lesson03.anchor_count", "status": "error", "message": "TypeError"}]}
    row = grade_row("ada", result, lambda lesson: EXERCISES[lesson])
    assert row["lesson03.anchor_shape"] == "pass" and row["lesson03.anchor_count"] == "error: TypeError"
    assert row["lesson03.labels_by_hand"] == "not run" and row["total"] == 1


def test_records_are_read_from_output_metadata_when_the_last_cell_did_not_run():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("check()")])
    nb.cells[0].outputs = [nbformat.v4.new_output(
        "execute_result", data={"text/plain": "Correct: ..."}, execution_count=1,
        metadata={"frcnn_edu": {"exercise": "lesson03.anchor_shape", "status": "pass", "message": ""}})]
    assert _records_from(nb) == [{"exercise": "lesson03.anchor_shape", "status": "pass", "message": ""}]
    nb.cells.append(nbformat.v4.new_code_cell("print(...)"))
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text=RECORDS_MARK + json.dumps([]))]
    assert _records_from(nb) == []


def test_missing_grader_dependencies_name_the_extra(monkeypatch):
    import builtins

    from frcnn_edu import cli
    real = builtins.__import__

    def no_nbclient(name, *args, **kwargs):
        if name == "nbclient":
            raise ImportError("No module named 'nbclient'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nbclient)
    assert cli.main(["grade", ".", "--out", "x.csv"]) == 2


def test_student_copy_of_lesson_03_runs_top_to_bottom(tmp_path):
    """Quick setting, every stub left in place: no cell raises; the checkers say 'not filled in'
    and the widget cell runs."""
    from frcnn_edu.checks.runner import notebook_client
    out, removed = make_student_copy(LESSON, tmp_path)
    nb = nbformat.read(out, as_version=4)
    os.environ.update(FRCNN_EDU_FAST="1", MPLBACKEND="Agg")
    notebook_client(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(ROOT / "notebooks")}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    widget = [c for c in nb.cells if c.cell_type == "code" and "explorer(" in c.source]
    assert widget and all(c.execution_count for c in widget)
    text = "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                   for c in nb.cells for o in c.get("outputs", []))
    assert text.count("Not yet: the exercise is not filled in yet") == removed
    assert "the lesson goes on with the library's answer" in text     # use_or_reference
    assert "20,646 anchors (37 x 62 x 9)" not in "".join(c.source for c in nb.cells)
