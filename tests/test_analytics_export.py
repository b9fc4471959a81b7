"""The case export against the real dev server (issue 24): facts, rebuild equals the
incremental export, duplicates, Visibility calls, histories that are not a case's."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import signal
import subprocess
import time
from datetime import timedelta
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


def _indexed(case_ids: list[str], check) -> None:
    """Wait until Visibility shows every one of these cases as `check(row)` says."""
    from cases.temporal.visibility import BASE, _in

    def seen() -> None:
        rows = run(gateway.list_cases(f"{BASE} AND {_in('WorkflowId', case_ids)}", 100)).rows
        assert len(rows) == len(case_ids) and all(check(r) for r in rows), rows

    eventually(seen, timeout=20, interval=0.2)


def _versions(case_ids: list[str]) -> dict[str, int]:
    return {c: run(gateway.get_case(c)).version for c in case_ids}


def test_a_rebuild_gives_the_same_facts_as_the_incremental_export(temporal, tclient,
                                                                  open_case, tmp_path,
                                                                  monkeypatch):
    # No overlap: each round sees only what changed since the last one asked, so a case
    # ended from outside must be found by its CloseTime.
    monkeypatch.setattr(exporter, "OVERLAP", timedelta(0))
    ids = [open_case(title=f"Rebuild {i}") for i in range(4)]
    incremental = _store(tmp_path, "incremental")

    def changed(then: Any) -> None:
        for case_id, commands in then.items():
            for command in commands:
                run(gateway.act(case_id, command))
        now = _versions(ids)
        _indexed(ids, lambda r: r.version == now[r.case_id])
        run(exporter.export_changed(incremental))

    changed({})
    changed({ids[0]: [Claim(actor="alice")],
             ids[1]: [Claim(actor="bob"), AddComment(actor="bob", body="On it")]})
    changed({ids[0]: [Resolve(actor="alice", resolution="Done"),
                      Reopen(actor="sam", reason="No"), Resolve(actor="alice", resolution="Ok")],
             ids[2]: [AddComment(actor="carol", body="Hello")]})
    # Ended from outside: CaseUpdatedAt does not move, CloseTime does.
    time.sleep(1.1)  # Visibility's times are whole seconds
    run(tclient.get_workflow_handle(ids[3]).terminate(reason="tidying up"))
    _indexed([ids[3]], lambda r: r.execution_status == "terminated")
    report = run(exporter.export_changed(incremental))
    assert report.cases >= 1
    assert _row(incremental, ids[3])["execution"].startswith(
        "The case's workflow was terminated")

    rebuilt = _store(tmp_path, "rebuilt")
    run(exporter.rebuild(rebuilt))
    cases, events = _facts(incremental, ids)
    assert len(cases) == 4 and len(events) > 8
    assert (cases, events) == _facts(rebuilt, ids)
    # The rebuild compacted its store; the facts are the same after it.
    assert len(rebuilt.snapshot().segments) == 2
    # A rebuild over the incremental export: still one row a case, the same facts.
    run(exporter.rebuild(incremental))
    assert _facts(incremental, ids) == (cases, events)
    assert incremental.snapshot().db.cursor().execute(
        "SELECT count(*) FROM cases WHERE case_id IN (SELECT unnest(?))", [ids]
    ).fetchall() == [(4,)]


def test_visibility_calls_grow_with_cases_changed_and_an_unchanged_run_reads_no_history(
        temporal, open_case, tmp_path):
    from .conftest import settled_visibility_calls

    store = _store(tmp_path)
    run(exporter.export_changed(store))  # everything so far: the watermark is now
    ids = [open_case(title=f"Changed {i}") for i in range(7)]
    _indexed(ids, lambda r: r.version is not None)
    before = settled_visibility_calls(temporal)
    report = run(exporter.export_changed(store))
    after = settled_visibility_calls(temporal)
    # Every case changed within the overlap is listed again, but only the changed ones are
    # read: ours (and any other test's case that changed meanwhile, in a full run).
    assert report.cases >= len(ids)
    assert report.history_calls == report.cases + report.skipped + report.gone
    assert report.visibility_calls == math.ceil((report.history_calls + report.unchanged)
                                                / 1000)
    assert after - before == report.visibility_calls
    again = run(exporter.export_changed(store))
    assert again.visibility_calls == 1
    assert again.unchanged >= len(ids)
    assert again.history_calls == again.cases + again.skipped + again.gone
    # None of ours was read again: each is still one export.
    assert store.snapshot().db.cursor().execute(
        "SELECT count(*) FROM cases_all WHERE case_id IN (SELECT unnest(?))", [ids]
    ).fetchall() == [(len(ids),)]
    assert store.read_state()["exported_at"] >= store.read_state()["watermark"]


def test_a_workflow_that_is_not_a_case_is_skipped_with_a_log_line(temporal, settings,
                                                                   open_case, tmp_path,
                                                                   caplog):
    from .conftest import TEMPORAL_BIN

    garbage = new_case_id()
    done = subprocess.run([
        TEMPORAL_BIN, "workflow", "start", "--address", temporal.address,
        "--namespace", settings.TEMPORAL_NAMESPACE, "--type", gateway.WORKFLOW_TYPE,
        "--task-queue", settings.TEMPORAL_TASK_QUEUE, "--workflow-id", garbage,
        "--input", json.dumps({"not": "a case"}),
    ], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    good = open_case(title="Next to garbage")
    store = _store(tmp_path)
    with caplog.at_level(logging.WARNING, logger="cases.analytics.exporter"):
        report = run(exporter.export_cases([garbage, good], store))
    assert (report.cases, report.skipped) == (1, 1)
    assert any(garbage in r.getMessage() and "not a case's" in r.getMessage()
               for r in caplog.records)
    assert _row(store, good)["title"] == "Next to garbage"
    assert store.snapshot().db.cursor().execute(
        "SELECT count(*) FROM cases WHERE case_id = ?", [garbage]).fetchall() == [(0,)]


def test_follow_survives_temporal_being_unreachable(tmp_path):
    from .conftest import free_port, manage_in_background

    env = {**os.environ, "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}",
           "TRACERAIL_VAR_DIR": str(tmp_path), "ANALYTICS_URI": str(tmp_path / "analytics")}
    looping = manage_in_background(["export_cases", "--follow", "--interval", "1"], env)
    lines: list[str] = []
    try:
        assert looping.stdout is not None
        while sum("Temporal is unavailable" in line for line in lines) < 3:
            line = looping.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        assert looping.poll() is None
    finally:
        looping.send_signal(signal.SIGTERM)
        out, _ = looping.communicate(timeout=30)
        lines.append(out)
    text = "".join(lines)
    assert "Traceback" not in text, text
    assert "retrying in 1 s: Cannot reach Temporal at 127.0.0.1:" in text, text
    assert "export_cases: stopped" in text
    assert looping.returncode == 0


def test_a_deleted_execution_keeps_its_last_exported_facts(temporal, settings, open_case,
                                                           tmp_path):
    from .conftest import TEMPORAL_BIN

    case_id = open_case(title="Soon deleted")
    run(gateway.act(case_id, Claim(actor="alice")))
    store = _store(tmp_path)
    run(exporter.export_cases([case_id], store))
    exported = _facts(store, [case_id])
    done = subprocess.run([
        TEMPORAL_BIN, "workflow", "delete", "--address", temporal.address,
        "--namespace", settings.TEMPORAL_NAMESPACE, "--workflow-id", case_id, "--yes",
    ], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr

    def gone() -> None:
        with pytest.raises(gateway.CaseNotFound):
            run(gateway.case_history(case_id))

    eventually(gone, timeout=20, interval=0.2)
    report = run(exporter.export_cases([case_id], store))
    assert (report.cases, report.gone) == (0, 1)
    run(exporter.rebuild(store))
    assert _facts(store, [case_id]) == exported
    assert gateway.state_from_json(_row(store, case_id)["state_json"]).assignee == "alice"
