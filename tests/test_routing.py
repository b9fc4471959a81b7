"""Routing and availability (issue 17): a per-queue router workflow picks an agent for a case
that arrives unassigned or is released, skipping agents who are away; the pick and its reason
are on the timeline and replayed. Short durations, the real dev server."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest

from cases import temporal as gateway
from cases.config.queue_policy import queue_policy
from cases.temporal.ids import new_case_id
from workers import routing
from workers.model import Assign, NewCase

from .conftest import _persona, eventually, logged_in, run, timeline


def test_round_robin_and_least_loaded_pick_by_name_and_skip_nobody_available():
    assert routing.pick("round_robin", ["cat", "ann"], "", {}) == ("ann", "round-robin")
    assert routing.pick("round_robin", ["cat", "ann"], "ann", {})[0] == "cat"
    assert routing.pick("round_robin", ["cat", "ann"], "cat", {})[0] == "ann"
    assert routing.pick("round_robin", ["cat", "ann"], "ben", {})[0] == "cat"  # ben away now
    assert routing.pick("least_loaded", ["ann", "cat"], "", {"ann": 2, "cat": 1}) == (
        "cat", "least loaded (1 open)")
    assert routing.pick("least_loaded", ["ann", "cat"], "", {}) == ("ann", "least loaded (0 open)")
    assert routing.pick("round_robin", [], "", {}) == ("", "nobody is available")
    assert routing.pick("manual", ["ann"], "", {}) == ("", "manual routing")


def _open_routed(queue: str, title: str) -> str:
    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(title=title, queue=queue), "intake",
                           queue_policy(queue)))
    return case_id


def _holder(case_id: str) -> str:
    def held() -> str:
        state = run(gateway.get_case(case_id))
        assert state.assignee
        return state.assignee

    return eventually(held, timeout=20, interval=0.1)


def test_round_robin_over_three_agents_with_one_away_gives_six_cases_three_and_three(
        temporal, settings, transactional_db):
    from cases.models import Queue

    settings.NOTIFY_QUIET_SECONDS = 0.2
    agents = {n: _persona(n, "Agent", queues=("general",)) for n in ("ann", "ben", "cat")}
    logged_in(agents["ben"]).post("/availability/", {"available": "no"})
    Queue.objects.filter(slug="general").update(routing="round_robin")
    cases = []
    for i in range(6):
        cases.append(_open_routed("general", f"Routed {i}"))
        _holder(cases[-1])  # one after another: the rotation is in arrival order
    held = Counter(_holder(c) for c in cases)
    assert held == {"ann": 3, "cat": 3}
    lines = [e.text for e in timeline(cases[0])]
    assert any(t.startswith("routed to ") and "(round-robin)" in t for t in lines), lines

    # Released, the case is routed again, to the next in the rotation.
    first = cases[0]
    was = _holder(first)
    run(gateway.act(first, Assign(actor="sam", assignee=None)))

    def rerouted() -> str:
        state = run(gateway.get_case(first))
        assert state.assignee and state.version > 3
        return state.assignee

    now = eventually(rerouted, timeout=20, interval=0.1)
    assert now in ("ann", "cat")
    projection = run(gateway.case_history(first)).projection
    kinds = [e.kind for e in projection.entries if e.kind != "notified"]
    assert kinds[:2] == ["opened", "routed"] and kinds[-2:] == ["unassigned", "routed"], kinds
    live = run(gateway.get_case(first))
    last = [e for e in projection.entries if e.state is not None][-1]
    assert last.state == live and not any(e.diverged for e in projection.entries)
    assert was in ("ann", "cat")


def test_least_loaded_and_manual_queues(temporal, settings, transactional_db):
    from cases.models import Queue

    settings.NOTIFY_QUIET_SECONDS = 0.2
    for n in ("lee", "max"):
        _persona(n, "Agent", queues=("billing",))
    Queue.objects.filter(slug="billing").update(routing="least_loaded")
    a = _open_routed("billing", "Least one")
    b = _open_routed("billing", "Least two")
    assert {_holder(a), _holder(b)} == {"lee", "max"}
    assert any("least loaded" in e.text for e in timeline(a))
    Queue.objects.filter(slug="billing").update(routing="manual")
    c = _open_routed("billing", "Manual now")
    import time

    time.sleep(1)
    assert run(gateway.get_case(c)).assignee is None


def test_a_case_escalated_to_a_routed_queue_is_routed_there(temporal, settings,
                                                           transactional_db):
    import re

    from cases.models import Queue

    settings.NOTIFY_QUIET_SECONDS = 0.2
    settings.CASE_SLA_SECONDS = [3600, 3600, 1, 3600]
    away = _persona("zed", "Agent", queues=("technical",))
    logged_in(away).post("/availability/", {"available": "no"})
    _persona("lee", "Agent", queues=("billing",))
    Queue.objects.filter(slug="technical").update(
        routing="round_robin", escalate_to_queue=Queue.objects.get(slug="billing"))
    Queue.objects.filter(slug="billing").update(routing="round_robin")
    client = logged_in(_persona("sue", "Supervisor"))
    page = client.get("/cases/new/").content.decode()
    case_id = re.search(r'name="case_id" value="(case-\w+)"', page).group(1)
    response = client.post("/cases/new/", {"case_id": case_id, "title": "Nobody here",
                                           "queue": "technical", "priority": "3"})
    assert response.status_code == 302
    assert _holder(case_id) == "lee"  # nobody available in technical; escalated to billing
    state = run(gateway.get_case(case_id))
    assert state.queue == "billing" and state.sla_breached
    kinds = [e.kind for e in run(gateway.case_history(case_id)).projection.entries
             if e.kind != "notified"]
    assert kinds[-3:] == ["sla breached", "escalated", "routed"], kinds


def test_an_ask_of_the_wrong_shape_is_refused_and_the_router_goes_on(temporal, settings):
    """Any Temporal client can send the router an Update: one whose candidates are not names
    is refused at the door, and the next good ask is answered as before."""
    import uuid

    from temporalio.client import WorkflowUpdateFailedError

    from workers.model import RouterState

    async def scenario() -> str:
        client = temporal.client  # the harness's own client
        handle = await client.start_workflow(
            "QueueRouter", RouterState(), id=f"router-shape-{uuid.uuid4().hex[:8]}",
            task_queue=temporal.task_queue)
        with pytest.raises(WorkflowUpdateFailedError):
            await handle.execute_update("pick", {"case_id": "x", "mode": "round_robin",
                                                 "candidates": [1, {"a": 2}], "why": "t"},
                                        rpc_timeout=timedelta(seconds=10))
        picked = await handle.execute_update(
            "pick", {"case_id": "y", "mode": "round_robin", "candidates": ["ann"], "why": "t"},
            rpc_timeout=timedelta(seconds=10))
        await handle.terminate()
        return picked["agent"]

    assert run(scenario()) == "ann"


def _router_load(queue: str) -> dict[str, int]:
    """The open cases per agent that the queue's router counts for least-loaded."""
    from workers.model import RouterState
    from workers.router import router_id

    async def ask() -> RouterState:
        client = await gateway.get_client()
        return await client.get_workflow_handle(router_id(queue)).query(
            "state", result_type=RouterState)

    return {agent: n for agent, n in run(ask()).load.items() if n}


def _queue_of_own(routing_mode: str, *agents: str) -> str:
    """A queue of this test's own, so its router starts empty whatever ran before."""
    import uuid

    from cases.models import Queue

    queue = Queue.objects.create(slug=f"q-{uuid.uuid4().hex[:8]}", name="Own",
                                 routing=routing_mode)
    for name in agents:
        queue.agents.add(_persona(name, "Agent"))
    return queue.slug


def test_least_loaded_counts_open_cases_so_an_agent_who_resolves_three_gets_the_next_three(
        temporal, settings, transactional_db):
    """Issue 22, defect 3: resolving keeps the assignee, and the router used to count every
    case it had ever routed; its load is the open cases each agent holds now."""
    from workers.model import Resolve

    settings.NOTIFY_QUIET_SECONDS = 0.2
    queue = _queue_of_own("least_loaded", "ned", "ola")
    cases = []
    for i in range(6):
        cases.append(_open_routed(queue, f"Load {i}"))
        _holder(cases[-1])  # one after another: each pick sees the ones before
    held = {c: _holder(c) for c in cases}
    assert Counter(held.values()) == {"ned": 3, "ola": 3}
    for case_id in (c for c in cases if held[c] == "ned"):
        run(gateway.act(case_id, Resolve(actor="ned", resolution="Done")))
    eventually(lambda: _router_load_is(queue, {"ola": 3}), timeout=20, interval=0.1)
    after = []
    for i in range(3):
        after.append(_open_routed(queue, f"After {i}"))
        _holder(after[-1])
    assert [_holder(c) for c in after] == ["ned", "ned", "ned"]


def _router_load_is(queue: str, load: dict[str, int]) -> None:
    assert _router_load(queue) == load


def test_the_routers_load_follows_close_reassignment_manual_assignment_and_reopen(
        temporal, settings, transactional_db):
    """Issue 22, defect 3: every way a case leaves or reaches an agent tells the router."""
    from workers.model import Close, Reopen, Resolve

    settings.NOTIFY_QUIET_SECONDS = 0.2
    queue = _queue_of_own("least_loaded", "pia", "quin")
    a = _open_routed(queue, "First")
    assert _holder(a) == "pia"
    b = _open_routed(queue, "Second")
    assert _holder(b) == "quin"
    eventually(lambda: _router_load_is(queue, {"pia": 1, "quin": 1}), timeout=20)
    run(gateway.act(a, Assign(actor="sam", assignee="quin")))  # reassigned
    eventually(lambda: _router_load_is(queue, {"quin": 2}), timeout=20)
    manual = _open_routed(queue, "By hand")  # to pia, who holds none now
    assert _holder(manual) == "pia"
    eventually(lambda: _router_load_is(queue, {"pia": 1, "quin": 2}), timeout=20)
    run(gateway.act(manual, Assign(actor="sam", assignee="quin")))  # by hand
    eventually(lambda: _router_load_is(queue, {"quin": 3}), timeout=20)
    run(gateway.act(b, Close(actor="sam")))
    eventually(lambda: _router_load_is(queue, {"quin": 2}), timeout=20)
    run(gateway.act(a, Resolve(actor="quin", resolution="Done")))
    eventually(lambda: _router_load_is(queue, {"quin": 1}), timeout=20)
    run(gateway.act(a, Reopen(actor="quin")))
    eventually(lambda: _router_load_is(queue, {"quin": 2}), timeout=20)


def test_a_running_worker_routes_the_next_case_after_postgresql_restarts(
        temporal, settings, postgres_server, tmp_path):
    """Issue 22, defect 4: `route_case` reads the queue's agents from Django on a thread that
    kept its connection; after PostgreSQL restarted every ask failed until the worker did.
    A real `manage.py run_worker` on PostgreSQL, the server restarted under it."""
    import signal
    import uuid

    from .conftest import manage, manage_in_background
    from .test_prod_stack import django_env, pollers, shell

    task_queue = f"pg-restart-{uuid.uuid4().hex[:8]}"
    queue = f"pg-{uuid.uuid4().hex[:8]}"
    env = django_env(tmp_path, DATABASE_URL=postgres_server.new_database(),
                     TEMPORAL_ADDRESS=temporal.address, TEMPORAL_TASK_QUEUE=task_queue)
    migrated = manage(["migrate", "--noinput"], env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert shell(f"""
        from django.contrib.auth.models import User
        from cases.models import Queue
        queue = Queue.objects.create(slug="{queue}", name="Restart", routing="round_robin")
        queue.agents.add(User.objects.create_user("pam", password="x" * 20))
        print('"made"')
    """, env) == "made"
    settings.TEMPORAL_TASK_QUEUE = task_queue  # the cases below are that worker's
    worker = manage_in_background(["run_worker"], env)
    try:
        def polling() -> None:
            assert worker.poll() is None, worker.communicate()[0]
            assert pollers(temporal.address, task_queue)

        eventually(polling, timeout=60, interval=0.2)
        # Opened without their queue's policy, as any client may: the worker reads it (and
        # the agents) from its own database, before and after the restart.
        def open_unknown(title: str) -> str:
            case_id = new_case_id()
            run(gateway.start_case(case_id, NewCase(title=title, queue=queue), "intake"))
            return case_id

        before = open_unknown("Before the restart")
        assert eventually(lambda: _routed(before), timeout=60, interval=0.2) == "pam"
        postgres_server.restart()
        after = open_unknown("After the restart")
        assert eventually(lambda: _routed(after), timeout=60, interval=0.2) == "pam"
    finally:
        worker.send_signal(signal.SIGTERM)
        output = worker.communicate(timeout=30)[0]
    assert "stopped cleanly" in output, output


def _routed(case_id: str) -> str:
    state = run(gateway.get_case(case_id))
    assert state.assignee, f"{case_id} is not routed"
    return state.assignee


def test_routed_cases_and_their_router_replay_and_a_case_from_before_issue_22_too(
        temporal, settings, transactional_db):
    """Issue 22, defect 3: the notes to the router are in the case's history and replay, the
    router's own history replays; a routed case recorded by the code before (it signalled
    `released`, told the router nothing of its end) still replays against today's workflow."""
    from pathlib import Path

    from temporalio.client import WorkflowHistory
    from temporalio.worker import Replayer

    from workers.model import Close, Reopen, Resolve
    from workers.router import QueueRouter, router_id
    from workers.workflows import CaseWorkflow

    settings.NOTIFY_QUIET_SECONDS = 0.2
    queue = _queue_of_own("least_loaded", "rae", "sol")
    case_id = _open_routed(queue, "Replayed")
    assert _holder(case_id) == "rae"
    for command in (Assign(actor="sam", assignee="sol"), Resolve(actor="sol", resolution="x"),
                    Reopen(actor="sol"), Close(actor="sol")):
        run(gateway.act(case_id, command))
    eventually(lambda: _router_load_is(queue, {}), timeout=20)

    async def histories() -> list[WorkflowHistory]:
        client = await gateway.get_client()
        case = client.get_workflow_handle(case_id)
        await case.result()
        return [await case.fetch_history(),
                await client.get_workflow_handle(router_id(queue)).fetch_history()]

    recorded = run(histories())
    assert any(e.activity_task_scheduled_event_attributes.activity_type.name == "tell_router"
               for e in recorded[0].events)
    old = Path(__file__).parent / "histories" / "routed-before-issue-22.json"
    recorded.append(WorkflowHistory.from_json("case-18PVHTPQ", old.read_text()))
    replayer = Replayer(workflows=[CaseWorkflow, QueueRouter])
    for history in recorded:
        assert run(replayer.replay_workflow(history, raise_on_replay_failure=False)
                   ).replay_failure is None, history.workflow_id


def test_a_routed_case_that_continues_as_new_is_counted_once_and_dropped_when_resolved(
        temporal, settings, transactional_db):
    """Issue 22, defect 3: the next run of a case tells its router again who holds it (the
    same truth, so still one case), and its end is told as before."""
    from workers.model import AddComment, CaseInput, Resolve, SlaPolicy

    settings.NOTIFY_QUIET_SECONDS = 0.2
    queue = _queue_of_own("least_loaded", "tia", "uma")
    case_id = new_case_id()
    handle = run(temporal.client.start_workflow(
        "Case", CaseInput(case_id=case_id, actor="intake",
                          new=NewCase(title="Long runner", queue=queue), sla=SlaPolicy(),
                          history_event_limit=40, notify_quiet_seconds=0.2, route=True),
        id=case_id, task_queue=settings.TEMPORAL_TASK_QUEUE))
    assert _holder(case_id) == "tia"
    for i in range(10):
        run(gateway.act(case_id, AddComment(actor="tia", body=f"Step {i}")))
    described = run(temporal.client.get_workflow_handle(case_id).describe())
    assert described.run_id != handle.result_run_id, "the case did not continue as new"
    eventually(lambda: _router_load_is(queue, {"tia": 1}), timeout=20)
    other = _open_routed(queue, "Next")
    assert _holder(other) == "uma"
    run(gateway.act(case_id, Resolve(actor="tia", resolution="Done")))
    eventually(lambda: _router_load_is(queue, {"uma": 1}), timeout=20)
