"""Colab: every lesson installs the course from the one address in pyproject.toml, and the
README's badges and the lessons' links open the same lessons (tools/colab.py writes them)."""
import importlib.metadata
import importlib.util
import re
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
_spec = importlib.util.spec_from_file_location("colab", ROOT / "tools" / "colab.py")
colab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(colab)


def test_the_address_is_written_once_in_pyproject():
    with open(ROOT / "pyproject.toml", "rb") as f:
        url = tomllib.load(f)["project"]["urls"]["Source"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+/?", url), url
    assert colab.source_url() == url.rstrip("/")
    # no other file of the package or the tools spells the address itself
    spelled = [p for p in [*ROOT.joinpath("frcnn_edu").rglob("*.py"), *ROOT.joinpath("tools").glob("*.py")]
               if colab.source_url() in p.read_text(encoding="utf-8")]
    assert spelled == [], spelled


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_each_lesson_has_the_install_cell_and_its_own_colab_link(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.cells[1].cell_type == "code" and nb.cells[1].source == colab.install_cell(), (
        f"{path.name}: run `python tools/colab.py`")
    assert colab.link_line(path.name) in nb.cells[0].source
    links = re.findall(r"https://colab\.research\.google\.com/\S+?\.ipynb", nb.cells[0].source)
    assert links == [colab.colab_url(path.name)], links   # its own notebook, once


def test_the_install_cell_does_nothing_outside_colab():
    """Everything that installs sits under the google.colab test: a local run changes nothing."""
    body = colab.install_cell().splitlines()
    guard = body.index('if "google.colab" in sys.modules:')
    assert all(not line.strip().startswith("%") for line in body[:guard])
    assert all(line.startswith("    ") for line in body[guard + 1:] if line.strip())
    assert "--no-deps" in colab.install_cell()   # Colab keeps its own torch and torchvision
    assert "%pip uninstall" not in colab.install_cell()   # and its own OpenCV
    assert f"git+{colab.source_url()}.git" in colab.install_cell()


def test_readme_badges_point_at_every_lesson():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in LESSONS:
        row = next(line for line in readme.splitlines() if f"(notebooks/{path.name})" in line)
        assert colab.colab_url(path.name) in row, f"{path.name}: run `python tools/colab.py`"


def test_apply_is_idempotent(tmp_path):
    copy = tmp_path / LESSONS[0].name
    copy.write_bytes(LESSONS[0].read_bytes())
    assert colab.apply(copy) is False          # the saved lesson is already up to date
    nb = nbformat.read(copy, as_version=4)
    nb.cells[1].source = "# an old install cell\nimport sys\nif \"google.colab\" in sys.modules:\n    pass"
    nb.cells[0].source = nb.cells[0].source.replace(colab.link_line(copy.name), "")
    nbformat.write(nb, copy)
    assert colab.apply(copy) is True and colab.apply(copy) is False
    again = nbformat.read(copy, as_version=4)
    assert again.cells[0].source.count(colab.LINK_TEXT) == 1


@pytest.fixture
def colab_shell(monkeypatch):
    """An IPython shell in which google.colab is imported and %pip only records its line."""
    from IPython.core.interactiveshell import InteractiveShell
    shell = InteractiveShell.instance()
    magics = shell.magics_manager.magics["line"]
    ran = []
    monkeypatch.setitem(magics, "pip", ran.append)
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    monkeypatch.delitem(sys.modules, "cv2", raising=False)   # a fresh Colab kernel
    return shell, ran


def _run(shell, monkeypatch, has_contrib, opencv=("opencv-python", "4.12.0.88")):
    """Run the install cell with OpenCV as given; what the cell printed."""
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: types.SimpleNamespace(
        returncode=0 if has_contrib else 1))
    monkeypatch.setattr(importlib.metadata, "packages_distributions", lambda: {"cv2": [opencv[0]]})
    monkeypatch.setattr(importlib.metadata, "version", {opencv[0]: opencv[1]}.__getitem__)
    result = shell.run_cell(colab.install_cell(), silent=True)
    result.raise_error()


def test_the_install_cell_leaves_an_opencv_with_contrib_alone(colab_shell, monkeypatch):
    shell, ran = colab_shell
    _run(shell, monkeypatch, has_contrib=True)
    assert ran == [f'install -q --no-deps "frcnn_edu @ git+{colab.source_url()}.git"']


@pytest.mark.parametrize("opencv", [("opencv-python", "4.12.0.88"),
                                    ("opencv-python-headless", "4.10.0.84")])
def test_the_install_cell_adds_contrib_of_the_same_flavour_and_version(colab_shell, monkeypatch,
                                                                       capsys, opencv):
    """Nothing is uninstalled; no restart is asked for, since the kernel had not imported cv2."""
    shell, ran = colab_shell
    _run(shell, monkeypatch, has_contrib=False, opencv=opencv)
    contrib = opencv[0].replace("opencv", "opencv-contrib", 1)
    assert ran[1:] == [f'install -q --no-deps "{contrib}=={opencv[1]}"']
    assert "restart" not in capsys.readouterr().out


def test_the_install_cell_asks_for_a_restart_if_cv2_was_imported(colab_shell, monkeypatch, capsys):
    shell, ran = colab_shell
    monkeypatch.setitem(sys.modules, "cv2", types.ModuleType("cv2"))
    _run(shell, monkeypatch, has_contrib=False)
    assert "restart the session" in capsys.readouterr().out


def test_the_install_cell_does_nothing_in_a_plain_kernel(colab_shell, monkeypatch):
    shell, ran = colab_shell
    monkeypatch.delitem(sys.modules, "google.colab")
    _run(shell, monkeypatch, has_contrib=False)
    assert ran == []
