"""Every module, object and file that the documentation names exists.

Docstrings and the README are the main documentation of hacluster; a renamed module or file leaves them
pointing at nothing, and a newcomer follows the pointer. This test collects the names they give in
backquotes — dotted names under `hacluster.` / `chaos.` and repository paths such as `scripts/demo` or
`configs/3-masters.yaml` — and checks each one resolves: a module imports and the rest of the name is an
attribute of it, a path exists in the checkout.
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted([*(ROOT / "hacluster").rglob("*.py"), *(ROOT / "chaos").rglob("*.py")])

# `hacluster.x.y` or `chaos.x.y`, optionally with a call's parentheses: `hacluster.cli.main.main()`.
DOTTED = re.compile(r"`((?:hacluster|chaos)(?:\.[A-Za-z_][A-Za-z0-9_]*)+)(?:\(\))?`")
# A path inside the repository, from one of its top-level folders or files.
PATH = re.compile(r"`((?:hacluster|chaos|tests|scripts|configs|docs|\.ci)/[A-Za-z0-9_./-]+"
                  r"|pyproject\.toml|README\.md|LICENSE)`")


def _docstrings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = [tree, *(n for n in ast.walk(tree)
                     if isinstance(n, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef))]
    docs = [ast.get_docstring(n, clean=False) for n in nodes]
    # Attribute docstrings (a string literal right after an assignment), as the config's settings use.
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list):
            for before, after in zip(body, body[1:], strict=False):
                if isinstance(before, ast.Assign | ast.AnnAssign) and isinstance(after, ast.Expr) \
                        and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str):
                    docs.append(after.value.value)
    return [d for d in docs if d]


def _documents() -> list[tuple[str, str]]:
    """(where, text) for every docstring of the product and the chaos rig, and for the README."""
    out = [(str(p.relative_to(ROOT)), doc) for p in SOURCES for doc in _docstrings(p)]
    out.append(("README.md", (ROOT / "README.md").read_text()))
    return out


def _resolves(dotted: str) -> bool:
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                # A class's instance attributes are declared by annotation, not set on the class.
                if attr in getattr(obj, "__annotations__", {}):
                    break
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _path_exists(name: str) -> bool:
    name = name.rstrip("./")
    if any(ch in name for ch in "*<>{}"):
        return True  # a pattern (`tests/**`, `configs/<name>.yaml`), not one file
    return (ROOT / name).exists()


def test_the_documentation_is_collected() -> None:
    """The collectors see the names they are meant to (so the checks below cannot pass on nothing)."""
    found = [m.group(1) for _, text in _documents() for m in DOTTED.finditer(text)]
    paths = [m.group(1) for _, text in _documents() for m in PATH.finditer(text)]
    assert len(found) > 50 and len(paths) > 20, (len(found), len(paths))
    assert not _resolves("hacluster.apiserver.master")
    assert not _path_exists("docs/pysyncobj.md")


@pytest.mark.parametrize("kind", ["modules and objects", "files"])
def test_every_name_in_the_documentation_exists(kind: str) -> None:
    missing = []
    for where, text in _documents():
        if kind == "files":
            missing += [f"{where}: {m.group(1)}" for m in PATH.finditer(text) if not _path_exists(m.group(1))]
        else:
            missing += [f"{where}: {m.group(1)}" for m in DOTTED.finditer(text) if not _resolves(m.group(1))]
    assert not missing, "names in the documentation that do not exist:\n" + "\n".join(sorted(set(missing)))
