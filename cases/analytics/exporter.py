"""Which cases to export, and exporting them: incremental (Visibility by watermark) and the
rebuild (every case Temporal still has, from its history).

Visibility calls grow with cases changed (a page of up to 1,000 changed cases a call, one
call per ANALYTICS_EXPORT_SECONDS when nothing changed), never with report views: reports
read the store only."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cases.analytics.store import Store


@dataclass
class ExportReport:
    cases: int = 0  # cases written
    skipped: int = 0  # histories that are not a case's (logged, never retried)
    visibility_calls: int = 0
    history_calls: int = 0
    seconds: float = 0.0


async def export_cases(case_ids: Iterable[str], store: Store | None = None) -> ExportReport:
    """Export these cases now, from their histories (one segment for the batch)."""
    raise NotImplementedError  # lane A (issue 24)


async def export_changed(store: Store | None = None) -> ExportReport:
    """Export every case changed since the store's watermark (less an overlap for
    Visibility's lag), then move the watermark."""
    raise NotImplementedError  # lane A (issue 24)


async def rebuild(store: Store | None = None, *, progress: bool = False) -> ExportReport:
    """Export again every case Temporal still has (running and closed). Cases whose
    executions are gone (past retention, deleted) keep their last exported facts."""
    raise NotImplementedError  # lane A (issue 24)
