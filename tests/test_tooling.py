"""`make student` (solutions out) and `make book` (lessons to HTML), and the lessons' shape."""
import re
from pathlib import Path

import nbformat
import pytest

from frcnn_edu.student import make_student_copy, strip_solutions

ROOT = Path(__file__).resolve().parent.parent
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


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
    """Numbered without gaps, each one in the README's lesson table."""
    assert [p.name[:2] for p in LESSONS] == [f"{i:02d}" for i in range(len(LESSONS))]
    assert len(LESSONS) >= 8
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert all(f"(notebooks/{p.name})" in readme for p in LESSONS)


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_student_copy_removes_every_solution_and_its_outputs(path, tmp_path):
    out, removed = make_student_copy(path, tmp_path)
    assert 2 <= removed <= 6, f"{path.name}: lessons have 2-6 exercises, found {removed}"
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


def _tools_book():
    """tools/book.py is repository tooling, not part of the package: import it by path."""
    import importlib.util
    path = Path(__file__).resolve().parent.parent / "tools" / "book.py"
    spec = importlib.util.spec_from_file_location("frcnn_edu_tools_book", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_lessons(folder):
    """Two lessons: one with a solution and math, one with a saved widget (an Output widget)."""
    first = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Lesson 0: A tiny lesson\n\n$$L = L_{cls} + \\lambda L_{reg}$$"),
        nbformat.v4.new_code_cell("def f(x):\n    ### BEGIN SOLUTION\n    return 6 * x\n"
                                  "    ### END SOLUTION\nprint(f(7))",
                                  outputs=[nbformat.v4.new_output("stream", text="42\n")])])
    png = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    state = {"out1": {"model_name": "OutputModel", "state": {"outputs": [
                 {"output_type": "display_data", "data": {"image/png": png}, "metadata": {}}]}},
             "box1": {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_out1"]}}}
    second = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# Lesson 1: A widget"),
        nbformat.v4.new_code_cell("explorer", outputs=[nbformat.v4.new_output("display_data", data={
            "application/vnd.jupyter.widget-view+json": {"model_id": "box1", "version_major": 2,
                                                         "version_minor": 0},
            "text/plain": "note"})])])
    second.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
        "state": state, "version_major": 2, "version_minor": 0}}
    paths = [folder / "00_tiny.ipynb", folder / "01_widget.ipynb"]
    for nb, path in zip((first, second), paths):
        nbformat.write(nb, path)
    return paths


def test_book_is_an_offline_site_with_titles_navigation_and_folded_solutions(tmp_path):
    book = _tools_book()
    paths = _tiny_lessons(tmp_path)
    out = tmp_path / "site"
    book.build(out, paths)
    first, second = ((out / f"{p.stem}.html").read_text(encoding="utf-8") for p in paths)
    assert "<title>Lesson 0: A tiny lesson</title>" in first and "<title>Lesson 1: A widget</title>" in second
    assert 'href="01_widget.html" rel="next"' in first and 'rel="prev"' not in first
    assert 'href="00_tiny.html" rel="prev"' in second and 'rel="next"' not in second
    for page in (first, second):                        # nothing fetched from the network
        assert not re.search(r'(src|href)="(https?:)?//', page)
        assert '_static/mathjax/MathJax.js' in page and 'href="_static/book.css"' in page
    assert (out / "_static" / "mathjax" / "MathJax.js").exists()
    # the solution is folded after its cell, the cell shows the stub; its output stays
    assert '<details class="solution">' in first and "return 6 * x" in first.split("<details")[1]
    assert "return 6 * x" not in first.split("<details")[0] and "42" in first
    assert "&lt;details" not in first and "&lt;img" not in second  # shown, not escaped
    # the widget: the note, and the image its Output widget held when saved; no widget scripts
    assert book.WIDGET_NOTE.split(",")[0] in second and "iVBORw0KGgo" in second
    assert "widget-state+json" not in second and "embed-amd" not in second
    index = (out / "index.html").read_text(encoding="utf-8")
    assert index.index('href="00_tiny.html"') < index.index('href="01_widget.html"')


def test_book_can_leave_the_solutions_out(tmp_path):
    book = _tools_book()
    paths = _tiny_lessons(tmp_path)
    book.build(tmp_path / "site", paths[:1], solutions=False)
    page = (tmp_path / "site" / "00_tiny.html").read_text(encoding="utf-8")
    assert "return 6 * x" not in page and "<details" not in page and "NotImplementedError" in page


def test_book_index_describes_every_lesson_from_the_readme():
    described = _tools_book().lesson_map()
    assert [path.stem for path in LESSONS] == sorted(described)
    assert all(what for what, _ in described.values())
