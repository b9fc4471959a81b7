"""A case's facts from its Projection: the one derivation the incremental export and the
rebuild share (so they give the same facts), and the one definition of every figure the
reports count (first response, resolution, SLA outcome, reopens)."""

from __future__ import annotations

from datetime import datetime

from cases import temporal
from cases.analytics.schema import CaseFacts, EventFact
from workers.business_hours import WorkingTime, working_between
from workers.model import OPEN_STATUSES, CaseState
from workers.projection import Projection

# A case in one of these has been resolved; leaving them for an open status is a reopen.
DONE = ("resolved", "closed")


def facts_of(projection: Projection, *, keywords: set[str], execution: str = "running"
             ) -> tuple[CaseFacts, list[EventFact]]:
    """The case's row and its timeline's rows. `keywords`: the registered Keyword attribute
    names (others are not grouped by). The final state goes into `state_json` by
    temporal.state_to_json. `execution`: "running", "completed", or Projection.ended.
    Raises ValueError for a projection with no case state (not a case's history)."""
    state = projection.state
    if state is None:
        raise ValueError(f"{projection.case_id}: no run of it opened a case")
    history_events = sum(projection.last_event_ids.values())
    working = projection.sla.working if projection.sla is not None else None
    opened = state.created_at

    def seconds(moment: datetime | None) -> float | None:
        return None if moment is None else _between(working, opened, moment)

    # The first public comment by someone other than the requester: a mail received from
    # the requester is via="email"; anyone else's mail became an internal note. Comments are
    # never removed, so a reopen cannot reset it.
    first = next((c for c in state.comments if not c.internal and c.via != "email"), None)

    resolved_at = state.resolved_at if state.status in DONE else None
    resolved_by = assignee_at_resolution = ""
    if resolved_at is not None:
        last = next((e for e in reversed(projection.entries) if e.kind == "resolved"), None)
        if last is not None:
            resolved_by = last.actor
            assignee_at_resolution = (last.state.assignee or "") if last.state else ""

    reopens, status = 0, ""
    for entry in projection.entries:
        if entry.state is None:
            continue
        if status in DONE and entry.state.status in OPEN_STATUSES:
            reopens += 1
        status = entry.state.status

    breach = next((e for e in projection.entries if e.kind == "sla breached"), None)
    if breach is not None:
        outcome, outcome_at = "breached", breach.at
    elif resolved_at is not None:
        outcome, outcome_at = "met", resolved_at
    else:
        outcome, outcome_at = "", None

    facts = CaseFacts(
        case_id=projection.case_id, version=state.version, history_events=history_events,
        title=state.title, queue=state.queue, priority=state.priority, status=state.status,
        requester_name=state.requester.name, requester_email=state.requester.email,
        requester_domain=domain_of(state.requester.email), created_by=state.created_by,
        assignee=state.assignee or "", tags=list(state.tags),
        keywords={name: v.value for name, v in sorted(state.attributes.items())
                  if v.type == "Keyword" and name in keywords and isinstance(v.value, str)},
        opened_at=opened,
        first_response_at=first.at if first else None,
        first_response_by=first.author if first else "",
        resolved_at=resolved_at, resolved_by=resolved_by,
        assignee_at_resolution=assignee_at_resolution, closed_at=state.closed_at,
        reopen_count=reopens, due_at=state.due_at, sla_outcome=outcome,
        sla_outcome_at=outcome_at, calendar=working.calendar if working else "",
        first_response_seconds=seconds(first.at if first else None),
        resolution_seconds=seconds(resolved_at), execution=execution,
        follows=state.follows, run_ids=list(projection.run_ids),
        state_json=temporal.state_to_json(state))
    events, carried = [], None
    for entry in projection.entries:
        carried = entry.state or carried
        events.append(EventFact(
            case_id=projection.case_id, version=state.version, history_events=history_events,
            seq=entry.seq, run_id=entry.run_id, event_id=entry.event_id, at=entry.at,
            actor=entry.actor, kind=entry.kind, detail=entry.detail, text=entry.text,
            **_after(carried)))
    return facts, events


def domain_of(email: str) -> str:
    return email.rpartition("@")[2].strip().lower() if "@" in email else ""


def _between(working: WorkingTime | None, start: datetime, end: datetime) -> float:
    if working is not None:
        return working_between(working, start, end)
    return (end - start).total_seconds()


def _after(state: CaseState | None) -> dict:
    if state is None:
        return {"state_version": 0, "status": "", "queue": "", "assignee": "", "priority": 0}
    return {"state_version": state.version, "status": state.status, "queue": state.queue,
            "assignee": state.assignee or "", "priority": state.priority}
