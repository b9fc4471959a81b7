"""The History tab, time travel, downloads and ended cases, against the real dev server."""

from __future__ import annotations

import asyncio
import csv
import io
import re
import time
import uuid
from datetime import UTC, datetime, timedelta

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from cases import temporal as gateway
from workers.model import (
    AddComment,
    AddTag,
    Assign,
    Claim,
    Close,
    Reopen,
    Resolve,
    SetPriority,
    SetStatus,
)
from workers.workflows import CaseWorkflow

from .conftest import eventually, run

# The pages promise an answer within 2 s even with no worker; this checks the promise.
BUDGET = 2.0


def _scripted(open_case) -> str:
    case_id = open_case(queue="technical", title="Printer <b>on</b> fire")
    for command in (
        Claim(actor="alice"),
        SetPriority(actor="sam", priority=1),
        AddComment(actor="alice", body="Checked the fuser"),
        AddComment(actor="alice", body="Customer is upset", internal=True),
        AddTag(actor="alice", tag="hardware"),
        Assign(actor="sam", assignee="bob"),
        SetStatus(actor="bob", status="waiting"),
        Resolve(actor="bob", resolution="=2+2 replaced the fuser"),
        Reopen(actor="alice", reason="Smoking again"),
        Close(actor="sam"),
    ):
        run(gateway.act(case_id, command))
    return case_id


EXPECTED = [
    ("intake", "intake opened the case"),
    ("alice", "alice claimed the case"),
    ("sam", "priority 3 → 1 by sam"),
    ("alice", "alice commented"),
    ("alice", "alice added an internal note"),
    ("alice", "alice tagged the case hardware"),
    ("sam", "sam assigned the case to bob"),
    ("bob", "status in progress → waiting by bob"),
    ("bob", "bob resolved the case"),
    ("alice", "alice reopened the case"),
    ("sam", "sam closed the case"),
]


def test_timeline_words_every_accepted_change_with_actor_and_time(open_case,
                                                                  supervisor_client):
    case_id = _scripted(open_case)
    # Refused attempts write no history, so they never reach the timeline.
    for refused in (Claim(actor="carol"), SetPriority(actor="sam", priority=1)):
        try:
            run(gateway.act(case_id, refused))
        except gateway.ActionRefused:
            pass
    entries = run(gateway.case_history(case_id)).projection.entries
    assert [(e.actor, e.text) for e in entries] == EXPECTED
    assert all(e.at <= datetime.now(UTC) for e in entries)
    assert [e.at for e in entries] == sorted(e.at for e in entries)
    assert entries[-1].state is not None and entries[-1].state.closed_at == entries[-1].at

    page = supervisor_client.get(f"/cases/{case_id}/history/").content.decode()
    shown = re.findall(r'<span class="what">([^<]*)</span>', page)
    assert [t.replace("&gt;", ">") for t in shown] == [t for _, t in reversed(EXPECTED)]
    assert "Printer &lt;b&gt;on&lt;/b&gt; fire" in page and "<b>on</b>" not in page


def test_time_travel_shows_the_case_right_after_the_chosen_event(open_case, agent_client):
    case_id = open_case(queue="technical", title="Time machine")
    run(gateway.act(case_id, Claim(actor="alice")))
    run(gateway.act(case_id, SetPriority(actor="alice", priority=1)))
    run(gateway.act(case_id, AddComment(actor="bob", body="later remark")))
    entries = run(gateway.case_history(case_id)).projection.entries
    claim = entries[1]
    assert claim.text == "alice claimed the case"

    then = agent_client.get(f"/cases/{case_id}/history/?at={claim.event_id}")
    html = then.content.decode()
    assert then.status_code == 200
    assert "As of" in html and "right after “alice claimed the case” (version 2)" in html
    assert '<dd class="assignee">alice</dd>' in html
    comments = html.split('<ol class="comments">')[1].split("</ol>")[0]
    assert '<span class="prio p3">3</span>' in html and "later remark" not in comments
    assert "No comments yet." in comments
    assert 'method="post"' not in html.split("<main")[1]  # read-only
    # Any raw event, not only the worded ones, shows the state after the last change up to it.
    between = agent_client.get(f"/cases/{case_id}/history/?at={claim.event_id + 1}")
    assert "(version 2)" in between.content.decode()
    for bad in ("999999", "abc", "0"):
        assert agent_client.get(f"/cases/{case_id}/history/?at={bad}").status_code == 404


def test_downloads_raw_history_json_and_readable_csv(open_case, supervisor_client):
    case_id = _scripted(open_case)
    raw = supervisor_client.get(f"/cases/{case_id}/history.json")
    assert raw.status_code == 200
    assert raw["Content-Disposition"] == f'attachment; filename="{case_id}-history.json"'
    body = raw.json()
    assert body["caseId"] == case_id and len(body["runs"]) == 1
    events = body["runs"][0]["events"]
    assert events[0]["eventType"] == "EVENT_TYPE_WORKFLOW_EXECUTION_STARTED"
    # It is Temporal's own format: the SDK's Replayer replays it against today's workflow.
    history = WorkflowHistory.from_json(case_id, body["runs"][0])
    replayed = run(Replayer(workflows=[CaseWorkflow]).replay_workflow(history))
    assert replayed.replay_failure is None

    readable = supervisor_client.get(f"/cases/{case_id}/history.csv")
    assert readable["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(readable.content.decode())))
    assert rows[0] == ["#", "Time", "Actor", "Event", "Detail", "Version", "Run", "Event id"]
    assert [(r[2], r[3]) for r in rows[1:]] == EXPECTED
    resolved = next(r for r in rows if r[3] == "bob resolved the case")
    assert resolved[4] == "'=2+2 replaced the fuser"  # no spreadsheet formula
    assert [r[5] for r in rows[1:]] == [str(v) for v in range(1, 12)]


def test_history_follows_the_same_access_rule(agent_client, supervisor_client, open_case):
    hidden = open_case(queue="billing")
    for suffix in ("history/", "history.json", "history.csv"):
        assert agent_client.get(f"/cases/{hidden}/{suffix}").status_code == 404
        assert supervisor_client.get(f"/cases/{hidden}/{suffix}").status_code == 200
        assert supervisor_client.get(f"/cases/case-00000000/{suffix}").status_code == 404
    assert supervisor_client.get(f"/cases/{hidden}/?run=not-a-run").status_code == 404
    assert supervisor_client.get(
        f"/cases/{hidden}/?run={uuid.uuid4()}").status_code == 404


def _worked_then_orphaned(temporal, settings, title: str, *commands) -> str:
    """A case worked by a worker of its own on a task queue of its own, which is then
    stopped: from here on nothing answers the case's Queries or Updates."""
    from cases.config.queue_policy import sla_policy
    from cases.temporal.ids import new_case_id
    from workers.model import NewCase, QueuePolicy
    from workers.worker import build_worker, run_worker

    queue = f"solo-{uuid.uuid4().hex[:8]}"
    settings.TEMPORAL_TASK_QUEUE = queue

    async def make() -> tuple:
        return build_worker(temporal.client, queue), asyncio.Event()

    worker, stop = temporal.loop.run(make())
    running = temporal.loop.submit(run_worker(worker, stop))
    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(title=title, queue="technical"), "ivy",
                           QueuePolicy("technical", sla_policy())))
    for command in commands:
        run(gateway.act(case_id, command))
    temporal.loop.loop.call_soon_threadsafe(stop.set)
    running.result(30)
    return case_id


def test_live_case_with_its_worker_gone_is_shown_whole_from_history(temporal, settings,
                                                                   agent_client):
    case_id = _worked_then_orphaned(
        temporal, settings, "Worker went away", Claim(actor="alice"),
        AddComment(actor="alice", body="Visible without a worker"))
    settings.TEMPORAL_QUERY_TIMEOUT = 0.5
    html = agent_client.get(f"/cases/{case_id}/").content.decode()
    assert "Live details are unavailable" in html and "its event history records it" in html
    assert "Visible without a worker" in html and '<dd class="assignee">alice</dd>' in html
    assert 'method="post"' not in html.split('id="case"')[1]  # no actions while degraded


def test_action_without_worker_on_a_hidden_case_is_404(agent_client, settings, temporal):
    from cases.temporal.ids import new_case_id
    from workers.model import NewCase

    settings.TEMPORAL_TASK_QUEUE = "nobody-polls-this-queue"
    settings.TEMPORAL_UPDATE_TIMEOUT = 0.5
    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(title="Billing secret", queue="billing"), "x"))
    response = agent_client.post(f"/cases/{case_id}/comment/",
                                 {"comment-version": "1", "comment-body": "hello"})
    assert response.status_code == 404 and "Billing secret" not in response.content.decode()


def test_ended_case_page_is_projected_from_history_with_no_worker(temporal, settings,
                                                                  supervisor_client):
    case_id = _worked_then_orphaned(
        temporal, settings, "Ended already", Claim(actor="alice"),
        AddComment(actor="alice", body="All done here"), Close(actor="sam"))

    started = time.monotonic()
    page = supervisor_client.get(f"/cases/{case_id}/")
    elapsed = time.monotonic() - started
    html = page.content.decode()
    assert page.status_code == 200 and elapsed < BUDGET
    assert "Shown from its event history" in html and "All done here" in html
    assert '<span class="badge status-closed">Closed</span>' in html
    assert "takes no more actions" in html and 'hx-post' not in html
    history = supervisor_client.get(f"/cases/{case_id}/history/").content.decode()
    assert "sam closed the case" in history
    # The same page for one run by id (how archived cases are opened).
    run_id = run(gateway.describe_case(case_id)).run_id
    by_run = supervisor_client.get(f"/cases/{case_id}/?run={run_id}").content.decode()
    assert f"(run {run_id})" in by_run and "All done here" in by_run


def test_terminated_case_says_so_and_is_listed_as_stopped(temporal, open_case,
                                                         supervisor_client):
    case_id = open_case(queue="general", title="Duplicate of another")
    run(gateway.act(case_id, Claim(actor="alice")))
    run(temporal.client.get_workflow_handle(case_id).terminate(reason="duplicate ticket"))
    html = supervisor_client.get(f"/cases/{case_id}/").content.decode()
    assert "The case&#x27;s workflow was terminated: duplicate ticket." in html
    assert "has ended; it takes no more actions" in html
    assert '<dd class="assignee">alice</dd>' in html

    def listed() -> None:
        page = supervisor_client.get("/cases/?execution=stopped&q=Duplicate").content.decode()
        assert case_id in page

    eventually(listed)


def test_ended_cases_are_listed_by_execution_status_and_close_time(open_case,
                                                                   supervisor_client):
    marker = f"endedmark{uuid.uuid4().hex[:6]}"
    ended = open_case(queue="general", title=f"Finished {marker}")
    live = open_case(queue="general", title=f"Ongoing {marker}")
    run(gateway.act(ended, Close(actor="sam")))
    today = datetime.now(UTC).date()

    def listed(query: str) -> str:
        return supervisor_client.get(f"/cases/?q={marker}&{query}").content.decode()

    def check() -> None:
        page = listed(f"execution=ended&closed_from={today}&closed_to={today}")
        assert ended in page and live not in page
        page = listed("execution=live")
        assert live in page and ended not in page
        assert ended in listed("execution=completed")

    eventually(check)
    later = today + timedelta(days=2)
    assert ended not in listed(f"closed_from={later}")
    backwards = listed(f"closed_from={today}&closed_to={today - timedelta(days=1)}")
    assert "The range ends before it starts." in backwards


def test_archived_search_explains_that_the_dev_server_has_no_archival(supervisor_client,
                                                                      temporal):
    page = supervisor_client.get("/cases/archived/?case_id=case-7K2M9QXA")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Archival is not configured" in html and "docs/archival.md" in html
    assert "has no visibility archival" in html
    status = run(gateway.archival_status())
    assert not status.visibility and not status.history and status.retention_days == 30
    # The server itself refuses the archive search, and the gateway says why in words.
    try:
        run(gateway.list_archived("WorkflowType = 'Case'", 10))
    except gateway.ArchivalNotConfigured as err:
        assert "not configured for visibility archival" in err.message
    else:
        raise AssertionError("the dev server has no visibility archive to search")


def test_an_action_on_a_case_that_ended_meanwhile_says_so_and_keeps_the_page(
        open_case, agent_client):
    case_id = open_case(queue="technical")
    run(gateway.act(case_id, Claim(actor="alice")))
    run(gateway.act(case_id, Close(actor="sam")))  # from another tab
    response = agent_client.post(f"/cases/{case_id}/comment/",
                                 {"comment-version": "2", "comment-body": "One more thing"})
    html = response.content.decode()
    assert response.status_code == 409
    assert "This case is closed." in html and "Shown from its event history" in html
    assert "takes no more actions" in html
    assert '<textarea readonly rows="4">One more thing</textarea>' in html  # nothing lost


# --- a cluster with archival: the gateway faked (the dev server cannot archive) ------------------


def _fake_archive(monkeypatch, uri: str, rows: list) -> list[str]:
    """Pretend the namespace archives to `uri` and holds `rows`; returns the queries sent."""
    sent: list[str] = []

    async def status():
        return gateway.ArchivalStatus(namespace="prod", retention_days=30, history=True,
                                      visibility=True, history_uri=uri, visibility_uri=uri)

    async def list_archived(query, page_size, page_token=None):
        sent.append(query)
        return gateway.CasePage(list(rows))

    monkeypatch.setattr(gateway, "archival_status", status)
    monkeypatch.setattr(gateway, "list_archived", list_archived)
    return sent


def _archived_row(case_id: str, queue: str) -> gateway.CaseRow:
    return gateway.CaseRow(
        case_id=case_id, title=f"Old {queue} case", status="closed", priority=3, queue=queue,
        assignee=None, tags=[], due_at=None, updated_at=None, sla_breached=False,
        started_at=None, execution_status="completed", run_id=str(uuid.uuid4()),
        closed_at=datetime(2025, 3, 5, 12, tzinfo=UTC))


def test_archive_search_sends_the_providers_language_and_keeps_the_access_rule(
        monkeypatch, agent_client):
    technical = _archived_row("case-7K2M9QXA", "technical")
    billing = _archived_row("case-8K2M9QXB", "billing")
    sent = _fake_archive(monkeypatch, "s3://tracerail-archive", [technical, billing])
    html = agent_client.get(
        "/cases/archived/?case_id=case-7K2M9QXA&closed_from=2025-03-04&closed_to=2025-03-05"
    ).content.decode()
    assert sent == [
        "WorkflowId = 'case-7K2M9QXA' AND CloseTime = '2025-03-04T00:00:00Z' "
        "AND SearchPrecision = 'Day'",
        "WorkflowId = 'case-7K2M9QXA' AND CloseTime = '2025-03-05T00:00:00Z' "
        "AND SearchPrecision = 'Day'"]
    # Opened by run id (GetWorkflowExecutionHistory reads the archive); alice has no billing.
    assert f'href="/cases/case-7K2M9QXA/?run={technical.run_id}"' in html
    assert "Old technical case" in html and "case-8K2M9QXB" not in html


def test_archive_search_form_errors_are_inline_and_nothing_is_sent(monkeypatch, agent_client):
    sent = _fake_archive(monkeypatch, "file:///archive", [])
    for query, message in (
        ("", "Give a case id or a close-time range."),
        ("case_id=x%27%20OR%201%3D1", "A case id looks like case-7K2M9QXA."),
        ("closed_from=2025-03-05&closed_to=2025-03-01", "“Closed from” is after “Closed to”."),
    ):
        html = agent_client.get(f"/cases/archived/?{query}&go=1").content.decode()
        assert message in html, query
    assert sent == []
    html = agent_client.get("/cases/archived/?closed_from=2025-03-05").content.decode()
    assert sent == ["WorkflowType = 'Case' AND CloseTime >= '2025-03-05T00:00:00Z'"]
    assert "No archived case matches." in html


def test_one_run_of_a_live_case_by_id_is_read_only_and_points_to_the_case_now(
        open_case, supervisor_client):
    case_id = open_case(queue="general")
    run(gateway.act(case_id, Claim(actor="alice")))
    run_id = run(gateway.describe_case(case_id)).run_id
    html = supervisor_client.get(f"/cases/{case_id}/?run={run_id}").content.decode()
    assert "This is the case as far as this run records it. Shown from its event history" in html
    assert f'<a href="/cases/{case_id}/">the case now</a> takes actions' in html
    assert 'hx-post' not in html
