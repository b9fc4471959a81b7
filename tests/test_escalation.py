"""Escalation on breach, per queue policy (issue 17): configured on the queue, given to the
case when it opens, applied by the workflow in the breach's own task, on the timeline and
replayed by the history projection. Short durations, the real dev server."""

from __future__ import annotations

import re

import pytest

from cases import temporal as gateway
from cases.temporal.visibility import BASE, quote
from workers import rules
from workers.model import Escalation, NewCase, SlaPolicy

from .conftest import _persona, eventually, logged_in, run, timeline


def test_the_rule_raises_moves_and_gives_once_breached():
    from datetime import UTC, datetime, timedelta

    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    policy = SlaPolicy(escalation=Escalation(raise_priority=True, to_queue="billing",
                                             to_assignee="bob"))
    state = rules.open_case("case-abcd1234", NewCase(title="t", queue="technical"), "x",
                            policy, now)
    assert rules.escalation(state, policy) is None  # not breached
    breach = rules.sla_breach(state, state.due_at + timedelta(seconds=1))
    state = rules.apply(state, breach, "system", now)
    effect = rules.escalation(state, policy)
    assert effect.changes == {"priority": 2, "queue": "billing", "assignee": "bob",
                              "status": "in_progress"}
    assert effect.detail == "priority 3 → 2, to queue billing, to bob"
    after = rules.apply(state, effect, "system", now)
    assert rules.escalation(after, SlaPolicy(escalation=Escalation(to_queue="billing"))) is None
    [notice] = rules.notices_for(state, after, effect, "system")
    assert notice.users == {"bob": "assigned"}
    assert rules.escalation(state, SlaPolicy()) is None  # no policy: the breach only tells


POLICIES = {
    "raise": ({"escalate_raise_priority": True},
              {"priority": 2, "queue": "technical", "assignee": None},
              "priority 3 → 2"),
    "queue": ({"escalate_to_queue": "billing"},
              {"priority": 3, "queue": "billing", "assignee": None},
              "to queue billing"),
    "person": ({"escalate_to": "bob"},
               {"priority": 3, "queue": "technical", "assignee": "bob"},
               "to bob"),
}


@pytest.mark.parametrize("name", list(POLICIES))
def test_a_breach_escalates_by_the_queue_s_policy_end_to_end(name, temporal, settings,
                                                             transactional_db):
    from cases.models import Notification, Queue

    config, expected, detail = POLICIES[name]
    settings.CASE_SLA_SECONDS = [3600, 3600, 1, 3600]
    settings.NOTIFY_QUIET_SECONDS = 0.2
    sam = _persona("sam", "Supervisor")
    bob = _persona("bob", "Agent", queues=("technical",))
    values = dict(config)
    if "escalate_to_queue" in values:
        values["escalate_to_queue"] = Queue.objects.get(slug=values["escalate_to_queue"])
    if "escalate_to" in values:
        values["escalate_to"] = bob
    Queue.objects.filter(slug="technical").update(**values)
    client = logged_in(sam)
    page = client.get("/cases/new/").content.decode()
    case_id = re.search(r'name="case_id" value="(case-\w+)"', page).group(1)
    response = client.post("/cases/new/", {"case_id": case_id, "title": f"Escalate {name}",
                                           "queue": "technical", "priority": "3"})
    assert response.status_code == 302, response.content.decode()[:2000]

    def escalated():
        state = run(gateway.get_case(case_id))
        assert state.sla_breached
        assert {k: getattr(state, k) for k in expected} == expected
        return state

    state = eventually(escalated, timeout=20, interval=0.1)
    lines = [e.text for e in timeline(case_id)]
    assert f"escalated on breach: {detail}" in lines
    assert lines.index("SLA breached") < lines.index(f"escalated on breach: {detail}")

    def indexed():
        rows = run(gateway.list_cases(f"{BASE} AND WorkflowId = {quote(case_id)}", 10)).rows
        assert rows[0].queue == expected["queue"] and rows[0].priority == expected["priority"]
        assert rows[0].assignee == expected["assignee"] and rows[0].sla_breached

    eventually(indexed, timeout=20, interval=0.2)
    if name == "person":
        def told() -> None:
            assert Notification.objects.filter(user=bob, case_id=case_id,
                                               kind="assigned").exists()

        eventually(told, timeout=20, interval=0.2)
    # Time travel: every state the projection rebuilds equals the case's own, escalation too.
    projection = run(gateway.case_history(case_id)).projection
    entries = [e for e in projection.entries if e.kind != "notified"]
    assert [e.kind for e in entries][-2:] == ["sla breached", "escalated"]
    assert entries[-1].state == state and not any(e.diverged for e in entries)
    assert [e.state.version for e in entries] == list(range(1, state.version + 1))
