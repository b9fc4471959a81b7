"""The gateway's rows and pages as the shared store keeps them (cases/store/wire.py's JSON):
a List answer and the change log hold them."""

from __future__ import annotations

from cases.store.wire import (
    BOOL,
    INT,
    JSON_OBJECT,
    STR,
    TIME,
    list_of,
    optional,
    record,
    tuple_of,
)
from cases.temporal.types import CasePage, CaseRow

ROW = record("row", lambda: CaseRow, {
    "case_id": STR,
    "title": STR,
    "status": STR,
    "priority": optional(INT),
    "queue": STR,
    "assignee": optional(STR),
    "tags": list_of(STR),
    "due_at": optional(TIME),
    "updated_at": optional(TIME),
    "sla_breached": BOOL,
    "at_risk": BOOL,
    "started_at": optional(TIME),
    "execution_status": STR,
    "requester": STR,
    "version": optional(INT),
    "comments": INT,
    "run_id": STR,
    "closed_at": optional(TIME),
    # Raw search-attribute values as Visibility gave them: data, never types.
    "attributes": JSON_OBJECT,
    # The fields that could not be read (temporal/rows.py): the row says so on every screen.
    "unreadable": tuple_of(STR),
})

PAGE = record("page", lambda: CasePage, {
    "rows": list_of(ROW),
    "next_page_token": optional(STR),
})
