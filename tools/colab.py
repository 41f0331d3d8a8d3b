"""Colab: every lesson's install cell and "Open in Colab" link, from one address.

    python tools/colab.py          # rewrite every lesson's install cell and link, and the README's badges

The address is `[project.urls] Source` in pyproject.toml (the only place it is written); the
lessons and the README get it from here, and tests/test_colab.py checks that they agree.
"""
import sys
import tomllib
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
COLAB = "https://colab.research.google.com/github/{path}/blob/main/notebooks/{name}"
LINK_TEXT = "Open this lesson in Colab"


def source_url():
    """https://github.com/OWNER/NAME, from pyproject.toml."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]["urls"]["Source"].rstrip("/")


def colab_url(name):
    return COLAB.format(path=source_url().removeprefix("https://github.com/"), name=name)


def install_cell():
    """The first code cell of every lesson: a no-op outside Colab.

    OpenCV: selective search needs its contrib modules. Where Colab's OpenCV lacks them, the cell
    installs the contrib build of the same flavour and exact version on top of it, --no-deps and
    uninstalling nothing (Colab's OpenCV, numpy and their pip records stay as they were). It asks
    a new process whether cv2.ximgproc is there, so the kernel has not imported cv2 yet and loads
    the contrib build at its first `import cv2`: no restart. `make colab-check` runs it.
    """
    return f'''# Colab only (elsewhere this cell does nothing): install frcnn_edu from {source_url()}.
# Colab keeps its own torch, torchvision, numpy and OpenCV (--no-deps).
import sys
if "google.colab" in sys.modules:
    %pip install -q --no-deps "frcnn_edu @ git+{source_url()}.git"
    # Selective search is in OpenCV's contrib modules. If Colab's OpenCV lacks them, add the
    # contrib build of the same version on top (nothing uninstalled; asked in a new process,
    # so that this kernel's first `import cv2` loads the contrib build).
    import subprocess
    from importlib.metadata import packages_distributions, version
    has_contrib = [sys.executable, "-c", "import cv2; cv2.ximgproc"]
    if subprocess.run(has_contrib, capture_output=True).returncode:
        opencv = next(d for d in packages_distributions()["cv2"] if "contrib" not in d)
        contrib = f"{{opencv.replace('opencv', 'opencv-contrib', 1)}}=={{version(opencv)}}"
        %pip install -q --no-deps "{{contrib}}"
        if "cv2" in sys.modules:
            print("OpenCV contrib installed: restart the session (Runtime menu), then run all again")'''


def link_line(name):
    return f"[{LINK_TEXT}]({colab_url(name)})"


def apply(path):
    """Put the install cell and the Colab link into one lesson; True if it changed."""
    nb = nbformat.read(path, as_version=4)
    title, install = nb.cells[0], nb.cells[1]
    if install.cell_type != "code" or "google.colab" not in install.source:
        raise SystemExit(f"{path}: the second cell must be the Colab install cell")
    heading, _, rest = title.source.partition("\n")
    rest = "\n".join(l for l in rest.splitlines() if LINK_TEXT not in l).strip("\n")
    new_title = f"{heading}\n\n{link_line(path.name)}\n\n{rest}"
    changed = (new_title, install_cell()) != (title.source, install.source)
    title.source, install.source = new_title, install_cell()
    if changed:
        nbformat.write(nb, path)
    return changed


BADGE = "[![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def apply_readme(readme=ROOT / "README.md"):
    """Give each lesson in the README's table a Colab badge after its notebook link."""
    text = readme.read_text(encoding="utf-8")
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        link = f"[{path.stem}](notebooks/{path.name})"
        if link in text and colab_url(path.name) not in text:
            text = text.replace(link, f"{link} {BADGE.format(url=colab_url(path.name))}", 1)
    readme.write_text(text, encoding="utf-8")


def main():
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        print(f"{path.name}: {'updated' if apply(path) else 'up to date'}")
    apply_readme()
    return 0


if __name__ == "__main__":
    sys.exit(main())
