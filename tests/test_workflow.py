"""The Case workflow on a real dev server with a real worker, driven through the gateway."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from temporalio.api.enums.v1 import EventType

from cases import temporal as gateway
from cases.temporal.ids import new_case_id
from cases.temporal.visibility import BASE, quote
from workers.model import (
    AddComment,
    AddTag,
    Assign,
    CaseInput,
    CaseState,
    Claim,
    Close,
    NewCase,
    QueuePolicy,
    RemoveTag,
    Reopen,
    Resolve,
    SetDue,
    SetPriority,
    SetStatus,
)

from .conftest import eventually, run, timeline


def history_length(tclient, case_id: str) -> int:
    return run(tclient.get_workflow_handle(case_id).describe()).history_length


def row_for(case_id: str) -> gateway.CaseRow:
    page = run(gateway.list_cases(f"{BASE} AND WorkflowId = {quote(case_id)}", 10))
    assert len(page.rows) == 1
    return page.rows[0]


def test_open_case_is_queryable_and_listable(open_case):
    case_id = open_case(title="Cannot export invoices", queue="billing", priority=2,
                        tags=["vip"], requester_name="Ada", requester_email="ada@example.com")
    state = run(gateway.get_case(case_id))
    assert isinstance(state, CaseState)
    assert (state.title, state.queue, state.priority, state.status) == (
        "Cannot export invoices", "billing", 2, "new")
    assert state.requester.email == "ada@example.com"
    assert state.due_at is not None and state.created_by == "intake"

    def listed() -> gateway.CaseRow:
        row = row_for(case_id)
        assert row.title == "Cannot export invoices"
        # Started with the intake's due time; the workflow's first task indexes its own.
        assert row.due_at == state.due_at
        return row

    row = eventually(listed)
    assert (row.status, row.priority, row.queue, row.tags, row.assignee) == (
        "new", 2, "billing", ["vip"], None)
    assert row.requester == "Ada" and row.version == 1
    assert row.due_at == state.due_at


# Each command: how to get the case ready, an accepted command, and a refused one.
CASES = {
    "claim": (None, Claim(actor="alice"), Claim(actor="alice"), "already hold"),
    "assign": (None, Assign(actor="sam", assignee="bob"),
               Assign(actor="sam", assignee="bob"), "Already assigned to bob"),
    "unassign": (Claim(actor="alice"), Assign(actor="sam", assignee=None),
                 Assign(actor="sam", assignee=None), "not assigned"),
    "set_priority": (None, SetPriority(actor="alice", priority=1),
                     SetPriority(actor="alice", priority=1), "already 1"),
    "set_status": (None, SetStatus(actor="alice", status="waiting"),
                   SetStatus(actor="alice", status="new"), "cannot go from waiting to new"),
    "comment": (None, AddComment(actor="alice", body="On it", internal=True),
                AddComment(actor="alice", body="   "), "cannot be empty"),
    "add_tag": (None, AddTag(actor="alice", tag="vip"), AddTag(actor="alice", tag="vip"),
                "Already tagged vip"),
    "remove_tag": (AddTag(actor="alice", tag="vip"), RemoveTag(actor="alice", tag="vip"),
                   RemoveTag(actor="alice", tag="vip"), "not tagged vip"),
    "set_due": (None, SetDue(actor="alice", due_at=datetime.now(UTC) + timedelta(days=2)),
                SetDue(actor="alice", due_at=datetime(2020, 1, 1, tzinfo=UTC)), "in the future"),
    "resolve": (None, Resolve(actor="alice", resolution="Fixed"),
                Resolve(actor="alice", resolution="again"), "resolved"),
    "reopen": (Resolve(actor="alice", resolution="Fixed"), Reopen(actor="alice"),
               Reopen(actor="alice"), "Only a resolved case"),
    "close": (None, Close(actor="sam"), Close(actor="sam"), None),
}


@pytest.mark.parametrize("name", list(CASES))
def test_each_update_accepts_then_refuses_without_writing_history(name, open_case, tclient):
    prepare, good, bad, message = CASES[name]
    case_id = open_case()
    if prepare is not None:
        run(gateway.act(case_id, prepare))
    before = run(gateway.get_case(case_id))
    after = run(gateway.act(case_id, good))
    assert after.version == before.version + 1
    assert after.updated_by == good.actor
    last = timeline(case_id)[-1]
    assert last.actor == good.actor and last.state == after
    if name == "close":
        # A closed case's workflow has completed: later actions are refused as closed.
        with pytest.raises(gateway.ActionRefused, match="closed"):
            run(gateway.act(case_id, bad))
        return
    length = history_length(tclient, case_id)
    with pytest.raises(gateway.ActionRefused, match=message):
        run(gateway.act(case_id, bad))
    # The validator refused it: no event was written and the state did not move.
    assert history_length(tclient, case_id) == length
    assert run(gateway.get_case(case_id)).version == after.version


def test_update_results_carry_the_change(open_case):
    case_id = open_case()
    state = run(gateway.act(case_id, Claim(actor="alice")))
    assert (state.assignee, state.status) == ("alice", "in_progress")
    state = run(gateway.act(case_id, AddComment(actor="bob", body="Public reply")))
    assert [(c.author, c.body, c.internal) for c in state.comments] == [
        ("bob", "Public reply", False)]
    eventually(lambda: _assert_row(case_id, assignee="alice", status="in_progress"))


def _assert_row(case_id: str, **expected: object) -> None:
    row = row_for(case_id)
    for key, value in expected.items():
        assert getattr(row, key) == value, (key, getattr(row, key), value)


def test_stale_version_refused_and_nothing_applied(open_case):
    case_id = open_case()
    seen = run(gateway.get_case(case_id)).version
    run(gateway.act(case_id, Claim(actor="alice", expected_version=seen)))
    with pytest.raises(gateway.ActionRefused) as info:
        run(gateway.act(case_id, AddComment(actor="bob", body="x", expected_version=seen)))
    assert info.value.stale
    assert "Changed by alice since you opened it" in info.value.message
    assert run(gateway.get_case(case_id)).comments == []


def test_same_update_id_applies_once(open_case):
    case_id = open_case()
    first = run(gateway.act(case_id, AddComment(actor="alice", body="once"), "comment-k1"))
    second = run(gateway.act(case_id, AddComment(actor="alice", body="once"), "comment-k1"))
    assert first.version == second.version
    assert len(run(gateway.get_case(case_id)).comments) == 1


def test_fifty_concurrent_claims_one_wins(open_case):
    case_id = open_case()

    async def claim_all() -> list[object]:
        return await asyncio.gather(
            *(gateway.act(case_id, Claim(actor=f"agent{i}")) for i in range(50)),
            return_exceptions=True,
        )

    results = run(claim_all())
    wins = [r for r in results if isinstance(r, CaseState)]
    refusals = [r for r in results if isinstance(r, gateway.ActionRefused)]
    assert len(wins) == 1
    assert len(refusals) == 49
    winner = wins[0].assignee
    assert all(r.message == f"Already claimed by {winner}." for r in refusals)
    assert run(gateway.get_case(case_id)).assignee == winner


def test_sla_breach_flags_records_and_notifies(open_case, tclient, settings):
    settings.CASE_SLA_SECONDS = [2, 2, 2, 2]
    case_id = open_case(title="Slow burner")

    def breached() -> CaseState:
        state = run(gateway.get_case(case_id))
        assert state.sla_breached
        return state

    state = eventually(breached, timeout=20, interval=0.2)
    last = timeline(case_id)[-1]
    assert last.state == state
    assert (last.kind, last.actor, last.text) == ("sla breached", "system", "SLA breached")
    eventually(lambda: _assert_row(case_id, sla_breached=True))

    async def activity_completed() -> bool:
        events = [e async for e in tclient.get_workflow_handle(case_id).fetch_history_events()]
        return any(e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED for e in events)

    eventually(lambda: _true(run(activity_completed())), timeout=10)


def _true(value: bool) -> None:
    assert value


def test_changing_due_time_rearms_the_sla_timer(open_case, settings):
    settings.CASE_SLA_SECONDS = [3600] * 4
    case_id = open_case()
    due = datetime.now(UTC) + timedelta(seconds=2)
    state = run(gateway.act(case_id, SetDue(actor="alice", due_at=due)))
    assert not state.sla_breached

    def breached() -> None:
        assert run(gateway.get_case(case_id)).sla_breached

    eventually(breached, timeout=20, interval=0.2)


def test_resolved_case_closes_itself_after_quiet_period(open_case, tclient, settings):
    settings.CASE_AUTO_CLOSE_SECONDS = 1
    case_id = open_case()
    run(gateway.act(case_id, Resolve(actor="alice", resolution="Done")))
    result = run(tclient.get_workflow_handle(case_id, result_type=CaseState).result())
    assert result.status == "closed"
    last = timeline(case_id)[-1]
    assert (last.kind, last.actor, last.state) == ("closed", "system", result)
    assert last.text == "closed automatically after 1 quiet second"
    eventually(lambda: _assert_row(case_id, status="closed", execution_status="completed"))


def test_reopen_cancels_auto_close(open_case, settings):
    settings.CASE_AUTO_CLOSE_SECONDS = 2
    case_id = open_case()
    run(gateway.act(case_id, Resolve(actor="alice", resolution="Done")))
    run(gateway.act(case_id, Reopen(actor="alice", reason="Not fixed")))
    import time

    time.sleep(3)  # longer than the quiet period: the case must still be open
    assert run(gateway.get_case(case_id)).status == "new"


def test_continue_as_new_keeps_state_and_search_attributes(temporal, tclient):
    case_id = new_case_id()
    handle = run(tclient.start_workflow(
        "Case",
        CaseInput(case_id=case_id, actor="intake",
                  new=NewCase(title="Long running", queue="general"),
                  policy=QueuePolicy("general"), history_event_limit=30),
        id=case_id, task_queue=settings.TEMPORAL_TASK_QUEUE,
    ))
    first_run = handle.result_run_id
    run(gateway.act(case_id, Claim(actor="alice")))
    for i in range(12):
        run(gateway.act(case_id, AddComment(actor="alice", body=f"note {i}")))
    run(gateway.act(case_id, AddTag(actor="alice", tag="long")))

    def continued() -> None:
        desc = run(tclient.get_workflow_handle(case_id).describe())
        assert desc.run_id != first_run

    eventually(continued, timeout=20)
    state = run(gateway.get_case(case_id))
    assert state.assignee == "alice" and len(state.comments) == 12 and state.tags == ["long"]
    assert state.version == 15
    eventually(lambda: _assert_row(case_id, assignee="alice", tags=["long"], status="in_progress",
                                   title="Long running", execution_status="running"))
    # Commands keep working on the new run.
    assert run(gateway.act(case_id, Close(actor="alice"))).status == "closed"


def test_search_attributes_are_filterable_through_the_gateway(open_case):
    marker = f"zebra{new_case_id()[-6:].lower()}"
    case_id = open_case(title=f"Unique {marker} title", queue="billing", priority=1,
                        tags=["needle"])
    run(gateway.act(case_id, Claim(actor="carol")))
    query = (f"{BASE} AND CaseQueue = 'billing' AND CasePriority = 1 AND CaseAssignee = 'carol' "
             f"AND CaseTags = 'needle' AND CaseTitle = {quote(marker)} "
             f"AND CaseSlaBreached = false AND CaseStatus = 'in_progress'")

    def found() -> None:
        assert [r.case_id for r in run(gateway.list_cases(query, 10)).rows] == [case_id]
        assert run(gateway.count_cases(query)) == 1

    eventually(found)
