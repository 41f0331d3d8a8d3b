"""`make student` (solutions out) and `make book` (lessons to HTML), and the lessons' shape."""
from pathlib import Path

import nbformat
import pytest

from frcnn_edu.book import render
from frcnn_edu.student import make_student_copy, strip_solutions

LESSONS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_strip_solutions_keeps_the_indent_and_the_lines_around():
    source = ("def f(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n\n"
              "check(f)\n")
    out, n = strip_solutions(source)
    assert n == 1
    assert out == ("def f(x):\n    # YOUR CODE HERE\n"
                   "    raise NotImplementedError(\"replace this line with your answer\")\n\ncheck(f)\n")


def test_strip_solutions_handles_several_blocks_and_none():
    block = "### BEGIN SOLUTION\na = 1\n### END SOLUTION\n"
    out, n = strip_solutions(block + "x = 0\n" + block)
    assert n == 2 and "a = 1" not in out and "x = 0" in out
    assert strip_solutions("y = 1\n") == ("y = 1\n", 0)


def test_the_lessons_in_order():
    assert [p.name[:2] for p in LESSONS] == ["00", "01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_student_copy_removes_every_solution_and_its_outputs(path, tmp_path):
    out, removed = make_student_copy(path, tmp_path)
    assert 2 <= removed <= 4, f"{path.name}: lessons have 2-4 exercises, found {removed}"
    nb = nbformat.read(out, as_version=4)
    stubs = [c for c in nb.cells if c.cell_type == "code" and "YOUR CODE HERE" in c.source]
    assert "BEGIN SOLUTION" not in "".join(c.source for c in nb.cells)
    assert all(c.outputs == [] and c.execution_count is None for c in stubs)
    assert all("checks." in c.source for c in stubs), "each exercise cell calls its checker"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_saved_lessons_ran_top_to_bottom_with_outputs(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.execution_count for c in code]
    assert None not in counts, f"{path.name}: a code cell was never run"
    assert counts == sorted(counts), f"{path.name}: cells were not run top to bottom"
    assert not any(c.source.rstrip().endswith(";") for c in code), "nbval issue #194: no trailing ;"
    assert any(o.get("output_type") == "display_data" for c in code for o in c.outputs), \
        f"{path.name}: saved without figures"


def test_book_renders_a_lesson_to_html(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# A tiny lesson"),
                                         nbformat.v4.new_code_cell("print(6 * 7)")])
    path = tmp_path / "00_tiny.ipynb"
    nbformat.write(nb, path)
    out, title = render(path, tmp_path)
    assert title == "A tiny lesson"
    assert "42" in out.read_text(encoding="utf-8")
