"""The export's two tables, column by column: what each fact means is said once, here.

Both tables are append-only: a case exported again (a retried run, two exporters, a rebuild
over an incremental export) adds rows, and readers keep, per case, the rows of its newest
export: the greatest (`version`, `history_events`) - see store.py. Every time is UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import datetime

import pyarrow as pa

SCHEMA_VERSION = 1


@dataclass
class CaseFacts:
    """One row per case per export."""

    case_id: str
    # Which export of the case this is: the case's version and the number of history events
    # (all runs) it was read at. The greatest pair wins; equal pairs are the same facts.
    version: int
    history_events: int
    title: str
    queue: str
    priority: int
    status: str  # as the history ends (workers.model.STATUS_LABELS)
    requester_name: str
    requester_email: str
    requester_domain: str  # lower-case part after "@", "" when none
    created_by: str
    assignee: str  # "" for nobody
    tags: list[str]
    # Registered Keyword attributes only: name -> value (grouping in reports).
    keywords: dict[str, str]
    opened_at: datetime
    # The first public comment (typed or mailed) by someone other than the requester; a
    # reopen does not reset it. None until there is one.
    first_response_at: datetime | None
    first_response_by: str
    # The last resolution (a reopened case resolved again counts from its opening to then).
    resolved_at: datetime | None
    resolved_by: str
    assignee_at_resolution: str
    closed_at: datetime | None
    reopen_count: int
    due_at: datetime | None
    # "met" (resolved on time and never breached), "breached", or "" (open, no breach yet).
    sla_outcome: str
    # When the outcome became known: the resolution for "met", the breach for "breached".
    sla_outcome_at: datetime | None
    # The queue's calendar name where the case was opened under business hours, else "".
    calendar: str
    # Opening to first response / to resolution: working seconds under `calendar`, wall
    # seconds without one; None when there is no first response / resolution.
    first_response_seconds: float | None
    resolution_seconds: float | None
    # "running", "completed", or why the execution ended outside the case's rules
    # (terminated, timed out...: Projection.ended).
    execution: str
    follows: str
    run_ids: list[str]
    # The final CaseState as JSON (Temporal's payload converter), for a case page after
    # the execution is deleted. Case text: it lives here, never in Django's database.
    state_json: str
    exported_at: datetime = field(default_factory=lambda: datetime.min)


@dataclass
class EventFact:
    """One timeline entry (workers.projection.Entry) per row, with the case right after it."""

    case_id: str
    version: int  # the CaseFacts export this row belongs to (same version/history_events)
    history_events: int
    seq: int
    run_id: str
    event_id: int
    at: datetime
    actor: str
    kind: str  # rules.WORDING's keys
    detail: str
    text: str
    state_version: int  # the case's version right after the entry (0 when none)
    status: str
    queue: str
    assignee: str
    priority: int


_TS = pa.timestamp("us", tz="UTC")

CASES = pa.schema([
    ("case_id", pa.string()), ("version", pa.int64()), ("history_events", pa.int64()),
    ("title", pa.string()), ("queue", pa.string()), ("priority", pa.int64()),
    ("status", pa.string()), ("requester_name", pa.string()),
    ("requester_email", pa.string()), ("requester_domain", pa.string()),
    ("created_by", pa.string()), ("assignee", pa.string()),
    ("tags", pa.list_(pa.string())), ("keywords", pa.map_(pa.string(), pa.string())),
    ("opened_at", _TS), ("first_response_at", _TS), ("first_response_by", pa.string()),
    ("resolved_at", _TS), ("resolved_by", pa.string()),
    ("assignee_at_resolution", pa.string()), ("closed_at", _TS),
    ("reopen_count", pa.int64()), ("due_at", _TS), ("sla_outcome", pa.string()),
    ("sla_outcome_at", _TS), ("calendar", pa.string()),
    ("first_response_seconds", pa.float64()), ("resolution_seconds", pa.float64()),
    ("execution", pa.string()), ("follows", pa.string()),
    ("run_ids", pa.list_(pa.string())), ("state_json", pa.string()),
    ("exported_at", _TS),
])

EVENTS = pa.schema([
    ("case_id", pa.string()), ("version", pa.int64()), ("history_events", pa.int64()),
    ("seq", pa.int64()), ("run_id", pa.string()), ("event_id", pa.int64()), ("at", _TS),
    ("actor", pa.string()), ("kind", pa.string()), ("detail", pa.string()),
    ("text", pa.string()), ("state_version", pa.int64()), ("status", pa.string()),
    ("queue", pa.string()), ("assignee", pa.string()), ("priority", pa.int64()),
])

# Columns that are not facts of the case: a rebuild and an incremental export differ here
# only (tests compare everything else).
NOT_FACTS = ("exported_at",)

assert [f.name for f in fields(CaseFacts)] == CASES.names
assert [f.name for f in fields(EventFact)] == EVENTS.names
