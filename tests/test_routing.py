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
