"""Which cases to export, and exporting them: incremental (Visibility by watermark) and the
rebuild (every case Temporal still has, from its history).

Visibility calls grow with cases changed (a page of up to 1,000 changed cases a call, one
call per ANALYTICS_EXPORT_SECONDS when nothing changed), never with report views: reports
read the store only."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asgiref.sync import sync_to_async
from django.conf import settings

from cases import temporal
from cases.analytics import store as stores
from cases.analytics.facts import facts_of
from cases.analytics.schema import CaseFacts, EventFact
from cases.analytics.store import Store
from cases.temporal.visibility import changed_for_export_query

logger = logging.getLogger(__name__)

PAGE = 1000  # Visibility's largest page
BATCH = 500  # cases per segment written
CONCURRENCY = 8  # histories read at once
# Visibility is eventually consistent: a case changed just before the last run's query may
# have been indexed after it. Asking again from a little before the watermark catches it;
# the cases seen twice cost nothing (their version is already in the store).
OVERLAP = timedelta(seconds=60)


@dataclass
class ExportReport:
    cases: int = 0  # cases written
    skipped: int = 0  # histories that are not a case's (logged, never retried)
    visibility_calls: int = 0
    history_calls: int = 0
    seconds: float = 0.0
    gone: int = 0  # executions no longer in Temporal: their last exported facts stay
    unchanged: int = 0  # listed as changed, but the store already has that version


async def export_cases(case_ids: Iterable[str], store: Store | None = None) -> ExportReport:
    """Export these cases now, from their histories (one segment for the batch)."""
    store = store or stores.shared()
    report, started = ExportReport(), time.monotonic()
    await _export(list(dict.fromkeys(case_ids)), store, await _keywords(), report)
    report.seconds = time.monotonic() - started
    return report


async def export_changed(store: Store | None = None) -> ExportReport:
    """Export every case changed since the store's watermark (less an overlap for
    Visibility's lag), then move the watermark."""
    store = store or stores.shared()
    report, started = ExportReport(), time.monotonic()
    state = store.read_state()
    asked_at = datetime.now(UTC)
    since = datetime.fromisoformat(state["watermark"]) - OVERLAP \
        if state.get("watermark") else None
    keywords: set[str] | None = None  # read once there is something to export
    token: str | None = None
    while True:
        page = await temporal.list_cases(changed_for_export_query(since), PAGE, token)
        report.visibility_calls += 1
        known = _known(store, [row.case_id for row in page.rows])
        todo = []
        for row in page.rows:
            if row.case_id in known and known[row.case_id] == (
                    row.version, row.execution_status == "running"):
                report.unchanged += 1
            else:
                todo.append(row.case_id)
        if todo:
            keywords = await _keywords() if keywords is None else keywords
            await _export(todo, store, keywords, report)
        token = page.next_page_token
        if not token:
            break
    # Only now: a run that stopped half way (Temporal gone) asks again from the same point.
    store.write_state({**state, "watermark": asked_at.isoformat(),
                       "exported_at": datetime.now(UTC).isoformat()})
    report.seconds = time.monotonic() - started
    return report


async def compact_if_due(store: Store | None = None, limit: int | None = None) -> int:
    """Fold the store's segments once there are `limit` (ANALYTICS_COMPACT_SEGMENTS) or more:
    `--follow` adds two per round that exported something, and every read opens them all.
    Returns the segments removed (0 when not due)."""
    store = store or stores.shared()
    limit = limit or settings.ANALYTICS_COMPACT_SEGMENTS
    if await asyncio.to_thread(store.segment_count) < limit:
        return 0
    return await asyncio.to_thread(store.compact)


async def rebuild(store: Store | None = None, *, progress: bool = False) -> ExportReport:
    """Export again every case Temporal still has (running and closed). Cases whose
    executions are gone (past retention, deleted) keep their last exported facts."""
    from tqdm import tqdm

    store = store or stores.shared()
    report, started = ExportReport(), time.monotonic()
    asked_at = datetime.now(UTC)
    keywords = await _keywords()
    query = changed_for_export_query(None)
    total = await temporal.count_cases(query) if progress else None
    report.visibility_calls += 1 if progress else 0
    bar = tqdm(total=total, unit="case", desc="export_cases --rebuild", disable=not progress)
    token: str | None = None
    try:
        while True:
            page = await temporal.list_cases(query, PAGE, token)
            report.visibility_calls += 1
            ids = [row.case_id for row in page.rows]
            for i in range(0, len(ids), BATCH):
                await _export(ids[i:i + BATCH], store, keywords, report)
                bar.update(len(ids[i:i + BATCH]))
            token = page.next_page_token
            if not token:
                break
    finally:
        bar.close()
    store.compact()
    state = store.read_state()
    # Everything changed before the rebuild asked is in; the incremental export goes on
    # from there (keeping a later watermark another exporter may have written meanwhile).
    watermark = max(filter(None, [state.get("watermark"), asked_at.isoformat()]))
    store.write_state({**state, "watermark": watermark,
                       "exported_at": datetime.now(UTC).isoformat()})
    report.seconds = time.monotonic() - started
    return report


# --- helpers ----------------------------------------------------------------------------------


async def _keywords() -> set[str]:
    """The registered Keyword attributes' names: the ones reports group by."""
    from cases.models import CaseAttribute

    def read() -> set[str]:
        return set(CaseAttribute.objects.filter(type="Keyword")
                   .values_list("name", flat=True))

    return await sync_to_async(read)()


def _known(store: Store, case_ids: list[str]) -> dict[str, tuple[int, bool]]:
    """What the store has of these cases: version and whether the execution was running."""
    if not case_ids:
        return {}
    db = store.snapshot().db.cursor()
    rows = db.execute("SELECT case_id, version, execution FROM cases "
                      "WHERE case_id IN (SELECT unnest(?))", [case_ids]).fetchall()
    return {case_id: (version, execution == "running") for case_id, version, execution in rows}


async def _export(case_ids: list[str], store: Store, keywords: set[str],
                  report: ExportReport) -> None:
    """Read these cases' histories (a few at once) and write them in segments of BATCH."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(case_id: str) -> tuple[CaseFacts, list[EventFact]] | None:
        async with gate:
            report.history_calls += 1
            try:
                history = await temporal.case_history(case_id)
            except temporal.CaseUnreadable:
                # case_history logged why; a workflow of the case's type that no case wrote
                # is never a case's, so it is skipped, not retried.
                logger.warning("export: skipped %s: its history is not a case's", case_id)
                report.skipped += 1
                return None
            except temporal.CaseNotFound:
                report.gone += 1  # deleted or past retention since it was listed
                return None
        projection = history.projection
        state = projection.state
        if state is None:
            # A run that failed on its input, say: an "ended" entry and no case in it.
            logger.warning("export: skipped %s: its history is not a case's (no case state "
                           "in it)", case_id)
            report.skipped += 1
            return None
        execution = projection.ended or ("completed" if state.status == "closed" else "running")
        return facts_of(projection, keywords=keywords, execution=execution)

    for i in range(0, len(case_ids), BATCH):
        done = [r for r in await asyncio.gather(*(one(c) for c in case_ids[i:i + BATCH]))
                if r is not None]
        if done:
            store.write([facts for facts, _ in done], [e for _, events in done for e in events])
            report.cases += len(done)
