"""The distributions: the sdist is the whole course; the wheel works installed, away from the source.

Built with setuptools' PEP 517 hooks directly (no network, no extra build tool); the wheel is
installed with pip into a folder of its own and a lesson runs against that copy.
"""
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _hook(name, out):
    """Run setuptools' build hook `name` in a subprocess (it writes into the source tree's cwd)."""
    code = f"from setuptools import build_meta; print(build_meta.{name}({str(out)!r}))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          check=True)
    return Path(out) / done.stdout.strip().splitlines()[-1]


def test_sdist_is_the_whole_course(tmp_path):
    with tarfile.open(_hook("build_sdist", tmp_path)) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    lessons = {f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")}
    wanted = {"Makefile", "constraints.txt", "environment.yml", "tests/conftest.py",
              "tests/nbval_sanitize.cfg", "tools/book.py", "benchmarks/results/ladder.json",
              "frcnn_edu/assets/tiny_vgg_shapes.pt", *lessons}
    assert wanted <= names, f"missing from the sdist: {sorted(wanted - names)}"


@pytest.mark.skipif(os.environ.get("FRCNN_EDU_SKIP_WHEEL") == "1", reason="asked to skip")
def test_wheel_installs_with_its_assets_and_runs_lesson_00_outside_the_source(tmp_path):
    wheel = _hook("build_wheel", tmp_path / "dist")
    with zipfile.ZipFile(wheel) as z:
        assert "frcnn_edu/assets/tiny_vgg_shapes.pt" in z.namelist()
        assert not any(n.startswith(("frcnn_edu/book", "tools/")) for n in z.namelist())
        assert "frcnn_edu/assets/results/ladder.json" in z.namelist()
        trees = "frcnn_edu/assets/treecrowns/"   # lesson 08's photographs, with their licence
        for name in ("LICENSE", "README.md", "classes.txt", "ImageSets/Main/test.txt",
                     "Annotations/train_000000.xml", "JPEGImages/train_000000.jpg"):
            assert trees + name in z.namelist(), name
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target",
                    str(site), str(wheel)], check=True)
    nb = nbformat.read(ROOT / "notebooks" / "00_pipeline_overview.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(  # the results files the lessons quote travel too
        "from frcnn_edu.results import load_results; print(load_results('ladder')['faster_rcnn']['mAP'])"))
    nb.cells.append(nbformat.v4.new_code_cell("import frcnn_edu; print(frcnn_edu.__file__)"))
    lesson = tmp_path / "reader" / "00_pipeline_overview.ipynb"   # a folder with no source tree
    lesson.parent.mkdir()
    nbformat.write(nb, lesson)
    env = {**os.environ, "PYTHONPATH": str(site), "FRCNN_EDU_FAST": "1", "MPLBACKEND": "Agg"}
    subprocess.run([sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
                    "--inplace", "--ExecutePreprocessor.timeout=600", str(lesson),
                    # the wheel's own runner, without nbclient's lost wake-up (checks/runner.py)
                    "--ExecutePreprocessor.kernel_manager_class="
                    "frcnn_edu.checks.runner.SlicedKernelManager"],
                   cwd=lesson.parent, env=env, check=True, capture_output=True)
    ran = nbformat.read(lesson, as_version=4)
    where = "".join(o.get("text", "") for o in ran.cells[-1].outputs).strip()
    assert Path(where).is_relative_to(site), f"the lesson imported {where}, not the installed wheel"
    ladder = json.loads((ROOT / "benchmarks" / "results" / "ladder.json").read_text())
    assert "".join(o.get("text", "") for o in ran.cells[-2].outputs).strip() == str(ladder["faster_rcnn"]["mAP"])
