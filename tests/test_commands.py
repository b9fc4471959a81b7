from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from cases import temporal as gateway

from .conftest import run

ROOT = Path(__file__).resolve().parent.parent


def _manage(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_worker_starts_serves_and_stops_cleanly(temporal, tmp_path, sig):
    from cases.temporal.ids import new_case_id
    from workers.model import NewCase

    queue = f"cmd-{sig.name.lower()}"
    proc = _manage("run_worker", "--task-queue", queue,
                   env={"TEMPORAL_ADDRESS": temporal.address, "TRACERAIL_VAR_DIR": str(tmp_path)})
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "run_worker: polling" in line, line
        # It really hosts the workflow: a case on its queue answers a Query.
        from django.test import override_settings

        with override_settings(TEMPORAL_TASK_QUEUE=queue):
            case_id = new_case_id()
            run(gateway.start_case(case_id, NewCase(title="Via command", queue="general"),
                                   "intake"))
            assert run(gateway.get_case(case_id)).title == "Via command"
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "stopped cleanly" in out


def test_run_worker_without_temporal_fails_loudly(tmp_path):
    proc = _manage("run_worker", env={"TEMPORAL_ADDRESS": "127.0.0.1:1",
                                      "TRACERAIL_VAR_DIR": str(tmp_path)})
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "cannot reach Temporal" in out


def test_temporal_setup_is_idempotent(temporal, capsys):
    call_command("temporal_setup", retention_days=7)
    out = capsys.readouterr().out
    assert "already registered: CaseStatus" in out
    assert "retention 7 days" in out
    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest

    desc = run(temporal.client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=temporal.client.namespace)))
    assert desc.config.workflow_execution_retention_ttl.seconds == 7 * 86400
    call_command("temporal_setup", retention_days=30)


def test_demo_users_prints_once_and_keeps_a_private_file(db, settings, tmp_path, capsys):
    settings.VAR_DIR = tmp_path
    call_command("demo_users")
    first = capsys.readouterr().out
    assert "created" in first
    path = tmp_path / "demo-credentials.txt"
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    lines = path.read_text().splitlines()
    assert {line.split("\t")[0] for line in lines} == {"agent", "agent2", "supervisor", "admin"}
    username, _role, password = lines[0].split("\t")
    assert User.objects.get(username=username).check_password(password)
    assert User.objects.get(username="admin").is_superuser
    assert User.objects.get(username="supervisor").groups.filter(name="Supervisor").exists()
    call_command("demo_users")
    again = capsys.readouterr().out
    assert "exist" in again and password not in again
    assert len(path.read_text().splitlines()) == 4


def test_setup_and_seed_from_the_command_line_exit_zero(temporal, tmp_path):
    """From the CLI, commands that used the Temporal client must exit 0, not abort (134)."""
    env = {"TEMPORAL_ADDRESS": temporal.address, "TRACERAIL_VAR_DIR": str(tmp_path),
           "TEMPORAL_TASK_QUEUE": temporal.task_queue}
    setup = _manage("temporal_setup", "--wait", "5", env=env)
    out, _ = setup.communicate(timeout=60)
    assert setup.returncode == 0, out
    assert "retention" in out
    before = run(gateway.count_cases("WorkflowType = 'Case'"))
    seed = _manage("seed_demo", "--count", "4", "--seed", "7", "--queues", "general", env=env)
    out, _ = seed.communicate(timeout=120)
    assert seed.returncode == 0, out
    assert "opened 4 cases" in out
    assert run(gateway.count_cases("WorkflowType = 'Case'")) == before + 4
