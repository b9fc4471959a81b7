"""One door to "this case, for this user".

Every state the web shows (a page, a partial, an API answer, a bulk report line, an Update's
result) comes through here, so the access rule is applied in one place: a case outside the
user's queues is a 404, whatever path it was read by. The case is its live Query; when it has
ended, or no worker answers, it is rebuilt from its event history (no worker needed); when its
execution is gone (past the namespace's retention, deleted), it is read from the case export
(cases/analytics/ended.py), the same access rule applying to what the export holds.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import datetime

from cachetools import LRUCache
from django.http import Http404

from cases import temporal
from cases.analytics import ended as exported
from cases.config.access import Access
from cases.live import feed
from cases.live.single_flight import SingleFlight
from cases.temporal.ids import is_case_id
from workers.model import CaseState

NOT_FOUND = "No such case."

# Where a Seen was read from.
LIVE, HISTORY, VISIBILITY, EXPORT = "live", "history", "visibility", "export"


@dataclass
class Seen:
    """A case as one user may see it, and how it was read."""

    case_id: str
    # None only for a live case no worker has run yet (then `row` is all there is).
    state: CaseState | None
    row: temporal.CaseRow
    # Read from its event history because the case's workflow ended: why, in words.
    ended: str = ""
    # Read from its event history because no worker answered: the gateway's reason.
    degraded: str = ""
    run_id: str = ""  # one run asked for by id
    live_elsewhere: bool = False  # that run is not the case's latest
    # Where it was read from: its Query (LIVE), its event HISTORY, Temporal's VISIBILITY row
    # (a live case no worker has run), or the case EXPORT (its execution is gone).
    source: str = LIVE
    exported_at: datetime | None = None  # for EXPORT: when the export read the case

    @property
    def live(self) -> bool:
        return not (self.ended or self.degraded)


def visible(access: Access, state: CaseState | None) -> CaseState:
    """`state` if this user may see it, else 404. Applied to Update results too: Temporal
    answers a repeated Update id with its first outcome, whoever asks."""
    if state is None or not access.can_see(state.queue):
        raise Http404(NOT_FOUND)
    return state


def _run_id(value: str | None) -> str | None:
    """A run id from the URL: Temporal's are UUIDs; anything else matches no case."""
    if not value:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError as err:
        raise Http404("No such run.") from err


async def _history(access: Access, case_id: str, run_id: str | None, *,
                   raw: bool = False) -> temporal.CaseHistory:
    """history_for, but CaseNotFound is left to the caller (the export may hold the case)."""
    if not is_case_id(case_id):
        raise Http404(NOT_FOUND)
    try:
        history = await temporal.case_history(case_id, _run_id(run_id), raw=raw)
    except temporal.CaseUnreadable as err:
        # One this app cannot read is no case of its own to these pages; a live one is
        # still shown from Visibility (degraded).
        raise Http404(NOT_FOUND) from err
    visible(access, history.projection.state)
    return history


async def history_for(access: Access, case_id: str, run_id: str | None = None, *,
                      raw: bool = False) -> temporal.CaseHistory:
    """The case's event history, projected; 404 unless this user may see the case (judged
    by the queue of its latest projected state)."""
    try:
        return await _history(access, case_id, run_id, raw=raw)
    except temporal.CaseNotFound as err:
        raise Http404(NOT_FOUND) from err


async def exported_for(access: Access, case_id: str, run_id: str | None = None
                       ) -> exported.ExportedCase:
    """The case as the export keeps it, for a case whose execution is gone; 404 when the
    export does not hold it (or not that run), or this user may not see it."""
    if not is_case_id(case_id):
        raise Http404(NOT_FOUND)
    found = await asyncio.to_thread(exported.exported_case, case_id)
    if found is None or (run_id and _run_id(run_id) not in found.run_ids):
        raise Http404(NOT_FOUND)
    visible(access, found.state)
    return found


async def history_or_export(access: Access, case_id: str, run_id: str | None = None, *,
                            raw: bool = False
                            ) -> temporal.CaseHistory | exported.ExportedCase:
    """The History tab's source: the event history, or the export once the execution is
    gone. The same door as case_for, for a case's timeline."""
    try:
        return await _history(access, case_id, run_id, raw=raw)
    except temporal.CaseNotFound:
        return await exported_for(access, case_id, run_id)


def from_export(access: Access, found: exported.ExportedCase, run_id: str | None = None) -> Seen:
    state = visible(access, found.state)
    return Seen(found.case_id, state, temporal.CaseRow.from_state(state), ended=found.ended,
                run_id=run_id or "", source=EXPORT, exported_at=found.exported_at)


async def from_history(access: Access, case_id: str, run_id: str | None = None) -> Seen:
    """An ended case (or one run by id) as its history ends; from the export once the
    execution is gone."""
    try:
        projection = (await _history(access, case_id, run_id)).projection
    except temporal.CaseNotFound:
        return from_export(access, await exported_for(access, case_id, run_id), run_id)
    state = visible(access, projection.state)
    # A run asked for by id may be one the case continued from, or even the live one.
    live_elsewhere = bool(run_id) and state.status != "closed" and not projection.ended
    ended = projection.ended or ("This is the case as far as this run records it"
                                 if live_elsewhere else "This case has ended")
    return Seen(case_id, state, temporal.CaseRow.from_state(state), ended=ended,
                run_id=run_id or "", live_elsewhere=live_elsewhere, source=HISTORY)


async def degraded(access: Access, case_id: str, reason: str) -> Seen:
    """A live case no worker answers for: as its event history records it, or failing that
    (no worker has ever run it) as Temporal's visibility knows it."""
    state: CaseState | None = None
    try:
        state = (await history_for(access, case_id)).projection.state
    except (temporal.GatewayError, Http404):
        pass  # not yet run by any worker (no state in history), or hidden: judged below
    if state is not None:
        return Seen(case_id, state, temporal.CaseRow.from_state(state), degraded=reason,
                    source=HISTORY)
    row = await temporal.describe_case(case_id)
    if not access.can_see(row.queue):
        raise Http404(NOT_FOUND)
    return Seen(case_id, None, row, degraded=reason, source=VISIBILITY)


class SharedStates:
    """Live case states this process read by Query or was handed by an Update, for the
    refreshes a pushed change sets off: every open page of a changed case re-asks at once,
    and one Query per process answers them all (render once per user, Query once per
    change). A state is handed out only while the feed is healthy, has not resynced since,
    and knows no newer version of the case than the state; anything else is a Query, and
    concurrent Queries of one case are one."""

    def __init__(self, size: int = 2000) -> None:
        self.states: LRUCache[str, tuple[tuple[int, int], CaseState]] = LRUCache(maxsize=size)
        self.flights: SingleFlight[CaseState] = SingleFlight()
        self.queries = 0
        self.shared = 0

    @staticmethod
    def _feed() -> tuple[feed.Listener | None, tuple[int, int]]:
        listener = feed.healthy_listener()
        if listener is None:
            return None, (0, 0)
        return listener, (id(listener), listener.resyncs)

    def sharing(self) -> bool:
        """Can states be shared now (a healthy feed to judge them by)?"""
        return self._feed()[0] is not None

    def remember(self, state: CaseState) -> None:
        listener, era = self._feed()
        if listener is None:
            return
        found = self.states.get(state.case_id)
        if found is None or found[0] != era or found[1].version <= state.version:
            self.states[state.case_id] = (era, state)

    def _new_enough(self, case_id: str, state: CaseState) -> bool:
        """Is `state` as new as the feed has shown this process the case to be, with no
        resync since it was stored?"""
        listener, era = self._feed()
        known = listener.known_version(case_id) if listener is not None else None
        found = self.states.get(case_id)
        return (known is not None and state.version >= known
                and found is not None and found[0] == era)

    async def get(self, case_id: str) -> CaseState:
        found = self.states.get(case_id)
        if found is not None and self._new_enough(case_id, found[1]):
            self.shared += 1
            return found[1]
        flight = self.flights.pending(case_id)
        if flight is not None:  # a Query under way may be new enough: wait for it
            state = await asyncio.shield(flight)
            if self._new_enough(case_id, state):
                self.shared += 1
                return state
        self.queries += 1
        state = await self.flights.run(case_id, lambda: temporal.get_case(case_id))
        self.remember(state)
        return state


STATES = SharedStates()


async def case_for(access: Access, case_id: str, *, run_id: str | None = None,
                   live_only: bool = False, refresh: bool = False) -> Seen:
    """The case for this user: live, or from history when it ended or no worker answers,
    or from the case export when its execution is gone; 404 for ids that are malformed,
    unknown or outside the user's queues. `live_only` re-raises WorkerUnavailable instead
    of reading history (callers that must not wait).
    `refresh`: a live page re-asking after a change; it may share another page's Query
    (SharedStates). A page load, an action and an API read always ask the case itself."""
    if not is_case_id(case_id):
        raise Http404(NOT_FOUND)
    if run_id:
        # One particular run (an archived one, say): only its history can tell.
        return await from_history(access, case_id, run_id)
    try:
        state = await (STATES.get(case_id) if refresh else temporal.get_case(case_id))
    except temporal.CaseNotFound:
        # No execution: past retention or deleted. The export may still hold the case.
        return from_export(access, await exported_for(access, case_id))
    except temporal.CaseCompleted:
        return await from_history(access, case_id)
    except temporal.WorkerUnavailable as err:
        if live_only:
            raise
        return await degraded(access, case_id, err.message)
    return Seen(case_id, visible(access, state), temporal.CaseRow.from_state(state))
