"""The case export against the real dev server (issue 24): facts, rebuild equals the
incremental export, duplicates, Visibility calls, histories that are not a case's."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cases import temporal as gateway
from cases.analytics import exporter
from cases.analytics.schema import NOT_FACTS
from cases.analytics.store import Store
from cases.config.queue_policy import sla_policy
from cases.models import CaseAttribute
from cases.temporal.ids import new_case_id
from workers.business_hours import WorkingTime, working_between
from workers.model import (
    AddComment,
    AttributeValue,
    Claim,
    NewCase,
    QueuePolicy,
    Reopen,
    Resolve,
)

from .conftest import eventually, run

pytestmark = pytest.mark.django_db(transaction=True)


def _store(tmp_path, name: str = "a") -> Store:
    return Store(str(tmp_path / name))


def _row(store: Store, case_id: str) -> dict[str, Any]:
    db = store.snapshot().db.cursor()
    cursor = db.execute("SELECT * FROM cases WHERE case_id = ?", [case_id])
    names = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    assert len(rows) == 1, rows
    return dict(zip(names, rows[0], strict=True))


def _facts(store: Store, case_ids: list[str]) -> tuple[list[tuple], list[tuple]]:
    """The deduplicated tables minus what is not a fact, ordered."""
    db = store.snapshot().db.cursor()
    cases = db.execute(f"SELECT * EXCLUDE ({', '.join(NOT_FACTS)}) FROM cases "
                       "WHERE case_id IN (SELECT unnest(?)) ORDER BY case_id",
                       [case_ids]).fetchall()
    events = db.execute("SELECT * FROM events WHERE case_id IN (SELECT unnest(?)) "
                        "ORDER BY case_id, seq", [case_ids]).fetchall()
    return cases, events


def test_the_facts_of_a_worked_case(temporal, tmp_path):
    present = run(gateway.namespace_attributes()).custom
    wanted = {n: t for n, t in (("CxRegion", "Keyword"), ("CxSkills", "KeywordList"))
              if n not in present}
    if wanted:
        run(gateway.register_attributes(wanted))
    CaseAttribute.objects.create(name="CxRegion", type="Keyword", label="Region",
                                 state=CaseAttribute.REGISTERED)
    CaseAttribute.objects.create(name="CxSkills", type="KeywordList", label="Skills",
                                 state=CaseAttribute.REGISTERED)

    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(
        title="Printer", queue="technical", requester_name="Ada",
        requester_email="Ada@Example.COM",
        attributes={"CxRegion": AttributeValue("Keyword", "EU"),
                    "CxSkills": AttributeValue("KeywordList", ["x"])}),
        "intake", QueuePolicy("technical", sla_policy())))
    for command in (
        AddComment(actor="intake", body="internal first", internal=True),
        Claim(actor="alice"),
        AddComment(actor="alice", body="Checked the fuser"),
        AddComment(actor="bob", body="Me too"),
        Resolve(actor="alice", resolution="Replaced"),
        Reopen(actor="sam", reason="Again"),
        Resolve(actor="bob", resolution="Really"),
    ):
        run(gateway.act(case_id, command))
    store = _store(tmp_path)
    report = run(exporter.export_cases([case_id], store))
    assert (report.cases, report.skipped, report.history_calls) == (1, 0, 1)
    row = _row(store, case_id)
    state = run(gateway.get_case(case_id))
    first = state.comments[1]
    assert (first.author, first.body) == ("alice", "Checked the fuser")
    assert row["requester_domain"] == "example.com"
    assert row["keywords"] == {"CxRegion": "EU"}
    assert row["first_response_at"] == first.at
    assert row["first_response_by"] == "alice"
    assert row["resolved_at"] == state.resolved_at
    assert row["resolved_by"] == "bob"
    assert row["assignee_at_resolution"] == "alice"
    assert row["reopen_count"] == 1
    assert row["sla_outcome"] == "met" and row["sla_outcome_at"] == state.resolved_at
    assert row["calendar"] == ""
    assert row["first_response_seconds"] == pytest.approx(
        (first.at - state.created_at).total_seconds())
    assert row["resolution_seconds"] == pytest.approx(
        (state.resolved_at - state.created_at).total_seconds())
    assert (row["version"], row["status"], row["execution"]) == (state.version, "resolved",
                                                                  "running")
    assert gateway.state_from_json(row["state_json"]) == state
    db = store.snapshot().db.cursor()
    kinds = db.execute("SELECT kind, actor, status, assignee FROM events WHERE case_id = ? "
                       "ORDER BY seq", [case_id]).fetchall()
    assert kinds[0] == ("opened", "intake", "new", "")
    assert ("reopened", "sam", "in_progress", "alice") in kinds
    assert kinds[-1] == ("resolved", "bob", "resolved", "alice")


def test_a_breached_case_and_one_under_a_calendar(temporal, settings, tmp_path):
    settings.CASE_SLA_SECONDS = [1, 3600, 3600, 3600]
    breached = new_case_id()
    run(gateway.start_case(breached, NewCase(title="Late", queue="technical", priority=1),
                           "intake", QueuePolicy("technical", sla_policy())))
    def late() -> None:
        assert run(gateway.get_case(breached)).sla_breached

    eventually(late, timeout=20, interval=0.2)
    run(gateway.act(breached, Resolve(actor="intake", resolution="Done")))

    now = float(int(time.time()))
    # Working for 2 s, closed for 3 s, then open: working seconds differ from wall seconds.
    work = WorkingTime("Short", [[int(now - 5), int(now + 2)], [int(now + 5), int(now + 3600)]])
    timed = new_case_id()
    run(gateway.start_case(timed, NewCase(title="Hours", queue="technical", priority=4),
                           "intake", QueuePolicy("technical", sla_policy(work))))
    time.sleep(6)
    run(gateway.act(timed, AddComment(actor="alice", body="Hello")))
    run(gateway.act(timed, Resolve(actor="alice", resolution="Done")))

    store = _store(tmp_path)
    run(exporter.export_cases([breached, timed], store))
    overdue = _row(store, breached)
    history = run(gateway.case_history(breached)).projection
    breach = next(e for e in history.entries if e.kind == "sla breached")
    assert (overdue["sla_outcome"], overdue["sla_outcome_at"]) == ("breached", breach.at)
    assert overdue["resolved_at"] is not None

    hours = _row(store, timed)
    state = run(gateway.get_case(timed))
    assert hours["calendar"] == "Short"
    assert hours["resolution_seconds"] == pytest.approx(
        working_between(work, state.created_at, state.resolved_at))
    wall = (state.resolved_at - state.created_at).total_seconds()
    assert hours["resolution_seconds"] <= wall - 2.5
    assert hours["sla_outcome"] == "met"


def test_a_case_exported_twice_or_at_once_is_one_row_and_a_change_updates_it(
        temporal, open_case, tmp_path):
    case_id = open_case(title="Twice")
    store = _store(tmp_path)
    run(exporter.export_cases([case_id], store))
    run(exporter.export_cases([case_id], store))

    async def both() -> None:
        await asyncio.gather(exporter.export_cases([case_id], store),
                             exporter.export_cases([case_id], store))

    run(both())
    db = store.snapshot().db.cursor()
    assert db.execute("SELECT count(*) FROM cases_all").fetchall() == [(4,)]
    assert db.execute("SELECT count(*) FROM cases").fetchall() == [(1,)]
    opened_events = db.execute("SELECT count(*) FROM events").fetchall()[0][0]
    assert opened_events == 1
    run(gateway.act(case_id, Claim(actor="alice")))
    run(exporter.export_cases([case_id], store))
    row = _row(store, case_id)
    assert (row["status"], row["assignee"]) == ("in_progress", "alice")
    assert store.snapshot().db.cursor().execute(
        "SELECT kind FROM events WHERE case_id = ? ORDER BY seq", [case_id]
    ).fetchall() == [("opened",), ("claimed",)]
