"""The benchmarks' results files, read by the lessons so that their prose quotes one source.

`benchmarks/ladder.py` writes `benchmarks/results/ladder.json` (R-CNN, Fast R-CNN and Faster
R-CNN trained under one budget rule, scored on the same test images) and
`benchmarks/paper_tables.py` writes `benchmarks/results/paper_tables.json`. A lesson loads them
with `load_results("ladder")` and prints them with `format_ladder`, instead of copying numbers
into its text.
"""
import json
from pathlib import Path

# A checkout reads the files where the benchmarks write them. An installed package (Colab,
# `pip install`) carries the same files: frcnn_edu/assets/results is a link to that folder,
# followed when the wheel is built.
REPO_RESULTS = Path(__file__).resolve().parent.parent / "benchmarks" / "results"
PACKAGED_RESULTS = Path(__file__).resolve().parent / "assets" / "results"
RESULTS_DIR = REPO_RESULTS if REPO_RESULTS.is_dir() else PACKAGED_RESULTS

# (key in ladder.json, detector, where its proposals come from)
LADDER_RUNGS = (("rcnn", "R-CNN", "selective search, all"),
                ("fast_rcnn", "Fast R-CNN", "selective search, all"),
                ("faster_rcnn", "Faster R-CNN", "RPN, top 300"))


def load_results(name, folder=None):
    """The dict in `<folder>/<name>.json` (default: benchmarks/results/, or the installed copy)."""
    path = Path(folder or RESULTS_DIR) / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: it is written by `python benchmarks/{name}.py` "
                                "from a checkout of the repository, and installed with the package")
    return json.loads(path.read_text())


def format_ladder(ladder):
    """The ladder as a small text table: detector, proposals, mAP@0.5, training steps."""
    lines = [f"{'detector':<14} {'proposals':<23} {'mAP@0.5':>8} {'SGD steps':>10}"]
    for key, name, proposals in LADDER_RUNGS:
        row = ladder[key]
        lines.append(f"{name:<14} {proposals:<23} {row['mAP']:>8.3f} {row.get('steps', '-'):>10}")
    return "\n".join(lines)
