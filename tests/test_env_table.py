"""README's configuration table lists every environment variable the project reads, and only
those: settings.py's (found by parsing its env helper calls), the Makefile's `?=` variables and
what bin/ reads. A variable added without a row, or a row left behind by a removed variable,
fails here."""

import ast
import re
from pathlib import Path

from .conftest import parse

ROOT = Path(__file__).resolve().parent.parent
# settings.py's typed helpers and the plain reads; each takes the variable's name first.
READERS = {"envbool", "envint", "envfloat", "envlist", "envints", "envurl", "_raw", "getenv"}


def settings_reads(source: str) -> dict[str, ast.expr | None]:
    """Variable name → the default expression it is read with (None: no default)."""
    found: dict[str, ast.expr | None] = {}
    tree = parse(source)
    # The helpers' own bodies pass their `name` parameter on; they read nothing themselves.
    helpers = {id(n) for d in tree.body if isinstance(d, ast.FunctionDef) and d.name in READERS
               for n in ast.walk(d)}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or id(node) in helpers:
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name == "get" and isinstance(func, ast.Attribute) and \
                getattr(func.value, "attr", None) == "environ":
            name = "getenv"  # os.environ.get
        if name in READERS and node.args:
            first = node.args[0]
            assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                f"line {node.lineno}: an environment variable read by a computed name cannot be "
                "checked against the README; spell the name out")
            found[first.value] = node.args[1] if len(node.args) > 1 else None
    return found


def makefile_variables(source: str) -> set[str]:
    return set(re.findall(r"^(?:export\s+)?([A-Z][A-Z0-9_]*)\s*\?=", source, re.M))


def script_reads(source: str) -> set[str]:
    # `${NAME:-default}` and bin/prod-env's `port NAME DEFAULT`.
    return set(re.findall(r"\$\{([A-Z][A-Z0-9_]*):-", source)) | set(
        re.findall(r"^port ([A-Z][A-Z0-9_]*) ", source, re.M))


def table_rows(readme: str) -> dict[str, str]:
    """Variable → its row's default cell, from the configuration table's first column."""
    section = readme.split("## Configuration (environment variables)", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, str] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if not line.startswith("| `") or len(cells) != 3:
            continue
        for name in re.findall(r"`([^`]+)`", cells[0]):
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*", name), f"{name!r}: one name per backtick, no *"
            assert name not in rows, f"{name} has two rows"
            rows[name] = cells[1]
    return rows


def project_reads() -> tuple[dict[str, ast.expr | None], set[str]]:
    settings = settings_reads((ROOT / "tracerail" / "settings.py").read_text())
    others = makefile_variables((ROOT / "Makefile").read_text())
    for script in (ROOT / "bin").iterdir():
        others |= script_reads(script.read_text())
    return settings, others


def test_every_variable_read_has_a_row_and_every_row_is_read():
    settings, others = project_reads()
    documented = set(table_rows((ROOT / "README.md").read_text()))
    read = set(settings) | others
    assert sorted(read - documented) == [], "read but not in README's table"
    assert sorted(documented - read) == [], "in README's table but read nowhere"


def test_the_table_states_the_defaults_settings_use():
    rows = table_rows((ROOT / "README.md").read_text())
    settings, _ = project_reads()
    checked = 0
    for name, default in settings.items():
        if not isinstance(default, ast.Constant) or default.value in (None, ""):
            continue  # computed, or "empty"
        value = default.value
        if isinstance(value, bool):
            shown = str(value).lower()
        elif isinstance(value, float) and value.is_integer():
            shown = str(int(value))
        else:
            shown = str(value)
        assert f"`{shown}`" in rows[name], f"{name}: settings default {shown}, README {rows[name]}"
        checked += 1
    assert checked > 40  # the check ran over the table, not over nothing


def test_the_parsers_find_what_they_are_meant_to():
    source = ('def envint(name, default):\n    return _raw(name)\n'
              'X = envint("A", 1)\nY = os.getenv("B", "b")\nZ = os.environ.get("C")\n'
              'W = _raw("D")\nV = other("E")\n')
    assert set(settings_reads(source)) == {"A", "B", "C", "D"}
    makefile = "PG_PORT ?= 1\nexport T_ADDR ?= x\nBIN := y\n"
    assert makefile_variables(makefile) == {"PG_PORT", "T_ADDR"}
    assert script_reads('port WEB_PORT 8000\nx="${DEMO_CASES:-36}" "$ROOT"\n') == {
        "WEB_PORT", "DEMO_CASES"}
    readme = ("## Configuration (environment variables)\n\n| variable | default | meaning |\n"
              "|---|---|---|\n| **group** | | |\n| `A` / `B` | `1` / `2` | m |\n\n## Next\n"
              "| `C` | `3` | m |\n")
    assert table_rows(readme) == {"A": "`1` / `2`", "B": "`1` / `2`"}
