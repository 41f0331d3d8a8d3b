"""Colab, mimicked: every lesson's install cell and the lesson itself, in a venv shaped like Colab.

    python tools/colab_mimic.py                 # make colab-check: set up, run every lesson, check
    python tools/colab_mimic.py --setup-only    # only build/colab-mimic/venv (pip, no lessons)
    python tools/colab_mimic.py --reuse         # the lessons in the venv --setup-only made
                                                # (a course installed by an earlier run is
                                                # uninstalled first, so HEAD is what runs)
    python tools/colab_mimic.py --lessons 00 03

1. A fresh venv (build/colab-mimic/venv) gets what Colab ships, not what constraints.txt pins:
   COLAB below (ipywidgets 7.7.1, ipykernel 6 / IPython 7, another torch and numpy minor,
   opencv-python without the contrib modules, matplotlib, scikit-image, pycocotools, tqdm).
   A stand-in `google.colab` module goes into its site-packages, and an IPython start-up file
   imports it in every kernel, as Colab's kernel does, so the install cell takes its Colab branch.
2. Each lesson is copied alone into build/colab-mimic/content/ (what the Colab badge opens) and
   run top to bottom by nbclient in that venv's kernel, FRCNN_EDU_FAST=1. Its install cell must be
   tools/colab.py's; the one change is the address: `git+<Source>.git` becomes `git+file://<this
   repository>`, so pip clones and builds the committed HEAD as it would the public repository
   (the address is not published yet). Lessons run in order in the one venv: lesson 00's cell
   installs into the fresh venv, the later cells find the course installed (a Colab runtime
   per lesson would start fresh each time). A lesson that reads the repository's folders runs
   in a clone's notebooks/ folder, as that lesson tells Colab readers to do (CLONE below).
3. Afterwards every distribution that was there before has the same version (torch, numpy,
   OpenCV ...), `import cv2; cv2.ximgproc` works in a new process, and `pip check` is reported.

The result goes to build/colab-mimic/report.json; the exit status is 0 when every lesson ran,
no preinstalled version changed and cv2.ximgproc is there.
"""
import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build" / "colab-mimic"
VENV = BUILD / "venv"
PY = VENV / "bin" / "python"
KERNEL = "colab-mimic"

# What a Colab runtime has, as far as the lessons are concerned (Colab's own list, 2025: Python
# 3.12, torch 2.x+cu12x, numpy 2.0.2, opencv-python 4.12.0.88, ipywidgets 7.7.1, ipykernel
# 6.17.1, IPython 7.34.0, matplotlib 3.10). Python is this machine's 3.11; torch is a CUDA build
# from PyPI, as on Colab, two minors before constraints.txt's 2.14 (about 3 GB with its CUDA
# wheels; PyPI has no CPU build of torchvision to pair with a CPU torch).
COLAB = ["torch==2.12.1", "torchvision==0.27.1", "numpy==2.0.2", "opencv-python==4.12.0.88",
         "ipywidgets==7.7.1", "ipykernel==6.17.1", "ipython==7.34.0", "matplotlib==3.10.0",
         "scikit-image==0.25.2", "scipy==1.16.3", "pycocotools==2.0.10", "tqdm==4.67.1"]
PIP = "pip==24.1.2"   # Colab's
WATCHED = ["torch", "torchvision", "numpy", "opencv-python", "ipywidgets", "matplotlib"]
CLONE = {"06_paper_tables.ipynb": "reads ../benchmarks; the lesson says: on Colab, git clone the "
                                  "repository and open this lesson from its notebooks/ folder"}
GOOGLE_COLAB = '"""Stand-in for Colab\'s google.colab: the install cell only asks if it is imported."""\n'


def colab_tools():
    spec = importlib.util.spec_from_file_location("colab", ROOT / "tools" / "colab.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def pip(*args, capture=False):
    return subprocess.run([str(PY), "-m", "pip", *args], check=True, text=True,
                          capture_output=capture).stdout


def installed():
    """{distribution name (lower case): version} in the venv."""
    return {d["name"].lower(): d["version"] for d in json.loads(pip("list", "--format=json",
                                                                   capture=True))}


def setup():
    """A fresh venv with Colab's packages, its google.colab stand-in and a kernel spec."""
    shutil.rmtree(BUILD, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    print(f">> installing what Colab ships into {VENV}:\n   {' '.join(COLAB)}", flush=True)
    pip("install", "--quiet", PIP)   # the venv's own pip (23.2) rejects 'name @ git+file:///...'
    pip("install", "--quiet", "--no-compile", *COLAB)
    purelib = subprocess.run([str(PY), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    colab = Path(purelib, "google", "colab")        # google/ stays a namespace package
    colab.mkdir(parents=True)
    (colab / "__init__.py").write_text(GOOGLE_COLAB)
    startup = BUILD / "ipython" / "profile_default" / "startup"
    startup.mkdir(parents=True)
    (startup / "00-google-colab.py").write_text("import google.colab  # as Colab's kernel does\n")
    spec = BUILD / "jupyter" / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(PY), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Colab mimic", "language": "python",
        "env": {"IPYTHONDIR": str(BUILD / "ipython"), "FRCNN_EDU_FAST": "1",
                "PYDEVD_DISABLE_FILE_VALIDATION": "1"}}, indent=1))  # ipykernel 6: debugger noise
    (BUILD / "preinstalled.json").write_text(json.dumps(installed(), indent=1, sort_keys=True))


def lesson_copy(path, install_cell, local_cell):
    """Where the lesson runs and its notebook, the install cell's address made local."""
    nb = nbformat.read(path, as_version=4)
    if nb.cells[1].source != install_cell:
        raise SystemExit(f"{path.name}: its install cell is not tools/colab.py's; run tools/colab.py")
    nb.cells[1].source = local_cell
    if path.name in CLONE:
        where = BUILD / "clone"
        if not where.exists():
            subprocess.run(["git", "clone", "--quiet", str(ROOT), str(where)], check=True)
        else:  # an earlier run's clone: bring it to this repository's HEAD, as a new clone would be
            subprocess.run(["git", "-C", str(where), "fetch", "--quiet", str(ROOT), "HEAD"], check=True)
            subprocess.run(["git", "-C", str(where), "reset", "--quiet", "--hard", "FETCH_HEAD"],
                           check=True)
        where = where / "notebooks"
    else:
        where = BUILD / "content"
        where.mkdir(exist_ok=True)
    return where, nb


def run_lesson(where, nb, name, timeout):
    """Run the notebook in the mimic's kernel; (seconds, None) or (seconds, the error)."""
    from nbclient.exceptions import CellExecutionError

    from frcnn_edu.checks.runner import notebook_client   # nbclient without its lost wake-up

    start, error = time.perf_counter(), None
    try:
        notebook_client(nb, timeout=timeout, kernel_name=KERNEL,
                       resources={"metadata": {"path": str(where)}}).execute()
    except CellExecutionError as err:
        error = f"{err.ename}: {err.evalue}"
    except Exception as err:                  # a kernel that died, a timeout
        error = f"{type(err).__name__}: {err}"
    nbformat.write(nb, where / name)          # executed, with its outputs, for reading
    return round(time.perf_counter() - start, 1), error


def after_checks(before):
    """Preinstalled versions that changed, what was added, cv2.ximgproc, pip check."""
    after = installed()
    changed = {n: [v, after.get(n)] for n, v in before.items() if after.get(n) != v}
    added = {n: v for n, v in after.items() if n not in before}
    probe = subprocess.run([str(PY), "-c", "import cv2, numpy, torch; cv2.ximgproc.segmentation; "
                            "print(cv2.__version__, numpy.__version__, torch.__version__)"],
                           capture_output=True, text=True)
    check = subprocess.run([str(PY), "-m", "pip", "check"], capture_output=True, text=True)
    return {"changed": changed, "added": added,
            "ximgproc": probe.returncode == 0,
            "cv2 numpy torch": (probe.stdout or probe.stderr).strip().splitlines()[-1],
            "pip check": check.stdout.strip().splitlines()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--setup-only", action="store_true", help="build the venv and stop")
    parser.add_argument("--reuse", action="store_true", help="use the venv --setup-only built")
    parser.add_argument("--lessons", nargs="*", help="lesson numbers (default: all)")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds a cell may take")
    args = parser.parse_args()
    os.environ.pop("PYTHONPATH", None)    # the kernels and pip see the venv alone, as on Colab
    if not args.reuse:
        setup()
    elif not (BUILD / "preinstalled.json").exists():
        raise SystemExit(f"--reuse: no {BUILD / 'preinstalled.json'}; run --setup-only first")
    before = json.loads((BUILD / "preinstalled.json").read_text())
    print(">> Colab's versions: " + ", ".join(f"{n} {before[n]}" for n in WATCHED), flush=True)
    if args.setup_only:
        return 0
    fresh = "frcnn_edu" not in installed()
    if not fresh:  # an earlier run's course would satisfy the install cell: test HEAD instead
        print(">> note: the venv has frcnn_edu from an earlier run: uninstalled, so that the "
              "install cell installs the committed HEAD (its dependencies stay installed)")
        subprocess.run([str(PY), "-m", "pip", "uninstall", "--yes", "--quiet", "frcnn_edu"],
                       check=True)
    if subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                      capture_output=True, text=True).stdout.strip():
        print(">> note: uncommitted changes are not in the test (pip clones the committed HEAD)")

    colab = colab_tools()
    address = f"git+{colab.source_url()}.git"
    local_cell = colab.install_cell().replace(address, f"git+file://{ROOT}")
    assert local_cell != colab.install_cell(), f"{address} is not in the install cell"
    os.environ["JUPYTER_PATH"] = str(BUILD / "jupyter")
    lessons = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if args.lessons:
        lessons = [p for p in lessons if p.name[:2] in args.lessons]
    results, start = {}, time.perf_counter()
    for path in lessons:
        where, nb = lesson_copy(path, colab.install_cell(), local_cell)
        print(f">> {path.stem} (in {where.relative_to(ROOT)})", flush=True)
        seconds, error = run_lesson(where, nb, path.name, args.timeout)
        install_output = "".join(o.get("text", "") for o in nb.cells[1].get("outputs", []))
        results[path.stem] = {"seconds": seconds, "error": error, "install cell": install_output,
                              "where": str(where.relative_to(ROOT))}
        print(f"   {'passed' if error is None else 'FAILED: ' + error} ({seconds:.0f} s)", flush=True)
    report = {"lessons": results, "seconds": round(time.perf_counter() - start), "fresh": fresh,
              "colab": {n: before[n] for n in WATCHED}, **after_checks(before)}
    (BUILD / "report.json").write_text(json.dumps(report, indent=1))
    ok = (all(r["error"] is None for r in results.values()) and not report["changed"]
          and report["ximgproc"])
    print(f">> {sum(r['error'] is None for r in results.values())} of {len(results)} lessons "
          f"passed in {report['seconds']} s; versions changed: {report['changed'] or 'none'}; "
          f"added: {report['added']}; cv2.ximgproc: {report['ximgproc']} "
          f"({report['cv2 numpy torch']}); pip check: {report['pip check']}")
    print(f">> report: {(BUILD / 'report.json').relative_to(ROOT)}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
