"""The first `make run`: seeding completes the demo set on a rerun, and start-up waits for a
cluster that has only just booted instead of failing on its first slow call."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

from django.core.management import call_command

from cases import temporal as gateway
from cases.management.commands.seed_demo import demo_case
from workers.model import Claim

from .conftest import TEMPORAL_BIN, eventually, free_port, manage_in_background, run

ROOT = Path(__file__).resolve().parent.parent


def _final(case) -> tuple[str, str | None, int]:
    """(execution status, assignee, comments) a demo case ends with once all its steps ran."""
    kinds = [type(cmd).__name__ for _, cmd in case.steps]
    agent = case.steps[0][1].actor if kinds else None
    return ("completed" if "Close" in kinds else "running", agent, int("AddComment" in kinds))


def _ids_query(ids: list[str]) -> str:
    return "WorkflowId IN (" + ", ".join(f"'{i}'" for i in ids) + ")"


def test_a_rerun_completes_an_interrupted_demo_set_once_each(temporal, capsys):
    seed, count, queues = 9116, 8, "billing,general"
    cases = [demo_case(seed, i, ["billing", "general"]) for i in range(count)]
    # Steps per case for this seed: [0, 1, 4, 1, 3, 1, 3, 3]: the cut below leaves a closed
    # case and a claimed one behind it, and a three-step case half done.
    assert [len(c.steps) for c in cases] == [0, 1, 4, 1, 3, 1, 3, 3]
    ids = [c.case_id for c in cases]
    before = run(gateway.count_cases("WorkflowType = 'Case'"))

    # The interrupted first run: the first three cases done, the fifth opened and claimed by
    # someone else (under another Update id, as the case page would), the rest never started.
    call_command("seed_demo", count=3, seed=seed, queues=queues)
    half = cases[4]
    run(gateway.start_case(half.case_id, half.new, "intake"))
    run(gateway.act(half.case_id, Claim(actor="sam"), "someone-else"))
    capsys.readouterr()

    call_command("seed_demo", count=count, seed=seed, queues=queues, if_empty=True)
    assert f"opened {count - 4} cases" in capsys.readouterr().out
    # Once more: nothing is opened or applied twice.
    call_command("seed_demo", count=count, seed=seed, queues=queues, if_empty=True)
    assert "opened 0 cases" in capsys.readouterr().out

    def complete() -> None:
        assert run(gateway.count_cases("WorkflowType = 'Case'")) == before + count
        rows = run(gateway.list_cases(_ids_query(ids), page_size=50)).rows
        assert sorted(r.case_id for r in rows) == sorted(ids)  # each exactly once
        got = {r.case_id: (r.execution_status, r.assignee, r.comments) for r in rows}
        want = {c.case_id: _final(c) for c in cases}
        want[half.case_id] = ("running", "sam", 1)  # the earlier claim stands
        assert got == want

    eventually(complete)
    assert run(gateway.describe_case(half.case_id)).status == "resolved"


def test_b_seeding_next_to_a_booting_server_and_a_late_worker_succeeds(tmp_path):
    """The Procfile's order on a busy machine: seeding starts before the server answers, and
    the worker comes up seconds after the first case is open (past the configured Update
    timeout, which is what used to kill the first run)."""
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {**os.environ, "TEMPORAL_ADDRESS": address, "TRACERAIL_VAR_DIR": str(tmp_path),
           "TEMPORAL_TASK_QUEUE": "first-run", "TEMPORAL_UPDATE_TIMEOUT": "2",
           "TEMPORAL_RPC_TIMEOUT": "1.5"}

    def manage(*args: str) -> subprocess.Popen[str]:
        return manage_in_background(list(args), env)

    started: list[subprocess.Popen[str]] = []
    try:
        # One busy loop per core we would otherwise have to ourselves.
        started.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        seed = manage("seed_demo", "--count", "6", "--seed", "5", "--queues", "general",
                      "--wait", "100")
        started.append(seed)
        started.append(subprocess.Popen(
            [TEMPORAL_BIN, "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
             "--headless", "--log-level", "error", "--db-filename", str(tmp_path / "t.db")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        # A fresh dev server with a busy loop on one core and the suite on the other took
        # more than 40 s to listen on a clean clone's run: the wait is for a busy machine.
        setup = manage("temporal_setup", "--wait", "90")
        started.append(setup)
        out, _ = setup.communicate(timeout=120)
        assert setup.returncode == 0, out
        time.sleep(5)
        worker = manage("run_worker", "--wait", "30")
        started.append(worker)
        out, _ = seed.communicate(timeout=60)
        assert seed.returncode == 0, out
        assert "the demo set of 6 (seed 5) is complete" in out

        async def counts() -> tuple[int, int]:
            from temporalio.client import Client

            client = await Client.connect(address)
            ids = [demo_case(5, i, ["general"]).case_id for i in range(6)]
            total = await client.count_workflows("WorkflowType = 'Case'")
            demo = await client.count_workflows(_ids_query(ids))
            return total.count, demo.count

        eventually(lambda: _assert_equal(asyncio.run(counts()), (6, 6)), timeout=15)
    finally:
        for proc in reversed(started):
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def _assert_equal(got: object, want: object) -> None:
    assert got == want


def test_c_the_worker_waits_for_its_namespace_to_be_served(temporal, tmp_path):
    """A worker started before its namespace is served (a booting server) waits for it
    instead of failing its start-up namespace check and taking the other processes down."""
    import uuid

    from google.protobuf.duration_pb2 import Duration
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import (
        DescribeTaskQueueRequest,
        RegisterNamespaceRequest,
    )
    from temporalio.service import RPCError, RPCStatusCode

    namespace, queue = f"first-run-{uuid.uuid4().hex[:6]}", "first-run-worker"
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "run_worker", "--task-queue", queue, "--wait", "40"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "TEMPORAL_ADDRESS": temporal.address, "TEMPORAL_NAMESPACE": namespace,
             "TRACERAIL_VAR_DIR": str(tmp_path)},
    )
    try:
        assert worker.stdout is not None
        # Its first line means it has looked for the namespace; a booting server takes
        # seconds more to serve it.
        worker.stdout.readline()
        time.sleep(2)
        assert worker.poll() is None
        service = temporal.client.workflow_service
        run(service.register_namespace(RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400))))

        async def pollers() -> int:
            try:
                desc = await service.describe_task_queue(DescribeTaskQueueRequest(
                    namespace=namespace, task_queue=TaskQueue(name=queue),
                    task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
            except RPCError as err:  # the frontends learn of a new namespace in a few seconds
                assert err.status == RPCStatusCode.NOT_FOUND, err
                return 0
            return len(desc.pollers)

        eventually(lambda: _assert_equal(run(pollers()) > 0, True), timeout=40, interval=0.5)
        assert worker.poll() is None
    finally:
        worker.terminate()
        out, _ = worker.communicate(timeout=30)
    assert worker.returncode == 0, out
