"""Ended cases read back from the case export, for when their executions are gone (past the
namespace's retention, or deleted): the case page, its History tab and the "Ended cases"
search. The export keeps each case's final state (`state_json`) and its timeline.

Reads are synchronous DuckDB queries over the store's snapshot (a cursor per call); async
callers run them in a thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING

from cases import temporal
from cases.analytics import store as analytics_store
from workers.model import CaseState

if TYPE_CHECKING:
    from workers.projection import Entry

logger = logging.getLogger(__name__)

PAGE_SIZE = 50


@dataclass
class ExportedCase:
    case_id: str
    state: CaseState
    # The timeline as the export recorded it, oldest first. Entries carry no state (the export
    # keeps only the final one): time travel needs the event history.
    entries: list[Entry]
    # The case's version right after each entry, by seq (the CSV's "Version" column).
    versions: dict[int, int]
    exported_at: datetime
    # "completed", or why the execution ended outside the case's rules (Projection.ended).
    execution: str
    run_ids: list[str] = field(default_factory=list)

    @property
    def ended(self) -> str:
        """Why the case takes no more changes, in the words the history-read page uses."""
        if self.execution == "running":
            # Deleted while open, after its last export: that export is all there is.
            return "Its execution was deleted while the case was open; this is the case as " \
                   "last exported"
        return "This case has ended" if self.execution == "completed" else self.execution


@dataclass
class EndedRow:
    case_id: str
    title: str
    status: str
    queue: str
    requester_email: str
    ended_at: datetime | None
    execution: str


@dataclass
class EndedPage:
    rows: list[EndedRow]
    page: int
    has_next: bool


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def exported_case(case_id: str) -> ExportedCase | None:
    """The case as its newest export left it, or None when the export does not hold it (or
    holds a state that does not parse: logged, skipped, never an error page)."""
    db = analytics_store.shared().snapshot().db.cursor()
    try:
        found = db.execute(
            "SELECT state_json, exported_at, execution, run_ids FROM cases WHERE case_id = ?",
            [case_id]).fetchall()
        if not found:
            return None
        state_json, exported_at, execution, run_ids = found[0]
        try:
            state = temporal.state_from_json(state_json)
        except ValueError as err:
            # The store is files anyone with the bucket could write: skip, say so.
            logger.warning("case export: %s has a state that cannot be read, skipped (%s)",
                           case_id, err)
            return None
        if state.case_id != case_id:
            logger.warning("case export: the row of %s holds the state of %s, skipped",
                           case_id, state.case_id)
            return None
        events = db.execute(
            "SELECT seq, run_id, event_id, \"at\", actor, kind, detail, text, state_version "
            "FROM events WHERE case_id = ? ORDER BY seq", [case_id]).fetchall()
    finally:
        db.close()
    entries = [temporal.Entry(seq=seq, run_id=run_id, event_id=event_id, at=_utc(at), actor=actor,
                     kind=kind, detail=detail, text=text, state=None)
               for seq, run_id, event_id, at, actor, kind, detail, text, _ in events]
    versions = {row[0]: row[8] for row in events}
    return ExportedCase(case_id, state, entries, versions, _utc(exported_at), execution,
                        list(run_ids or []))


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def search_ended(queues: list[str] | None, *, case_id: str = "",
                 closed_from: date | None = None, closed_to: date | None = None,
                 queue: str = "", requester: str = "", page: int = 1,
                 page_size: int = PAGE_SIZE) -> EndedPage:
    """Ended cases in the export (execution not running), newest first. `queues`: the
    queues the viewer may see (Access.visible_queues; None for every queue), applied in
    the query. Days are whole UTC days, both ends included, as the archive search reads
    them; a case ended outside its rules (terminated...) ends at its last event."""
    if queues is not None and not queues:
        return EndedPage([], page, False)
    where = ["c.execution <> 'running'"]
    params: list[object] = []
    if queues is not None:
        where.append(f"c.queue IN ({', '.join('?' for _ in queues)})")
        params.extend(queues)
    if case_id:
        where.append("c.case_id = ?")
        params.append(case_id)
    if queue:
        where.append("c.queue = ?")
        params.append(queue)
    if requester:
        where.append("lower(c.requester_email) = lower(?)")
        params.append(requester.strip())
    ended = "coalesce(c.closed_at, e.last_at)"
    if closed_from is not None:
        where.append(f"{ended} >= ?")
        params.append(_midnight(closed_from))
    if closed_to is not None:
        where.append(f"{ended} < ?")
        params.append(_midnight(closed_to + timedelta(days=1)))
    page = max(page, 1)
    params.extend([page_size + 1, (page - 1) * page_size])
    sql = f"""
        SELECT c.case_id, c.title, c.status, c.queue, c.requester_email, {ended} AS ended_at,
               c.execution
        FROM cases c
        LEFT JOIN (SELECT case_id, max("at") AS last_at FROM events GROUP BY case_id) e
          ON e.case_id = c.case_id
        WHERE {' AND '.join(where)}
        ORDER BY ended_at DESC NULLS LAST, c.case_id
        LIMIT ? OFFSET ?"""
    db = analytics_store.shared().snapshot().db.cursor()
    try:
        found = db.execute(sql, params).fetchall()
    finally:
        db.close()
    rows = [EndedRow(r[0], r[1], r[2], r[3], r[4], _utc(r[5]), r[6]) for r in found]
    return EndedPage(rows[:page_size], page, len(rows) > page_size)
