"""The library's layout: no module imports another module's private names.

A name that starts with "_" is its module's own business; a second module that needs it should
import a public name (or the code should move). Exceptions: `frcnn_edu.kernels` (the low-level
kernels behind the public ops) and a module importing from itself.
"""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "frcnn_edu"
ALLOWED_SOURCES = ("frcnn_edu.kernels",)


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(node, module, is_package):
    """The absolute module an ImportFrom node reads from (None outside frcnn_edu)."""
    if node.level == 0:
        base = node.module or ""
    else:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - (node.level - 1)]
        base = ".".join(package + ([node.module] if node.module else []))
    return base if base == "frcnn_edu" or base.startswith("frcnn_edu.") else None


def private_imports():
    """[(file, line, source module, name)] for every private name imported across modules."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.ImportFrom):
                continue
            source = _resolve(node, module, path.name == "__init__.py")
            if source is None or source == module:
                continue
            if any(source == a or source.startswith(a + ".") for a in ALLOWED_SOURCES):
                continue
            for alias in node.names:
                name = alias.name
                if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                    found.append((str(path.relative_to(PACKAGE.parent)), node.lineno, source, name))
    return found


def test_the_resolver_reads_relative_imports():
    node = ast.parse("from ..boxes import _x").body[0]
    assert _resolve(node, "frcnn_edu.data.targets", False) == "frcnn_edu.boxes"
    node = ast.parse("from . import _answers").body[0]
    assert _resolve(node, "frcnn_edu.checks", True) == "frcnn_edu.checks"
    node = ast.parse("from .kernels.nms import nms_sorted").body[0]
    assert _resolve(node, "frcnn_edu.boxes", False) == "frcnn_edu.kernels.nms"
    assert _resolve(ast.parse("from torch import _C").body[0], "frcnn_edu.boxes", False) is None


def test_no_module_imports_another_modules_private_names():
    found = private_imports()
    assert not found, "private names imported across modules (make them public or move the " \
        "code):\n" + "\n".join(f"  {f}:{line}: from {src} import {name}" for f, line, src, name in found)
