"""The case rebuilt from its event history, by the workflow's own rules.

ADR-002 (docs/adr/ADR-002-workflow-as-system-of-record.md) makes the event history the audit
trail: every accepted Update is in it with its input, and every timer the workflow acted on
left a trace (the SLA-breach notification it scheduled, the completion it wrote). Folding
those events through `rules.decide`/`rules.apply` — the functions the live workflow runs —
yields the case as it was after any event, for the History tab, time travel and completed
cases, with no worker and no second copy of the rules.

Workflow time is the start time of the workflow task that ran the code, so the projector
tracks WorkflowTaskStarted events and uses exactly what `workflow.now()` returned.

Each Update's recorded result is a free cross-check: where the projection and the record
disagree (rules changed under a running case, say) the record wins and the entry says so.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from temporalio.api.history.v1 import HistoryEvent
from temporalio.converter import PayloadConverter

from . import rules
from .model import (
    SYSTEM_ACTOR,
    CaseInput,
    CaseState,
    Command,
    Delivered,
    Notice,
    NoticeBatch,
    QueuePolicy,
    RoutePick,
    SlaPolicy,
)

# The workflow's Update names and the command each carries (one registry: rules.COMMANDS).
UPDATE_COMMANDS: dict[str, type[Command]] = {
    name: rule.command for name, rule in rules.COMMANDS.items()}
SLA_ACTIVITY = "notify_sla_breach"
NOTIFY_ACTIVITY = "deliver_notices"
ROUTE_ACTIVITY = "route_case"
CHECK_ACTIVITY = "check_escalation"
POLICY_ACTIVITY = "queue_policy"
# The workflow upserts this search attribute alone at the moment a case becomes at risk.
AT_RISK_MARK = "CaseAtRisk"
# ... and this one alone at the moment it takes its queue's policy (issue 22).
POLICY_MARK = "CaseDueAt"


@dataclass
class Entry:
    """One thing that happened to the case, in business words, and the case right after it."""

    seq: int  # position in the whole timeline, across runs
    run_id: str
    event_id: int
    at: datetime
    actor: str
    kind: str
    detail: str
    text: str
    state: CaseState | None
    # The projection disagreed with what the workflow recorded; the record is shown.
    diverged: bool = False

    @property
    def note(self) -> str:
        """The detail worth a second line: what `text` does not already say."""
        return "" if says_detail(self.kind, self.actor) else self.detail


@dataclass
class Projection:
    case_id: str
    entries: list[Entry] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)  # oldest first
    last_event_ids: dict[str, int] = field(default_factory=dict)
    # The workflow execution ended outside the case's own rules (terminated, failed...).
    ended: str = ""
    # Earlier runs whose history is gone (past retention, not archived).
    truncated: bool = False
    # The SLA policy the case lives by as the history ends (its calendar: the export's
    # working-time durations); None when no run started as a case.
    sla: SlaPolicy | None = None

    @property
    def state(self) -> CaseState | None:
        for entry in reversed(self.entries):
            if entry.state is not None:
                return entry.state
        return None

    def state_after(self, run_id: str, event_id: int) -> Entry | None:
        """The latest entry at or before raw event `event_id` of run `run_id`."""
        if not 1 <= event_id <= self.last_event_ids.get(run_id, 0):
            return None
        order = self.run_ids.index(run_id)
        chosen = None
        for entry in self.entries:
            position = self.run_ids.index(entry.run_id)
            if position < order or (position == order and entry.event_id <= event_id):
                chosen = entry
            else:
                break
        return chosen


def workflow_time(event: HistoryEvent) -> datetime:
    # The SDK's own expression for workflow.now(), so rounding to microseconds agrees.
    return datetime.fromtimestamp(event.event_time.ToNanoseconds() / 1e9, UTC)


def says_detail(kind: str, actor: str) -> bool:
    """Does the timeline line for this kind already spell out its detail? Its words decide
    (a {detail} or {words} in them); otherwise the detail is shown beneath the line."""
    if kind == "opened" or (kind == "closed" and actor == SYSTEM_ACTOR):
        return True  # the title heads the page; the auto-close line says why in its own words
    text = rules.WORDING.get(kind, "")
    return "{detail}" in text or "{words}" in text


class Projector:
    """Feeds runs oldest first; keeps the state and the timeline between them."""

    def __init__(self, case_id: str, converter: PayloadConverter, *,
                 check_each: bool = False) -> None:
        self.convert = converter
        # Decoding every recorded result costs ~10x the whole fetch on long cases (each
        # carries the whole case), so by default only the last one is checked; see consistent().
        self.check_each = check_each
        self._unchecked: tuple[Any, int] | None = None
        self.result = Projection(case_id)
        self.state: CaseState | None = None
        self.now: datetime | None = None
        self.sla = SlaPolicy()
        self.quiet = 0
        self._opening: CaseInput | None = None
        self._pending: dict[str, Command] = {}
        self._admitted: dict[int, Any] = {}
        # Scheduled deliver_notices, by event id, with the notices each carried.
        self._deliveries: dict[int, list[Notice]] = {}
        self._routings: set[int] = set()  # scheduled route_case, by event id
        self._picks: list[RoutePick] = []  # routers' answers not yet seen by a task
        self._checks: set[int] = set()  # scheduled check_escalation, by event id
        # The last check's answer, for the breach that follows it (None: no check ran).
        self._refused: str | None = None

        # The type a case started without its queue's policy named, taken with the queue's
        # first answer as the workflow takes it (issue 25).
        self._typing = ""
        self._asks: set[int] = set()  # scheduled queue_policy, by event id
        self._policies: list[QueuePolicy] = []  # queues' answers not yet seen by a task

    def feed(self, run_id: str, events: Iterable[HistoryEvent]) -> None:
        self.result.run_ids.append(run_id)
        self._run_id = run_id
        for event in events:
            self._event(event)
            self.result.last_event_ids[run_id] = event.event_id

    # --- events --------------------------------------------------------------------------

    def _event(self, event: HistoryEvent) -> None:
        kind = event.WhichOneof("attributes")
        if kind == "workflow_execution_started_event_attributes":
            self._started(event)
        elif kind == "workflow_task_started_event_attributes":
            self.now = workflow_time(event)
            if self._opening is not None:
                self._open(event)
            for pick in self._picks:
                if self.state is not None:
                    self._system(event, rules.routed(self.state, pick.agent, pick.reason), None)
            self._picks = []
        elif kind == "workflow_execution_update_admitted_event_attributes":
            self._admitted[event.event_id] = (
                event.workflow_execution_update_admitted_event_attributes.request)
        elif kind == "workflow_execution_update_accepted_event_attributes":
            attrs = event.workflow_execution_update_accepted_event_attributes
            request = attrs.accepted_request
            if not request.input.name and attrs.accepted_request_sequencing_event_id:
                request = self._admitted.pop(attrs.accepted_request_sequencing_event_id, request)
            command_type = UPDATE_COMMANDS.get(request.input.name)
            if command_type is not None and request.input.args.payloads:
                self._pending[request.meta.update_id] = self.convert.from_payloads(
                    request.input.args.payloads, [command_type])[0]
        elif kind == "workflow_execution_update_completed_event_attributes":
            self._update_completed(event)
        elif kind == "activity_task_scheduled_event_attributes":
            activity = event.activity_task_scheduled_event_attributes.activity_type.name
            if activity == SLA_ACTIVITY and self.state is not None:
                self._system(event, rules.sla_breach(self.state, self._now(event)), None)
                # The queue's escalation follows in the same workflow task (issue 17).
                self._system(event, rules.escalation(self.state, self.sla,
                                                     self._refused or ""), None)
                self._refused = None
            elif activity == NOTIFY_ACTIVITY:
                self._deliveries[event.event_id] = self._batch(event)
            elif activity == ROUTE_ACTIVITY:
                self._routings.add(event.event_id)
            elif activity == CHECK_ACTIVITY:
                self._checks.add(event.event_id)

            elif activity == POLICY_ACTIVITY:
                self._asks.add(event.event_id)
        elif kind == "upsert_workflow_search_attributes_event_attributes":
            fields = event.upsert_workflow_search_attributes_event_attributes
            if set(fields.search_attributes.indexed_fields) == {AT_RISK_MARK} and self.state:
                self._system(event, rules.sla_at_risk(self.state, self._now(event)), None)
            elif set(fields.search_attributes.indexed_fields) == {POLICY_MARK} and \
                    self._policies:
                # As the workflow: the case lives by the answer, its times follow it.
                policy = self._policies.pop(0)
                self.sla = self.result.sla = policy.sla
                if self.state is not None:
                    self._system(event, rules.queue_rules(self.state, policy), None)
                    name, self._typing = self._typing, ""
                    if name:
                        try:
                            self._system(event, rules.take_type(self.state, name, policy), None)
                        except rules.RuleError:
                            pass  # the run failed on it; its failure event says so
        elif kind == "activity_task_completed_event_attributes":
            attrs = event.activity_task_completed_event_attributes
            if attrs.scheduled_event_id in self._deliveries:
                self._notified(event, attrs.result.payloads,
                               self._deliveries[attrs.scheduled_event_id])
            elif attrs.scheduled_event_id in self._checks:
                self._refused = self.convert.from_payloads(attrs.result.payloads, [str])[0]
            elif attrs.scheduled_event_id in self._routings:
                # Applied by the workflow task that next starts (it sees the result then).
                self._picks.append(
                    self.convert.from_payloads(attrs.result.payloads, [RoutePick])[0])
            elif attrs.scheduled_event_id in self._asks:
                self._policies.append(
                    self.convert.from_payloads(attrs.result.payloads, [QueuePolicy])[0])
        elif kind in ("activity_task_failed_event_attributes",
                      "activity_task_timed_out_event_attributes"):
            attrs = getattr(event, kind)
            if attrs.scheduled_event_id in self._checks:
                self._refused = rules.ESCALATION_UNCHECKED  # as the workflow reads it
        elif kind == "workflow_execution_completed_event_attributes":
            payloads = event.workflow_execution_completed_event_attributes.result.payloads
            recorded = self.convert.from_payloads(payloads, [CaseState])[0] if payloads else None
            if self.state is not None and self.state.status != "closed":
                closing = rules.auto_close(self.state, self._now(event), self.quiet)
                self._system(event, closing, recorded)
        elif kind in _ENDINGS:
            self._ended(event, kind)

    def _started(self, event: HistoryEvent) -> None:
        attrs = event.workflow_execution_started_event_attributes
        try:
            inp: CaseInput = self.convert.from_payloads(attrs.input.payloads, [CaseInput])[0]
        except Exception:  # not a case's input: the run was refused; its failure says so
            return
        self.sla, self.quiet = (inp.policy.sla if inp.policy else inp.sla), inp.auto_close_seconds
        self.result.sla = self.sla
        if inp.state is None or not attrs.continued_execution_run_id:
            # A first run given a state is refused like any input no rule allows (_open).
            self._opening = inp
            return
        # Continued as new: the new run starts from the state the last one handed over.
        if self.state is None:
            self.result.truncated = True
            self._add(event, SYSTEM_ACTOR, "truncated", "", inp.state, at=workflow_time(event))
        elif self.state != inp.state:
            self._add(event, SYSTEM_ACTOR, "continued", "", inp.state, diverged=True,
                      at=workflow_time(event))
        self.state = inp.state

    def _open(self, event: HistoryEvent) -> None:
        inp, self._opening = self._opening, None
        assert inp is not None and self.now is not None
        try:
            rules.admit(inp, continued=False)
            assert inp.new is not None
            # Named by its workflow id, as the workflow names itself (rules.case_id_of).
            case_id = rules.case_id_of(self.result.case_id)
            self.state = rules.open_case(case_id, inp.new, inp.actor, self.sla, self.now,
                                         inp.policy.case_types if inp.policy else None)
            if inp.policy is None:
                self._typing = inp.new.case_type
        except rules.RuleError:
            return  # the run failed on its input; its failure event says so
        self._add(event, inp.actor, "opened", self.state.title, self.state)

    def _update_completed(self, event: HistoryEvent) -> None:
        attrs = event.workflow_execution_update_completed_event_attributes
        command = self._pending.pop(attrs.meta.update_id, None)
        if not attrs.outcome.HasField("success") or command is None or self.state is None:
            return  # refused inside the handler: nothing changed
        payloads = attrs.outcome.success.payloads
        now = self._now(event)
        try:
            effect: rules.Effect | None = rules.decide(self.state, command, now, self.sla)
        except rules.RuleError:
            effect = None
        recorded = None
        if payloads and (self.check_each or effect is None):
            recorded = self.convert.from_payloads(payloads, [CaseState])[0]
        self._apply(event, effect, command.actor, recorded)
        if payloads and recorded is None:
            self._unchecked = (payloads, len(self.result.entries) - 1)

    def consistent(self) -> bool:
        """Does the last Update's recorded result equal its projection? Each result carries
        the whole case, so agreement there means the steps before it agreed too."""
        if self._unchecked is None:
            return True
        payloads, index = self._unchecked
        recorded = self.convert.from_payloads(payloads, [CaseState])[0]
        return bool(self.result.entries[index].state == recorded)

    def _system(self, event: HistoryEvent, effect: rules.Effect | None,
                recorded: CaseState | None) -> None:
        self._apply(event, effect, SYSTEM_ACTOR, recorded)

    def _apply(self, event: HistoryEvent, effect: rules.Effect | None, actor: str,
               recorded: CaseState | None) -> None:
        if self.state is None:
            return
        now = self._now(event)
        if effect is None:
            if recorded is None:
                return
            # The rules of today refuse what the workflow accepted then: show the record.
            self.state = recorded
            self._add(event, actor, "changed", "", recorded, diverged=True)
            return
        projected = rules.apply(self.state, effect, actor, now)
        diverged = recorded is not None and recorded != projected
        self.state = recorded if diverged and recorded is not None else projected
        detail = effect.detail
        if effect.kind in ("comment", "internal note") and self.state.comments:
            detail = self.state.comments[-1].body[:200]
        self._add(event, actor, effect.kind, detail, self.state, diverged=diverged)

    def _batch(self, event: HistoryEvent) -> list[Notice]:
        """The notices a delivery was scheduled with; none when they cannot be read (the
        marks they would give are then missing, not the rest of the history)."""
        payloads = event.activity_task_scheduled_event_attributes.input.payloads
        try:
            return self.convert.from_payloads(payloads, [NoticeBatch])[0].notices
        except Exception:  # any shape a client wrote is skipped, never fatal here
            return []

    def _notified(self, event: HistoryEvent, payloads: Any, notices: list[Notice]) -> None:
        """Who a delivery told, and how: a line of its own; then a line for each email the
        mail server refused for good. The case changes only in what is known of its mail:
        the public comments it emailed are marked, as the workflow marks them."""
        sent: list[Delivered] = (
            self.convert.from_payloads(payloads, [list[Delivered]])[0] if payloads else [])
        if self.state is not None:
            self.state = rules.mark_mailed(self.state, notices, sent) or self.state
        if any(d.channels for d in sent):
            self._add(event, SYSTEM_ACTOR, "notified", told(sent), self.state,
                      at=workflow_time(event))
        for who, reply in refused(sent).items():
            self._add(event, SYSTEM_ACTOR, "mail refused", f"{who} was refused: {reply}",
                      self.state, at=workflow_time(event))

    def _ended(self, event: HistoryEvent, kind: str) -> None:
        attrs = getattr(event, kind)
        reason = getattr(attrs, "reason", "")
        if not reason and kind == "workflow_execution_failed_event_attributes":
            reason = attrs.failure.message
        detail = f"The case's workflow was {_ENDINGS[kind]}" + (f": {reason}" if reason else "")
        self.result.ended = detail
        self._add(event, getattr(attrs, "identity", "") or "Temporal", "ended", detail,
                  self.state, at=workflow_time(event))

    # --- helpers -------------------------------------------------------------------------

    def _now(self, event: HistoryEvent) -> datetime:
        return self.now or workflow_time(event)

    def _add(self, event: HistoryEvent, actor: str, kind: str, detail: str,
             state: CaseState | None, *, diverged: bool = False,
             at: datetime | None = None) -> None:
        self.result.entries.append(Entry(
            seq=len(self.result.entries) + 1,
            run_id=self._run_id,
            event_id=event.event_id,
            at=at or self._now(event),
            actor=actor,
            kind=kind,
            detail=detail,
            text=rules.line_for(kind, detail, actor, self.quiet),
            state=state,
            diverged=diverged,
        ))


def told(sent: list[Delivered]) -> str:
    """'alice (email, in-app), grace@example.com (email)': each person once, in order."""
    by: dict[str, list[str]] = {}
    for d in sent:
        if not d.channels:
            continue
        channels = by.setdefault(d.recipient, [])
        channels += [c for c in d.channels if c not in channels]
    return ", ".join(f"{who} ({', '.join(sorted(how))})" for who, how in by.items())


def refused(sent: list[Delivered]) -> dict[str, str]:
    """Whose email the mail server refused, with its reply: each person once."""
    return {d.recipient: d.refused for d in sent if d.refused}


_ENDINGS = {
    "workflow_execution_terminated_event_attributes": "terminated",
    "workflow_execution_failed_event_attributes": "failed",
    "workflow_execution_timed_out_event_attributes": "timed out",
    "workflow_execution_canceled_event_attributes": "cancelled",
}


def project(case_id: str, runs: Iterable[tuple[str, Iterable[HistoryEvent]]],
            converter: PayloadConverter) -> Projection:
    """The case's timeline from its runs' histories, oldest run first."""
    runs = [(run_id, list(events)) for run_id, events in runs]
    projector = Projector(case_id, converter)
    for run_id, events in runs:
        projector.feed(run_id, events)
    if projector.consistent():
        return projector.result
    # Today's rules disagree with the record somewhere: check every step; the record wins.
    projector = Projector(case_id, converter, check_each=True)
    for run_id, events in runs:
        projector.feed(run_id, events)
    return projector.result
