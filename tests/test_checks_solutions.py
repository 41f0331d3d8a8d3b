"""Every exercise of every lesson: the saved solution (the code between the notebook's
### BEGIN SOLUTION / ### END SOLUTION markers) passes its checker, run outside the notebook.

The lesson's statements that the solutions need are replayed in order: imports, function
definitions, names read from `checks`, and the solution blocks; the rest (training, figures) is
skipped. Then each `checks.lessonNN.check_*(...)` call of an exercise cell is evaluated.
Also: the quiz answers do not appear in plain text in frcnn_edu/checks/.
"""
import ast
import re
from pathlib import Path

import nbformat
import pytest

from frcnn_edu import checks
from frcnn_edu.checks.result import EXERCISES

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("0*.ipynb"))
MAGIC = re.compile(r"^([ \t]*)[%!].*$", re.MULTILINE)


def _solution_lines(source):
    """Line numbers (1-based) inside solution blocks of a cell's source."""
    inside, lines = False, set()
    for n, line in enumerate(source.splitlines(), 1):
        if "### BEGIN SOLUTION" in line:
            inside = True
        elif "### END SOLUTION" in line:
            inside = False
        elif inside:
            lines.add(n)
    return lines


def _needed(stmt, solution):
    if isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef)):
        return True
    if set(range(stmt.lineno, stmt.end_lineno + 1)) & solution:
        return True
    return isinstance(stmt, ast.Assign) and "checks." in ast.unparse(stmt.value) \
        and "check_" not in ast.unparse(stmt.value)


def _checker_calls(tree):
    return [node for node in ast.walk(tree) if isinstance(node, ast.Call)
            and re.match(r"checks\.lesson\d\d\.check_\w+$", ast.unparse(node.func))]


def _run_lesson(path, monkeypatch):
    """[(call source, Result)] for every checker call of the lesson's exercise cells."""
    monkeypatch.chdir(path.parent)
    space = {"__name__": "__main__"}
    results = []
    for cell in nbformat.read(path, as_version=4).cells:
        if cell.cell_type != "code":
            continue
        source = MAGIC.sub(r"\1pass", cell.source)
        tree = ast.parse(source)
        solution = _solution_lines(source)
        for stmt in tree.body:
            if not _needed(stmt, solution):
                continue
            code = compile(ast.Module([stmt], []), str(path), "exec")
            if set(range(stmt.lineno, stmt.end_lineno + 1)) & solution:
                exec(code, space)         # a solution must run
                continue
            try:
                exec(code, space)
            except (ImportError, NameError):   # needs a skipped part of the lesson: not a solution
                pass
        if solution:
            for call in _checker_calls(tree):
                results.append((ast.unparse(call), eval(ast.unparse(call), space)))
    return results


@pytest.mark.parametrize("path", LESSONS, ids=[p.stem[:2] for p in LESSONS])
def test_saved_solutions_pass_their_checkers(path, monkeypatch):
    results = _run_lesson(path, monkeypatch)
    assert results, f"{path.name} has no exercise cells"
    for call, result in results:
        assert result, f"{path.name}: {call} -> {result!r}"
        assert result.exercise and result.status == "pass"
    lesson = f"lesson{path.stem[:2]}"
    ran = {r.exercise for _, r in results}
    assert ran == set(EXERCISES[lesson]), "every registered exercise has a cell, and back"


def test_quiz_answers_are_not_in_plain_text():
    """No single-letter answer is assigned to a name, and no dict is keyed by a strict subset of
    a quiz's letters (its missing key would give the answer away)."""
    for path in (ROOT / "frcnn_edu" / "checks").glob("*.py"):
        tree = ast.parse(path.read_text())
        letter_sets = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                    and isinstance(node.value.value, str) and re.fullmatch(r"[a-e]", node.value.value):
                pytest.fail(f"{path.name}:{node.lineno} stores a one-letter answer in plain text")
            if isinstance(node, ast.Dict) and node.keys and all(
                    isinstance(k, ast.Constant) and isinstance(k.value, str)
                    and re.fullmatch(r"[a-z]", k.value) for k in node.keys):
                letter_sets.append({k.value for k in node.keys})
        for letters in letter_sets:
            assert not any(letters < other for other in letter_sets), \
                f"{path.name}: a dict keyed by the wrong letters only gives the answer away"
    assert "_DROPPED_RIGHT = \"c\"" not in (ROOT / "frcnn_edu/checks/lesson05.py").read_text()


def test_quiz_behaviour_is_unchanged():
    right = checks.lesson05.check_dropped_gradient("(C)")
    assert right and right.exercise == "lesson05.dropped_gradient"
    wrong = checks.lesson05.check_dropped_gradient("e")
    assert not wrong and "RoI pooling passes" in wrong.message
    assert not checks.lesson05.check_dropped_gradient("z")
