"""`make book`: execute every lesson top to bottom and render it to HTML.

    python -m frcnn_edu.book build/book [--fast]

Each lesson runs in a fresh kernel (full settings unless --fast), then nbconvert writes
build/book/<lesson>.html and an index.html that links them in order. The wall-clock seconds of
each lesson's run are printed and written to build/book/timings.json (benchmarks/RESULTS.md
records them: a lesson's full mode should take at most 10 minutes on a 2-core CPU).
"""
import html
import json
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbconvert import HTMLExporter

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def render(path, out_dir, timeout=3600):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    body, _ = HTMLExporter().from_notebook_node(nb)
    out = Path(out_dir) / (path.stem + ".html")
    out.write_text(body, encoding="utf-8")
    title = next((c.source.splitlines()[0].lstrip("# ") for c in nb.cells
                  if c.cell_type == "markdown" and c.source.strip()), path.stem)
    return out, title


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if "--fast" in argv:
        os.environ["FRCNN_EDU_FAST"] = "1"
        argv = [a for a in argv if a != "--fast"]
    out_dir = Path(argv[0] if argv else "build/book")
    out_dir.mkdir(parents=True, exist_ok=True)
    links, seconds = [], {}
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")):
        print(f">> executing {path.name}", flush=True)
        start = time.perf_counter()
        out, title = render(path, out_dir)
        seconds[path.stem] = round(time.perf_counter() - start, 1)
        print(f">> {path.name}: {seconds[path.stem]:.0f} s", flush=True)
        links.append(f'<li><a href="{out.name}">{html.escape(title)}</a></li>')
    (out_dir / "timings.json").write_text(json.dumps(
        {"seconds": seconds, "cpu_count": os.cpu_count(), "fast": os.environ.get("FRCNN_EDU_FAST") == "1"},
        indent=1) + "\n")
    index = out_dir / "index.html"
    index.write_text("<!doctype html><meta charset='utf-8'><title>frcnn_edu</title>"
                     "<h1>frcnn_edu: two-stage object detection, from R-CNN to Faster R-CNN</h1>"
                     f"<ol>{''.join(links)}</ol>\n", encoding="utf-8")
    print(f">> wrote {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
