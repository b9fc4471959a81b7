"""The gateway as a package (cases/temporal/): its types load without the SDK or Django's URL
machinery, its facade hands out what the modules define, and its error mapping tells a
cluster that is away from one that refused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.service import RPCError, RPCStatusCode

from cases import temporal
from cases.temporal.client import is_transient, mapped

ROOT = Path(__file__).resolve().parent.parent


def _loaded_after(code: str) -> dict[str, bool]:
    """Which of temporalio and django.urls a fresh interpreter has loaded after `code`."""
    probe = (f"import json, sys\n{code}\n"
             "print(json.dumps({m: m in sys.modules for m in ('temporalio', 'django.urls')}))")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True, timeout=60)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_types_import_neither_temporalio_nor_django_urls():
    assert _loaded_after("import cases.temporal.types") == \
        {"temporalio": False, "django.urls": False}
    # The facade's errors and dataclasses are the same: naming one costs no SDK.
    assert _loaded_after("from cases.temporal import CaseRow, TemporalUnavailable") == \
        {"temporalio": False, "django.urls": False}


def test_the_probe_sees_temporalio_once_a_call_is_named():
    # The check above is not vacuous: the first function named loads the SDK.
    assert _loaded_after("from cases import temporal\ntemporal.list_cases")["temporalio"]


def test_every_public_name_resolves_to_its_defining_module():
    from cases.temporal import _HOME_OF

    for name in temporal.__all__:
        value = getattr(temporal, name)
        home = _HOME_OF.get(name, "cases.temporal.types")
        assert value is getattr(sys.modules[home], name), name
    assert set(_HOME_OF) <= set(temporal.__all__)
    with pytest.raises(AttributeError):
        temporal.no_such_call  # noqa: B018


@pytest.mark.parametrize(("status", "kind", "transient"), [
    (RPCStatusCode.UNAVAILABLE, temporal.TemporalUnavailable, True),
    (RPCStatusCode.DEADLINE_EXCEEDED, temporal.TemporalUnavailable, True),
    (RPCStatusCode.INVALID_ARGUMENT, temporal.TemporalRefused, False),
    (RPCStatusCode.PERMISSION_DENIED, temporal.TemporalRefused, False),
])
def test_setup_errors_say_whether_asking_again_helps(status, kind, transient):
    """temporal_setup retries what is transient and reports the rest, catching only the
    project's own errors (it imports no temporalio)."""
    err = mapped(RPCError("no", status, b""))
    assert type(err) is kind
    assert is_transient(err) is transient
    if kind is temporal.TemporalRefused:
        assert err.message == f"Temporal refused ({status.name}): no"


@pytest.mark.parametrize(("path", "banned"), [
    ("cases/web/views.py", True),
    ("cases/live/feed.py", True),
    ("cases/management/commands/temporal_setup.py", True),
    ("cases/temporal/rows.py", False),
    ("workers/workflows.py", False),
])
def test_ruff_bans_temporalio_outside_the_gateway_and_the_worker(path, banned):
    """The rule `make test` enforces (pyproject.toml, TID251), as ruff reads it for a file
    at `path`."""
    ruff = Path(sys.executable).with_name("ruff")
    out = subprocess.run(
        [str(ruff), "check", "--select", "TID251", "--stdin-filename", path, "-"],
        input="from temporalio.client import Client\n\nClient\n", cwd=ROOT,
        capture_output=True, text=True, timeout=60)
    assert ("TID251" in out.stdout) is banned, out.stdout
