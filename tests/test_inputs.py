"""Issue 22, defect 8 and "any client gets its queue's rules": a case started by any Temporal
client (here the real `temporal` CLI) is held to the case's rules. Input that no rule allows is
refused with a clear failure, never a workflow task that fails and retries forever; a case
started without its queue's policy asks for it, and a case moved into a routed queue is routed
there. The real dev server and worker; the worker reads the queues' configuration on its own
threads, so these tests commit (transactional_db)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.converter import default as default_converter

from cases import temporal as gateway
from cases.temporal.ids import new_case_id
from workers import rules
from workers.model import CaseState, Requester

from .conftest import TEMPORAL_BIN, _persona, eventually, logged_in, run, timeline

pytestmark = pytest.mark.django_db(transaction=True)


def _cli_start(temporal: Any, settings: Any, case_id: str, payload: dict[str, Any]) -> None:
    """`temporal workflow start` with the JSON given, as any client of the cluster could."""
    done = subprocess.run([
        TEMPORAL_BIN, "workflow", "start", "--address", temporal.address,
        "--namespace", settings.TEMPORAL_NAMESPACE, "--type", gateway.WORKFLOW_TYPE,
        "--task-queue", settings.TEMPORAL_TASK_QUEUE, "--workflow-id", case_id,
        "--input", json.dumps(payload),
    ], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def _as_json(value: Any) -> Any:
    return json.loads(default_converter().payload_converter.to_payloads([value])[0].data)


async def _refusal(temporal: Any, case_id: str) -> tuple[str, list[str]]:
    """The run's failure message (it must end within seconds), and the kinds of failure its
    workflow tasks had: none, when the input was refused rather than retried."""
    handle = temporal.client.get_workflow_handle(case_id)
    with pytest.raises(WorkflowFailureError) as failed:
        await asyncio.wait_for(handle.result(follow_runs=False), 15)
    task_failures = [e.workflow_task_failed_event_attributes.failure.message
                     async for e in handle.fetch_history_events()
                     if e.HasField("workflow_task_failed_event_attributes")]
    return str(failed.value.cause), task_failures


def _new(title: str = "From the CLI", queue: str = "general", priority: int = 3
         ) -> dict[str, Any]:
    return {"title": title, "queue": queue, "priority": priority}


def test_defect_8_a_first_run_given_state_is_refused(temporal, settings):
    """A `state` skips every rule of opening (here a 300-character title, a holder and no
    due time): only a run continued as new takes one."""
    case_id = new_case_id()
    now = datetime.now(UTC)
    crafted = CaseState(
        case_id=case_id, title="x" * 300, description="", requester=Requester("", ""),
        queue="general", priority=3, status="in_progress", created_at=now, created_by="cli",
        updated_at=now, updated_by="cli", assignee="mallory")
    _cli_start(temporal, settings, case_id,
               {"case_id": case_id, "actor": "cli", "state": _as_json(crafted)})
    message, task_failures = run(_refusal(temporal, case_id))
    assert "continues as new" in message, message
    assert task_failures == []


HUGE = {
    "sla": {"sla": {"seconds_by_priority": [10**20] * 4}},
    "policy": {"policy": {"queue": "general", "route": False,
                          "sla": {"seconds_by_priority": [3600, 3600, 10**20, 3600]}}},
    "at_risk": {"policy": {"queue": "general", "sla": {"at_risk_by_priority": [5, 5, 5, 5]}}},
    "notify_quiet_seconds": {"notify_quiet_seconds": 1e12},
    "auto_close_seconds": {"auto_close_seconds": 10**20},
    "history_event_limit": {"history_event_limit": 1},
    "wrong_shape": {"sla": {"seconds_by_priority": "four hours"}},
}
FIELD = {"sla": "seconds_by_priority", "policy": "seconds_by_priority",
         "at_risk": "at_risk_by_priority", "notify_quiet_seconds": "notify_quiet_seconds",
         "auto_close_seconds": "auto_close_seconds",
         "history_event_limit": "history_event_limit", "wrong_shape": "not a case's input"}


@pytest.mark.parametrize("name", list(HUGE))
def test_defect_8_an_sla_or_notification_input_out_of_bounds_is_refused_not_retried(
        name, temporal, settings):
    case_id = new_case_id()
    _cli_start(temporal, settings, case_id,
               {"case_id": case_id, "actor": "cli", "new": _new(), **HUGE[name]})
    message, task_failures = run(_refusal(temporal, case_id))
    assert FIELD[name] in message, message
    assert task_failures == []


def _calendar_open_now(queue: str) -> Any:
    """The queue's calendar (UTC) is open today from midnight until ten minutes from now and
    on no other weekday: a short SLA breaches now, a long one runs into next week."""
    from cases.models import BusinessCalendar, Queue, WorkingHours

    now = datetime.now(UTC)
    later = now + timedelta(minutes=10)
    end = time(later.hour, later.minute) if later.date() == now.date() else time(0)
    cal = BusinessCalendar.objects.create(name=f"Short {new_case_id()}", time_zone="UTC")
    WorkingHours.objects.create(calendar=cal, weekday=now.weekday(), start=time(0), end=end)
    Queue.objects.filter(slug=queue).update(calendar=cal)
    return cal


def _state(case_id: str, check: Any) -> CaseState:
    def ready() -> CaseState:
        state = run(gateway.get_case(case_id))
        check(state)
        return state

    return eventually(ready, timeout=20, interval=0.1)


def test_a_cli_started_case_in_a_round_robin_queue_with_a_calendar_gets_its_queue_s_rules(
        temporal, settings):
    from cases.models import Queue

    settings.CASE_SLA_SECONDS = [3600, 3600, 2, 7200]
    settings.NOTIFY_QUIET_SECONDS = 0.2
    _persona("ann", "Agent", queues=("general",))
    _calendar_open_now("general")
    Queue.objects.filter(slug="general").update(routing="round_robin",
                                                escalate_raise_priority=True)
    # Priority 4: two working hours, of which at most ten minutes are left this week.
    slow = new_case_id()
    _cli_start(temporal, settings, slow,
               {"case_id": slow, "actor": "cli", "new": _new("Slow", priority=4)})

    state = _state(slow, lambda s: _assert(s.assignee == "ann"))
    from cases.config.queue_policy import queue_policy

    policy = queue_policy("general")
    assert policy.route and policy.sla.working and policy.sla.escalation
    assert state.due_at == rules.due_at(policy.sla, state.created_at, 4)
    assert state.due_at - state.created_at > timedelta(days=1)
    assert state.at_risk_at is not None
    lines = [e.text for e in timeline(slow)]
    assert any(t.startswith("routed to ann") for t in lines), lines
    assert any(t.startswith("the queue's rules: general: due ") and "business hours" in t
               for t in lines), lines

    # Priority 3: two working seconds, then the queue's escalation.
    fast = new_case_id()
    _cli_start(temporal, settings, fast,
               {"case_id": fast, "actor": "cli", "new": _new("Fast", priority=3)})
    state = _state(fast, lambda s: _assert(s.sla_breached and s.priority == 2))
    assert state.assignee == "ann"
    projection = run(gateway.case_history(fast)).projection
    entries = [e for e in projection.entries if e.kind != "notified"]
    kinds = [e.kind for e in entries]
    assert "escalated" in kinds and "routed" in kinds, kinds
    assert entries[-1].state == state and not any(e.diverged for e in entries)
    assert [e.state.version for e in entries] == list(range(1, state.version + 1))


def _assert(ok: bool) -> None:
    assert ok


def test_a_case_escalated_from_a_manual_queue_into_a_routed_queue_is_routed_there(
        temporal, settings):
    import re

    from cases.models import Queue

    settings.NOTIFY_QUIET_SECONDS = 0.2
    settings.CASE_SLA_SECONDS = [3600, 3600, 1, 3600]
    _persona("lee", "Agent", queues=("billing",))
    Queue.objects.filter(slug="technical").update(
        routing="manual", escalate_to_queue=Queue.objects.get(slug="billing"))
    Queue.objects.filter(slug="billing").update(routing="round_robin")
    client = logged_in(_persona("sue", "Supervisor"))
    page = client.get("/cases/new/").content.decode()
    case_id = re.search(r'name="case_id" value="(case-\w+)"', page).group(1)
    response = client.post("/cases/new/", {"case_id": case_id, "title": "Moved on",
                                           "queue": "technical", "priority": "3"})
    assert response.status_code == 302
    state = _state(case_id, lambda s: _assert(s.assignee == "lee"))
    assert state.queue == "billing" and state.sla_breached
    projection = run(gateway.case_history(case_id)).projection
    entries = [e for e in projection.entries if e.kind != "notified"]
    assert [e.kind for e in entries][-3:] == ["sla breached", "escalated", "routed"], [
        (e.kind, e.text) for e in entries]
    assert entries[-1].state == state and not any(e.diverged for e in entries)


def test_the_queue_policy_is_one_object_for_the_web_the_api_and_the_worker(settings):
    from cases.config.queue_policy import queue_policy
    from cases.models import Queue

    _persona("lee", "Agent", queues=("billing",))
    _calendar_open_now("billing")
    Queue.objects.filter(slug="billing").update(routing="least_loaded")
    policy = queue_policy("billing")
    assert policy.queue == "billing" and policy.route
    assert policy.sla.seconds_by_priority == list(settings.CASE_SLA_SECONDS)
    assert policy.sla.at_risk_by_priority == list(settings.CASE_SLA_AT_RISK)
    assert policy.sla.working is not None and policy.sla.escalation is None
    assert rules.policy_problem(policy) is None
