"""`make student`: copies of the lessons with the exercise solutions taken out.

The saved lessons hold each solution between `### BEGIN SOLUTION` and `### END SOLUTION` so they
run top to bottom under the tests. A student copy keeps the lines around them and puts a stub in
their place, and drops the outputs of those cells:

* inside a function the stub raises NotImplementedError: the checker then says "not filled in
  yet" (not an error), and the lesson's later cells call the function through
  `checks.use_or_reference`, which goes on with the library's answer while the stub is there;
* at the top level of a cell the stub sets each name the solution assigns to None (a checker
  says "not filled in yet" for None), so that "Run All" does not stop there.

Answers the lesson states elsewhere (a summary that quotes an exercise's result) are marked and
taken out of the student copy, with the outputs of their cells:

* a code line that ends with the comment `# ANSWER` is removed;
* in Markdown, text between `<!-- ANSWER -->` and `<!-- /ANSWER -->` is replaced by a note.

    python -m frcnn_edu.student notebooks build/student
"""
import ast
import re
import sys
from pathlib import Path

import nbformat

SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[^\n]*\n(.*?)^[ \t]*### END SOLUTION[^\n]*(\n|$)",
                      re.MULTILINE | re.DOTALL)
STUB = "{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError(\"replace this line with your answer\")\n"
VALUE_STUB = "{name} = None  # YOUR ANSWER HERE (replace None)\n"
ANSWER_LINE = re.compile(r"^[^\n]*#\s*ANSWER\s*(\n|$)", re.MULTILINE)
ANSWER_TEXT = re.compile(r"<!--\s*ANSWER\s*-->.*?<!--\s*/ANSWER\s*-->", re.DOTALL)
HIDDEN = "*(left out of your copy: work it out in the exercises)*"


def assigned_names(code):
    """Names a top-level solution block assigns, in order (for its None stub)."""
    names = []
    for stmt in ast.parse(code).body:
        targets = stmt.targets if isinstance(stmt, ast.Assign) else \
            [stmt.target] if isinstance(stmt, (ast.AugAssign, ast.AnnAssign, ast.For)) else []
        for target in targets:
            for node in ast.walk(target):
                if isinstance(node, ast.Name) and node.id not in names:
                    names.append(node.id)
    return names


def _stub(match, rest):
    """The stub of one block; `rest` is the cell's text after it (a top-level stub sets only
    the names used there: the answers, not the solution's intermediate names)."""
    indent, body = match.group(1), match.group(2)
    if indent:
        return STUB.format(indent=indent)
    names = assigned_names(body)
    used = [n for n in names if re.search(rf"\b{re.escape(n)}\b", rest)]
    names = used or names
    return "# YOUR CODE HERE\n" + "".join(VALUE_STUB.format(name=n) for n in names) if names \
        else STUB.format(indent="")


def strip_solutions(source):
    """Replace every solution block of a cell's source by a stub; return (source, count)."""
    return SOLUTION.subn(lambda m: _stub(m, source[m.end():]), source)


def strip_answers(cell):
    """Take the marked answers out of a cell; return how many were taken out."""
    pattern, repl = (ANSWER_LINE, "") if cell.cell_type == "code" else (ANSWER_TEXT, HIDDEN)
    cell.source, n = pattern.subn(repl, cell.source)
    return n


def make_student_copy(path, out_dir):
    nb = nbformat.read(path, as_version=4)
    removed = 0
    for cell in nb.cells:
        hidden = strip_answers(cell)
        n = 0
        if cell.cell_type == "code":
            cell.source, n = strip_solutions(cell.source)
        if (n or hidden) and cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        removed += n
    out = Path(out_dir) / Path(path).name
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    return out, removed


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    src, dst = (Path(a) for a in (argv + ["notebooks", "build/student"])[:2])
    for path in sorted(src.glob("*.ipynb")):
        out, removed = make_student_copy(path, dst)
        print(f"{out}: {removed} solution(s) replaced by stubs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
