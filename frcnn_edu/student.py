"""`make student`: copies of the lessons with the exercise solutions taken out.

The saved lessons hold each solution between `### BEGIN SOLUTION` and `### END SOLUTION` so they
run top to bottom under the tests. A student copy keeps the lines around them and puts a stub in
their place (indented like the solution), and drops the outputs of those cells:

    python -m frcnn_edu.student notebooks build/student
"""
import re
import sys
from pathlib import Path

import nbformat

SOLUTION = re.compile(r"^([ \t]*)### BEGIN SOLUTION[^\n]*\n.*?^[ \t]*### END SOLUTION[^\n]*(\n|$)",
                      re.MULTILINE | re.DOTALL)
STUB = "{indent}# YOUR CODE HERE\n{indent}raise NotImplementedError(\"replace this line with your answer\")\n"


def strip_solutions(source):
    """Replace every solution block of a cell's source by a stub; return (source, count)."""
    return SOLUTION.subn(lambda m: STUB.format(indent=m.group(1)), source)


def make_student_copy(path, out_dir):
    nb = nbformat.read(path, as_version=4)
    removed = 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        cell.source, n = strip_solutions(cell.source)
        if n:
            removed += n
            cell.outputs, cell.execution_count = [], None
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
