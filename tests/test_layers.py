"""The folders show the layers, and imports only point down:

    cases/web  →  cases/live, notify, mailin, files, analytics  →  cases/temporal, cases/config
      →  cases/store

(`cases/models.py` belongs with the configuration; `files` (the file store) and `mailin`
beside `live` and `notify`; `admin`, `templatetags` and `management` with the pages.) A
module imported lazily, inside a function, counts the same."""

from __future__ import annotations

import ast
from pathlib import Path

from .conftest import parse

ROOT = Path(__file__).resolve().parent.parent / "cases"

LAYER = {"store": 0, "config": 1, "models": 1, "temporal": 1, "live": 2, "notify": 2,
         "mailin": 2, "files": 2, "analytics": 2,
         "web": 3, "admin": 3, "templatetags": 3, "management": 3, "apps": 3,
         "migrations": 1}
# Alike layers that must not know each other either.
APART = {("temporal", "config"), ("config", "temporal"), ("temporal", "models")}


def _layer_of(path: Path) -> str:
    part = path.relative_to(ROOT).parts[0]
    return part.removesuffix(".py")


def _imported(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "cases":
                found += [f"cases.{a.name}" for a in node.names]
            else:
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names]
    return [name for name in found if name.startswith("cases.")]


def test_imports_point_down_the_layers():
    wrong = []
    for path in sorted(ROOT.rglob("*.py")):
        if path.parent == ROOT and path.name == "__init__.py":
            continue
        mine = _layer_of(path)
        for name in _imported(parse(path.read_text())):
            theirs = name.split(".")[1]
            if theirs not in LAYER or theirs == mine:
                continue
            if LAYER[theirs] > LAYER[mine] or (mine, theirs) in APART:
                wrong.append(f"{path.relative_to(ROOT.parent)} imports {name}")
    assert wrong == []


def test_the_check_sees_an_upward_import(tmp_path):
    tree = parse("def f():\n    from cases.web import views\n")
    assert _imported(tree) == ["cases.web"]
    assert LAYER["web"] > LAYER["store"]
