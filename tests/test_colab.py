"""Colab: every lesson installs the course from the one address in pyproject.toml, and the
README's badges and the lessons' links open the same lessons (tools/colab.py writes them)."""
import importlib.util
import re
import tomllib
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
