"""Ended cases past retention (issue 24): once a case's execution is gone, its page, History
tab and the ended-cases search read it from the case export, with the one access rule and
the page saying where it was read from. Against the real dev server (where the case's
execution is truly absent) and a real store in a temporary folder."""

from __future__ import annotations

import logging
import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from cases import temporal as gateway
from cases.analytics import exporter
from cases.analytics.schema import CaseFacts, EventFact
from cases.analytics.store import Store
from cases.temporal.ids import new_case_id
from workers.model import AddComment, CaseState, Claim, Close, Comment, Requester, Resolve

from .conftest import TEMPORAL_BIN, eventually, logged_in, run

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
WHERE_FROM = "Read from the case export, exported"


@pytest.fixture
def store(settings, tmp_path):
    settings.ANALYTICS_URI = str(tmp_path / "analytics")
    return Store(settings.ANALYTICS_URI)


def _state(case_id: str, queue: str, title: str) -> CaseState:
    return CaseState(
        case_id=case_id, title=title, description="The fuser smokes",
        requester=Requester(name="Ada", email="ada@example.com"), queue=queue, priority=2,
        status="closed", created_at=T0, created_by="intake", updated_at=T0 + timedelta(hours=3),
        updated_by="sam", comments=[
            Comment(author="alice", body="Replaced the fuser", internal=False,
                    at=T0 + timedelta(hours=1)),
            Comment(author="alice", body="Customer was rude", internal=True,
                    at=T0 + timedelta(hours=2))],
        resolution="Fixed", resolved_at=T0 + timedelta(hours=2),
        closed_at=T0 + timedelta(hours=3), version=5)


_TIMELINE = [("intake", "opened", "intake opened the case"),
             ("alice", "commented", "alice commented"),
             ("alice", "noted", "alice added an internal note"),
             ("bob", "resolved", "bob resolved the case"),
             ("sam", "closed", "sam closed the case")]


def _export(store: Store, case_id: str, queue: str = "general", title: str = "Old printer",
            state_json: str | None = None, closed: datetime = T0 + timedelta(hours=3),
            email: str = "ada@example.com", execution: str = "completed") -> None:
    """One exported, ended case, as the exporter writes it (a case Temporal never had)."""
    state = _state(case_id, queue, title)
    facts = CaseFacts(
        case_id=case_id, version=5, history_events=40, title=title, queue=queue, priority=2,
        status="closed", requester_name="Ada", requester_email=email,
        requester_domain=email.partition("@")[2], created_by="intake", assignee="bob",
        tags=[], keywords={}, opened_at=T0, first_response_at=T0 + timedelta(hours=1),
        first_response_by="alice", resolved_at=T0 + timedelta(hours=2), resolved_by="bob",
        assignee_at_resolution="bob", closed_at=closed, reopen_count=0, due_at=None,
        sla_outcome="met", sla_outcome_at=T0 + timedelta(hours=2), calendar="",
        first_response_seconds=3600.0, resolution_seconds=7200.0, execution=execution,
        follows="", run_ids=["9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"],
        state_json=gateway.state_to_json(state) if state_json is None else state_json)
    events = [EventFact(case_id=case_id, version=5, history_events=40, seq=seq,
                        run_id="9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d", event_id=seq * 6,
                        at=T0 + timedelta(minutes=seq), actor=actor, kind=kind, detail="",
                        text=text, state_version=seq, status="closed", queue=queue,
                        assignee="bob", priority=2)
              for seq, (actor, kind, text) in enumerate(_TIMELINE, start=1)]
    store.write([facts], events)


def test_a_case_whose_execution_is_gone_is_read_from_the_export_and_says_so(
        temporal, store, agent_client):
    case_id = new_case_id()  # Temporal has no execution of it: only the export does
    _export(store, case_id)
    page = agent_client.get(f"/cases/{case_id}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Old printer" in html and "Replaced the fuser" in html
    assert WHERE_FROM in html and "Temporal no longer has its execution" in html
    # Agents see internal notes as on any case page (the same template).
    assert "Customer was rude" in html
    assert "hx-post" not in html and "takes no more actions" in html


def test_the_history_tab_and_csv_come_from_the_export_without_time_travel_or_raw_json(
        temporal, store, agent_client):
    case_id = new_case_id()
    _export(store, case_id)
    html = agent_client.get(f"/cases/{case_id}/history/").content.decode()
    for _, _, text in _TIMELINE:
        assert text in html
    assert WHERE_FROM in html and "?at=" not in html
    at = agent_client.get(f"/cases/{case_id}/history/?at=12")
    assert at.status_code == 200
    assert "Time travel is not available" in at.content.decode()
    rows = agent_client.get(f"/cases/{case_id}/history.csv").content.decode().splitlines()
    assert rows[0] == "#,Time,Actor,Event,Detail,Version,Run,Event id"
    assert rows[1].startswith("1,2026-03-02T09:01:00+00:00,intake,intake opened the case,,1,")
    assert len(rows) == 1 + len(_TIMELINE)
    raw = agent_client.get(f"/cases/{case_id}/history.json")
    assert raw.status_code == 404
    assert "raw event history" in raw.content.decode() and "is gone" in raw.content.decode()


def test_an_exported_case_keeps_the_access_rule_on_page_history_and_search(
        temporal, store, other_agent):
    bob = logged_in(other_agent)  # technical only; the case is general's
    case_id = new_case_id()
    _export(store, case_id, queue="general")
    for url in (f"/cases/{case_id}/", f"/cases/{case_id}/history/",
                f"/cases/{case_id}/history.csv", f"/cases/{case_id}/history.json"):
        assert bob.get(url).status_code == 404, url
    assert case_id not in bob.get("/cases/archived/").content.decode()
    found = bob.get(f"/cases/archived/?case_id={case_id}").content.decode()
    assert "No ended case in the export matches." in found and f"/cases/{case_id}/" not in found


def test_ended_cases_search_reads_the_export_newest_first_by_its_filters(
        temporal, store, agent_client):
    older, newer, billing = new_case_id(), new_case_id(), new_case_id()
    _export(store, older, title="Older one", closed=datetime(2026, 3, 2, 23, 59, tzinfo=UTC))
    _export(store, newer, title="Newer one", closed=datetime(2026, 3, 4, 8, tzinfo=UTC),
            email="Bo@Example.org")
    _export(store, billing, queue="billing", title="Not alice's")

    def listed(query: str = "") -> list[str]:
        html = agent_client.get(f"/cases/archived/?{query}").content.decode()
        assert "In the case export" in html
        return [c for c in (newer, older, billing) if f'id="ended-{c}"' in html]

    assert listed() == [newer, older]  # newest first; billing is not alice's
    html = agent_client.get("/cases/archived/").content.decode()
    assert html.index(newer) < html.index(older)
    assert listed("closed_from=2026-03-02&closed_to=2026-03-02") == [older]
    assert listed("closed_from=2026-03-03") == [newer]
    assert listed("requester=bo%40example.org") == [newer]
    assert listed(f"case_id={older}") == [older]
    assert listed(f"case_id={billing}") == []
    assert listed("queue=general") == [newer, older]
    assert listed("queue=billing") == []  # a queue named does not widen the rule


def test_a_corrupted_state_in_the_export_is_skipped_with_a_log_line_not_a_500(
        temporal, store, agent_client, caplog):
    case_id = new_case_id()
    _export(store, case_id, state_json='{"case_id": 7, "title": ')
    with caplog.at_level(logging.WARNING, logger="cases.analytics.ended"):
        page = agent_client.get(f"/cases/{case_id}/")
    assert page.status_code == 404
    assert any(case_id in r.getMessage() and "cannot be read" in r.getMessage()
               for r in caplog.records)
    assert agent_client.get(f"/cases/{case_id}/history/").status_code == 404


def test_a_case_neither_in_temporal_nor_in_the_export_is_404(temporal, store, agent_client):
    _export(store, new_case_id())
    assert agent_client.get(f"/cases/{new_case_id()}/").status_code == 404
    assert agent_client.get(f"/cases/{new_case_id()}/history/").status_code == 404


# --- the real thing: a worked case exported by the real exporter, its execution deleted -------


def _worked_and_closed(open_case, title: str) -> str:
    case_id = open_case(queue="general", title=title, requester_name="Ada",
                        requester_email="ada@gone.example")
    for command in (Claim(actor="alice"),
                    AddComment(actor="alice", body="Public words for Ada"),
                    AddComment(actor="alice", body="Private words", internal=True),
                    Resolve(actor="alice", resolution="Replaced it"),
                    Close(actor="sam")):
        run(gateway.act(case_id, command))
    eventually(lambda: _assert_completed(case_id))
    return case_id


def _assert_completed(case_id: str) -> None:
    assert run(gateway.describe_case(case_id)).execution_status == "completed"


def _delete_executions(temporal, settings, *case_ids: str) -> None:
    """With the real CLI, as an operator (or retention) would; then until describe says so.
    The dev server removes a closed run some 30 s after the request."""
    for case_id in case_ids:
        done = subprocess.run([TEMPORAL_BIN, "workflow", "delete", "--yes",
                               "--workflow-id", case_id, "--namespace", settings.TEMPORAL_NAMESPACE,
                               "--address", temporal.address],
                              check=False, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr

    def gone() -> None:
        for case_id in case_ids:
            try:
                run(gateway.describe_case(case_id))
            except gateway.CaseNotFound:
                continue
            raise AssertionError(f"{case_id} is still described")

    eventually(gone, timeout=120, interval=1)


@pytest.mark.django_db(transaction=True)
def test_a_deleted_execution_is_still_read_from_the_real_export(
        temporal, settings, store, open_case, agent, other_agent):
    alice, bob = logged_in(agent), logged_in(other_agent)  # bob: technical only
    case_id = _worked_and_closed(open_case, "Gone printer")
    kept = _worked_and_closed(open_case, "Deleted and never exported")
    assert run(exporter.export_cases([case_id])).cases == 1
    live = alice.get(f"/cases/{case_id}/").content.decode()
    assert "Shown from its event history" in live and WHERE_FROM not in live

    _delete_executions(temporal, settings, case_id, kept)

    page = alice.get(f"/cases/{case_id}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "Gone printer" in html and "Public words for Ada" in html
    assert "Private words" in html  # an agent's page shows internal notes, as ever
    assert WHERE_FROM in html and "This case has ended" in html
    assert "hx-post" not in html
    history = alice.get(f"/cases/{case_id}/history/").content.decode()
    for line in ("intake opened the case", "alice claimed the case", "alice commented",
                 "alice added an internal note"):
        assert line in history
    assert WHERE_FROM in history
    csv_rows = alice.get(f"/cases/{case_id}/history.csv").content.decode().splitlines()
    assert "intake opened the case" in csv_rows[1]
    assert alice.get(f"/cases/{case_id}/history.json").status_code == 404
    found = alice.get("/cases/archived/?requester=ada%40gone.example").content.decode()
    assert f'id="ended-{case_id}"' in found and f'id="ended-{kept}"' not in found

    # The one access rule: bob cannot see general's cases, exported or not.
    assert bob.get(f"/cases/{case_id}/").status_code == 404
    assert bob.get(f"/cases/{case_id}/history/").status_code == 404
    assert f"ended-{case_id}" not in bob.get("/cases/archived/").content.decode()
    # Deleted and never exported: gone everywhere, as before.
    assert alice.get(f"/cases/{kept}/").status_code == 404
    assert alice.get(f"/cases/{kept}/history/").status_code == 404


def test_where_the_cluster_archives_both_the_export_and_the_archive_are_searched(
        temporal, store, monkeypatch, agent_client):
    # The dev server cannot archive: the gateway's archive answers are faked as in
    # test_history (the export half is the real store).
    from .test_history import _archived_row, _fake_archive

    in_export = new_case_id()
    _export(store, in_export, closed=datetime(2025, 3, 5, 10, tzinfo=UTC))
    archived = _archived_row("case-7K2M9QXA", "technical")
    sent = _fake_archive(monkeypatch, "file:///archive", [archived])
    html = agent_client.get("/cases/archived/?closed_from=2025-03-05&closed_to=2025-03-05"
                            ).content.decode()
    export_half = html[html.index("In the case export"):html.index("In the archive")]
    archive_half = html[html.index("In the archive"):]
    assert f'id="ended-{in_export}"' in export_half and "case-7K2M9QXA" not in export_half
    assert f"?run={archived.run_id}" in archive_half and in_export not in archive_half
    assert len(sent) == 1
    # A requester is the export's alone: the archive is not asked without an id or a range.
    html = agent_client.get("/cases/archived/?requester=ada%40example.com").content.decode()
    assert f'id="ended-{in_export}"' in html and len(sent) == 1
    assert "To search the archive: Give a case id or a close-time range." in html


def test_a_case_deleted_while_open_says_it_is_the_last_export_and_is_not_listed_as_ended(
        temporal, store, agent_client):
    case_id = new_case_id()
    _export(store, case_id, execution="running")
    html = agent_client.get(f"/cases/{case_id}/").content.decode()
    assert "Its execution was deleted while the case was open" in html and WHERE_FROM in html
    assert f'id="ended-{case_id}"' not in agent_client.get("/cases/archived/").content.decode()


def test_the_api_reads_a_case_and_its_timeline_from_the_export_once_its_execution_is_gone(
        temporal, store, api_token, other_agent):
    """GET /api/cases/<id>/ and its history/ for a case only the export holds: the case and
    its timeline (with the version after each entry), said to come from the export, under
    the token's access."""
    from django.test import Client

    from cases.models import ApiToken

    case_id = new_case_id()
    _export(store, case_id, queue="general")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {api_token}")
    case = client.get(f"/api/cases/{case_id}/")
    assert case.status_code == 200 and case["X-Case-Read-From"] == "export"
    assert case.json()["title"] == "Old printer"
    timeline = client.get(f"/api/cases/{case_id}/history/")
    assert timeline.status_code == 200 and timeline["X-Case-Read-From"] == "export"
    body = timeline.json()
    assert body["runs"] == ["9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d"] and body["ended"] == ""
    assert [(e["actor"], e["text"], e["version"]) for e in body["events"]] == [
        (actor, text, seq) for seq, (actor, _, text) in enumerate(_TIMELINE, start=1)]
    # bob works technical only: the export keeps the access rule.
    bob = Client(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(other_agent, 'tests')[1]}")
    assert bob.get(f"/api/cases/{case_id}/history/").status_code == 404
    assert bob.get(f"/api/cases/{case_id}/").status_code == 404
