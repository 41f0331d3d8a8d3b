"""`make book`: the lessons as a static HTML site, built from their saved outputs.

    python tools/book.py build/book                    # render the saved lessons (seconds)
    python tools/book.py build/book --execute          # run each lesson first (full mode), timed
    python tools/book.py build/book --execute --fast   # ... in the quick setting
    python tools/book.py build/book --no-solutions     # leave the exercise solutions out

The site works offline: index.html is the lesson map (read from the README's lesson table); each
lesson is one page with its own title and previous / next links; equations are typeset by a local
MathJax (the files of the `jupyter-server-mathjax` package, copied into _static/); an explorer
widget is shown as what it drew when the lesson was saved, under a note that its controls need a
running kernel; exercise solutions are folded under "Show the solution" (or left out). With
--execute, each lesson's wall-clock seconds go to timings.json (benchmarks/RESULTS.md records
them: a lesson's full mode should take at most 10 minutes on a 2-core CPU).
"""
import argparse
import html
import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from frcnn_edu.student import SOLUTION, strip_solutions

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "book_template"
MATHJAX = "_static/mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full,Safe"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_NOTE = ("Interactive explorer, shown as it was saved. Its controls need a running "
               "kernel: open the lesson in JupyterLab or Colab to move them.")


def lessons(folder=ROOT / "notebooks"):
    return sorted(Path(folder).glob("[0-9][0-9]_*.ipynb"))


def lesson_title(nb, default):
    """The text of the lesson's first heading ("Lesson 3: Anchors, ...")."""
    for cell in nb.cells:
        if cell.cell_type == "markdown" and cell.source.lstrip().startswith("#"):
            return cell.source.lstrip().splitlines()[0].lstrip("# ").strip()
    return default


def book_cell(html_text):
    """A raw HTML cell the book's template shows as is (nbconvert sanitises other HTML).

    Only this module makes them, from escaped text and saved images, so nothing unsafe gets in.
    """
    return nbformat.v4.new_raw_cell(html_text, metadata={"raw_mimetype": "text/html",
                                                         "book": True})


def fold_solutions(nb, keep=True):
    """Stub every solution block in its cell; show it folded after the cell (or not at all)."""
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type != "code" or not SOLUTION.search(cell.source):
            continue
        solution = "\n".join(m.group(0) for m in SOLUTION.finditer(cell.source))
        cell.source, _ = strip_solutions(cell.source)
        if keep:
            cells.append(book_cell('<details class="solution"><summary>Show the solution</summary>'
                                   f"<pre>{html.escape(solution)}</pre></details>"))
    nb.cells = cells


def _saved_outputs(model_id, state):
    """The outputs the Output widgets under `model_id` held when the lesson was saved."""
    model = state.get(model_id, {})
    if model.get("model_name") == "OutputModel":
        return list(model["state"].get("outputs", []))
    children = model.get("state", {}).get("children", [])
    return [out for child in children for out in _saved_outputs(str(child).replace("IPY_MODEL_", ""), state)]


def _as_html(output):
    """One saved output as HTML: a PNG as an image, text as preformatted text."""
    data = output.get("data", {})
    if "image/png" in data:
        return f'<img alt="the explorer as saved" src="data:image/png;base64,{data["image/png"].strip()}">'
    text = output.get("text") or data.get("text/plain", "")
    text = "".join(text) if isinstance(text, list) else text
    return f"<pre>{html.escape(text)}</pre>" if text.strip() else ""


def static_widgets(nb):
    """Replace each widget view by a note and its saved drawing; drop the widget state.

    Without the state the page loads no widget JavaScript from a CDN (none is shipped offline).
    """
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    cells = []
    for cell in nb.cells:
        cells.append(cell)
        views = [o for o in cell.get("outputs", []) if WIDGET_VIEW in o.get("data", {})]
        if not views:
            continue
        cell.outputs = [o for o in cell.outputs if WIDGET_VIEW not in o.get("data", {})]
        for view in views:
            saved = _saved_outputs(view["data"][WIDGET_VIEW]["model_id"], state)
            cells.append(book_cell(f'<div class="widget-note">{html.escape(WIDGET_NOTE)}</div>'
                                   + "".join(_as_html(o) for o in saved)))
    nb.cells = cells


def render_lesson(path, out_dir, nav, solutions=True):
    """One lesson page: title, previous / next links, static widgets, folded solutions."""
    nb = nbformat.read(path, as_version=4)
    title = lesson_title(nb, path.stem)
    nb.metadata["title"] = title
    static_widgets(nb)
    fold_solutions(nb, keep=solutions)
    exporter = HTMLExporter(template_name="book", extra_template_basedirs=[str(TEMPLATES)],
                            mathjax_url=MATHJAX)
    body, _ = exporter.from_notebook_node(nb, resources={"book": nav})
    out = Path(out_dir) / f"{path.stem}.html"
    out.write_text(body, encoding="utf-8")
    return out, title


def lesson_map(readme=ROOT / "README.md"):
    """{notebook stem: (what you learn, paper)} from the README's lesson table."""
    rows = {}
    for line in Path(readme).read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].isdigit():
            stem = re.search(r"\[([^\]]+)\]", cells[1])
            if stem:
                rows[stem.group(1)] = (cells[2], cells[3])
    return rows


def write_index(out_dir, pages):
    """index.html: the lesson map with links, in the book's style."""
    described = lesson_map()
    items = []
    for stem, title in pages:
        what, paper = described.get(stem, ("", ""))
        items.append(f'<li><a href="{stem}.html">{html.escape(title)}</a>'
                     f'<p>{html.escape(what)}</p><p class="paper">{html.escape(paper)}</p></li>')
    index = Path(out_dir) / "index.html"
    index.write_text(
        "<!doctype html><html lang='en'><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        "<title>frcnn_edu: two-stage object detection</title>"
        "<link rel='stylesheet' href='_static/book.css'><body class='book-index'>"
        "<h1>frcnn_edu: two-stage object detection, from R-CNN to Faster R-CNN</h1>"
        "<p>An open textbook in notebooks. Each lesson below is shown with the outputs of its "
        "last full run; open the notebooks in JupyterLab or Colab to run them and use the "
        f"explorers.</p><ol class='lessons'>{''.join(items)}</ol></body></html>\n",
        encoding="utf-8")
    return index


def copy_static(out_dir):
    """book.css and a local MathJax (from the jupyter-server-mathjax package): no network."""
    try:
        import jupyter_server_mathjax
    except ImportError:
        raise SystemExit("make book needs the jupyter-server-mathjax package for offline math: "
                         "pip install -e '.[dev]' (or pip install jupyter-server-mathjax)")
    static = Path(out_dir) / "_static"
    static.mkdir(parents=True, exist_ok=True)
    shutil.copy(TEMPLATES / "book.css", static / "book.css")
    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    if not (static / "mathjax").exists():
        shutil.copytree(source, static / "mathjax")


def execute(path, timeout=3600):
    """Run a lesson top to bottom in a fresh kernel and save it with its outputs."""
    from frcnn_edu.checks.runner import notebook_client   # nbclient without its lost wake-up

    nb = nbformat.read(path, as_version=4)
    notebook_client(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    nbformat.write(nb, path)


def build(out_dir, paths=None, run=False, solutions=True):
    """Render every lesson (running each first if `run`); returns {stem: seconds run}."""
    paths = lessons() if paths is None else [Path(p) for p in paths]
    if not paths:
        raise SystemExit(f"no lessons (NN_*.ipynb) found in {ROOT / 'notebooks'}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    copy_static(out_dir)
    seconds, pages = {}, []
    for i, path in enumerate(paths):
        if run:
            print(f">> executing {path.name}", flush=True)
            start = time.perf_counter()
            execute(path)
            seconds[path.stem] = round(time.perf_counter() - start, 1)
            print(f">> {path.name}: {seconds[path.stem]:.0f} s", flush=True)
        nav = {"index": "index.html",
               "prev": f"{paths[i - 1].stem}.html" if i > 0 else None,
               "next": f"{paths[i + 1].stem}.html" if i + 1 < len(paths) else None}
        out, title = render_lesson(path, out_dir, nav, solutions)
        pages.append((path.stem, title))
    write_index(out_dir, pages)
    return seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="build/book")
    parser.add_argument("--execute", action="store_true",
                        help="run each lesson (full mode) before rendering, and time it")
    parser.add_argument("--fast", action="store_true", help="with --execute: the quick setting")
    parser.add_argument("--no-solutions", action="store_true", help="leave the solutions out")
    args = parser.parse_args(argv)
    if args.fast:
        os.environ["FRCNN_EDU_FAST"] = "1"
    seconds = build(args.out, run=args.execute, solutions=not args.no_solutions)
    if args.execute:
        (Path(args.out) / "timings.json").write_text(json.dumps(
            {"seconds": seconds, "cpu_count": os.cpu_count(), "fast": args.fast}, indent=1) + "\n")
    print(f">> wrote {Path(args.out) / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
