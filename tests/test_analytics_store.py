"""The export's store: append-only segments read back one row per case (issue 24)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from cases.analytics.schema import CaseFacts, EventFact
from cases.analytics.store import Store

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def case(case_id: str, version: int, events: int, status: str = "new") -> CaseFacts:
    return CaseFacts(
        case_id=case_id, version=version, history_events=events, title="Printer",
        queue="billing", priority=3, status=status, requester_name="Ada",
        requester_email="ada@example.com", requester_domain="example.com", created_by="amy",
        assignee="", tags=["a"], keywords={"Region": "EU"}, opened_at=T0,
        first_response_at=None, first_response_by="", resolved_at=None, resolved_by="",
        assignee_at_resolution="", closed_at=None, reopen_count=0, due_at=None,
        sla_outcome="", sla_outcome_at=None, calendar="", first_response_seconds=None,
        resolution_seconds=None, execution="running", follows="", run_ids=["r1"],
        state_json="{}")


def event(case_id: str, version: int, events: int, seq: int, kind: str) -> EventFact:
    return EventFact(
        case_id=case_id, version=version, history_events=events, seq=seq, run_id="r1",
        event_id=seq * 5, at=T0, actor="amy", kind=kind, detail="", text=kind,
        state_version=seq, status="new", queue="billing", assignee="", priority=3)


def test_a_case_exported_twice_is_one_row_and_the_newer_export_wins(tmp_path):
    store = Store(str(tmp_path))
    store.write([case("case-A", 1, 5)], [event("case-A", 1, 5, 1, "opened")])
    # The same export again (a retried activity, a second exporter) ...
    store.write([case("case-A", 1, 5)], [event("case-A", 1, 5, 1, "opened")])
    # ... and a later one with one more entry.
    store.write([case("case-A", 2, 9, "in_progress"), case("case-B", 1, 5)],
                [event("case-A", 2, 9, 1, "opened"), event("case-A", 2, 9, 2, "claimed"),
                 event("case-B", 1, 5, 1, "opened")])
    db = store.snapshot().db.cursor()
    assert db.execute("SELECT case_id, version, status FROM cases ORDER BY case_id").fetchall() == [
        ("case-A", 2, "in_progress"), ("case-B", 1, "new")]
    assert db.execute("SELECT case_id, seq, kind FROM events ORDER BY case_id, seq").fetchall() == [
        ("case-A", 1, "opened"), ("case-A", 2, "claimed"), ("case-B", 1, "opened")]
    assert db.execute("SELECT keywords['Region'] FROM cases WHERE case_id = 'case-B'"
                  ).fetchone() == ("EU",)


def test_an_older_export_written_late_does_not_replace_a_newer_one(tmp_path):
    store = Store(str(tmp_path))
    store.write([case("case-A", 3, 12, "resolved")], [event("case-A", 3, 12, 1, "opened")])
    store.write([case("case-A", 2, 9)], [event("case-A", 2, 9, 1, "opened")])
    db = store.snapshot().db.cursor()
    assert db.execute("SELECT version, status FROM cases").fetchall() == [(3, "resolved")]


def test_compaction_keeps_the_same_facts_in_fewer_files(tmp_path):
    store = Store(str(tmp_path))
    for version in (1, 2, 3):
        store.write([case("case-A", version, version * 4), case(f"case-{version}", 1, 4)],
                    [event("case-A", version, version * 4, 1, "opened")])
    facts = "SELECT * EXCLUDE (exported_at) FROM cases ORDER BY case_id"
    before = store.snapshot().db.cursor().execute(facts).fetchall()
    assert store.compact() == 6
    assert len(store.snapshot().segments) == 2
    assert store.snapshot().db.cursor().execute(facts).fetchall() == before
    assert store.snapshot().db.cursor().execute("SELECT count(*) FROM events").fetchone() == (1,)


def test_a_snapshot_is_reused_until_a_segment_is_added(tmp_path):
    store = Store(str(tmp_path))
    store.write([case("case-A", 1, 5)], [])
    first = store.snapshot()
    assert store.snapshot() is first
    store.write([replace(case("case-A", 2, 7))], [])
    assert store.snapshot() is not first
    assert store.snapshot().db.cursor().execute("SELECT version FROM cases").fetchall() == [(2,)]


def test_the_exporters_state_survives_a_new_store_object(tmp_path):
    Store(str(tmp_path)).write_state({"watermark": "2026-03-02T09:00:00+00:00"})
    assert Store(str(tmp_path)).read_state() == {"watermark": "2026-03-02T09:00:00+00:00"}


def test_follow_compacts_once_the_segments_reach_the_limit(tmp_path):
    """`export_cases --follow` adds two segments per round that exported something; once
    there are ANALYTICS_COMPACT_SEGMENTS it folds them (before, they grew without end)."""
    import asyncio

    from cases.analytics import exporter

    store = Store(str(tmp_path))
    for version in (1, 2):
        store.write([case("case-A", version, version * 4)],
                    [event("case-A", version, version * 4, 1, "opened")])
    assert store.segment_count() == 4
    assert asyncio.run(exporter.compact_if_due(store, limit=5)) == 0
    store.write([case("case-B", 1, 4)], [event("case-B", 1, 4, 1, "opened")])
    assert asyncio.run(exporter.compact_if_due(store, limit=5)) == 6
    assert store.segment_count() == 2
    rows = store.snapshot().db.cursor().execute(
        "SELECT case_id, version FROM cases ORDER BY case_id").fetchall()
    assert rows == [("case-A", 2), ("case-B", 1)]
