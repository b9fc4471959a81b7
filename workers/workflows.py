"""The Case workflow: one execution per case, the system of record while the case lives
(docs/adr/ADR-002-workflow-as-system-of-record.md).

Sandbox-safe: imports only the pure model and rules (never Django). Every command is an
Update whose validator and handler both run `rules.decide`, so a refusal writes no history
and concurrent commands that all passed validation are still re-checked when applied.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RawValue, RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from . import rules
    from .activities import (
        check_escalation,
        deliver_notices,
        notify_sla_breach,
        queue_policy,
        route_case,
        tell_router,
    )
    from .model import (
        SYSTEM_ACTOR,
        ApplyMacro,
        AttributeValue,
        CaseInput,
        CaseState,
        Command,
        Delivered,
        EscalationAsk,
        Notice,
        NoticeBatch,
        QueuePolicy,
        RouteAsk,
        RouteHold,
        RoutePick,
        SetAttributes,
        SetCaseType,
        SlaBreachNotice,
    )
    from .router import router_id
    from .search_attributes import (
        CASE_AT_RISK,
        CASE_DUE_AT,
        ROW_MEMO_KEY,
        custom_updates,
        row_memo,
        updates_for,
    )


# At most this many notices in one delivery (one email per recipient tells them all), and
# this many characters of their text (at most 4 bytes each in UTF-8: well under Temporal's
# 2 MB limit on the activity's input).
NOTICES_PER_BATCH = 100
BATCH_CHARACTERS = 250_000


def _batch_size(notices: list[Notice]) -> int:
    """How many of the notices, oldest first, one delivery takes (always at least one)."""
    size = 0
    for taken, notice in enumerate(notices):
        size += len(notice.text) + len(notice.body)
        if taken == NOTICES_PER_BATCH or (taken and size > BATCH_CHARACTERS):
            return taken
    return len(notices)


def _with_command_updates(cls: type) -> type:
    """One Update per entry of rules.COMMANDS, each validated and applied by `rules.decide`:
    adding a command to the registry adds its Update, with nothing to write here."""
    for rule in rules.COMMANDS.values():
        setattr(cls, rule.update, _command_update(rule))
    return cls


def _command_update(rule: rules.CommandRule) -> Any:
    def handler(self: CaseWorkflow, cmd: Command) -> CaseState:
        return self._execute(cmd)

    def validator(self: CaseWorkflow, cmd: Command) -> None:
        self._check(cmd)

    # The SDK decodes the Update's argument by the handler's type hints (and checks that
    # the validator's match).
    handler.__annotations__ = {"cmd": rule.command, "return": CaseState}
    validator.__annotations__ = {"cmd": rule.command, "return": None}
    handler.__name__ = handler.__qualname__ = rule.update
    validator.__name__ = validator.__qualname__ = f"validate_{rule.update}"
    update = workflow.update(name=rule.update)(handler)
    update.validator(validator)
    return update


def _refusal(err: rules.RuleError) -> ApplicationError:
    # The type lets the gateway tell "stale" from other refusals; details carry the field.
    return ApplicationError(err.message, err.field or "", type=err.kind, non_retryable=True)


@workflow.defn(name="Case")
@_with_command_updates
class CaseWorkflow:
    @workflow.init
    def __init__(self, raw: RawValue) -> None:
        # Bad input fails the run (below) rather than __init__, which would only retry the task.
        self._invalid: rules.RuleError | None = None
        # The case type a case started without its queue's policy named (issue 25), to check
        # against the queue's answer; "" none.
        self._typing = ""
        # Decoded here, not by the SDK: input of the wrong shape from any client would fail
        # every workflow task ("Failed decoding arguments") and retry forever.
        try:
            inp = workflow.payload_converter().from_payload(raw.payload, CaseInput)
        except Exception as err:  # whatever the JSON holds, it is refused, never retried
            self._invalid = rules.RuleError(f"The case's input is not a case's input: {err}")
            inp = CaseInput(case_id="", actor="")
        self._input = inp
        # The queue's policy the case lives by (issue 22): given, or (cases before it) the
        # SLA and routing of its input until the case has asked its queue.
        self._policy = inp.policy or QueuePolicy(
            inp.new.queue if inp.new is not None else "", inp.sla, inp.route)
        # The queue whose policy the case is to ask for next ("" none), and the ask in flight:
        # the case goes on by the rules it has meanwhile (a Close still ends it).
        self._ask_queue = ""
        self._asking: asyncio.Task[None] | None = None
        try:
            info = workflow.info()
            rules.admit(inp, continued=info.continued_run_id is not None)
            case_id = rules.case_id_of(info.workflow_id)
            if inp.state is not None:
                self._state = replace(inp.state, case_id=case_id)
            else:
                assert inp.new is not None
                self._state = rules.open_case(
                    case_id, inp.new, inp.actor, self._policy.sla, workflow.now(),
                    inp.policy.case_types if inp.policy is not None else None,
                )
                if inp.policy is None:
                    self._ask_queue = self._state.queue
                    # Its type is checked once its queue answers (issue 25).
                    self._typing = inp.new.case_type
        except rules.RuleError as err:
            self._invalid = self._invalid or err
        # Notices waiting for the quiet period (issue 16), handed over on continue-as-new.
        self._outbox: list[Notice] = list(inp.pending_notices)
        self._noticed = 0  # notices added this run: a new one restarts the quiet period
        self._sending = False
        self._flush_now = False
        self._flush_next = False  # the last batch left notices over its bound
        # Why the case is to ask its queue's router for an agent next (issue 17); "" none.
        self._route_why = ""
        self._router_calls: set[asyncio.Task[None]] = set()
        # What the queue's router was last told of this case (issue 22): (queue, holder),
        # "" for nobody, None for not known (a pick whose answer was lost). A run starts
        # from "nobody", so each run tells the router who holds the case.
        self._router_told: tuple[str, str | None] = ("", "")
        self._router_notes = False  # this run tells the router (not one that began before)
        # One exchange with the routers at a time, so a pick and the note after it arrive
        # in that order.
        self._router_lock = asyncio.Lock()

    @workflow.run
    async def run(self, raw: RawValue) -> CaseState:
        if self._invalid is not None:
            raise _refusal(self._invalid)
        inp = self._input
        if inp.state is None and self._state.attributes:
            workflow.upsert_search_attributes(custom_updates(self._state.attributes))
        self._publish()
        notifier = None
        if inp.notify_quiet_seconds >= 0:
            notifier = asyncio.create_task(self._notifier(inp.notify_quiet_seconds))
        # Cases started before issue 22 replay without asking (no marker in their history).
        if self._ask_queue and not workflow.patched("queue-policy"):
            self._ask_queue = ""
        if self._ask_queue:
            self._asking = asyncio.create_task(self._ask_policy("arrived"))
        elif self._policy.route and inp.state is None and not self._state.assignee:
            self._route_why = "arrived"
        # Every case follows its holder for the routers: whether its queue routes may only be
        # known once the queue answers, or once it moves into one (`_holding`).
        if inp.state is not None:
            # Continued: the router may count this case already (the last run told it), so
            # its next note is sent whatever it says, even "nobody holds it".
            self._router_told = (self._holding()[0], None)
        router_notes = asyncio.create_task(self._tell_routers())
        while self._state.status != "closed":
            if self._invalid is not None:
                # Its queue refused the type it named: ended as a refused input is.
                raise _refusal(self._invalid)
            if self._ask_queue and (self._asking is None or self._asking.done()):
                self._asking = asyncio.create_task(self._ask_policy("escalated"))
            if self._route_why:
                await self._route()
            deadline = rules.next_deadline(self._state, inp.auto_close_seconds)
            wait = None if deadline is None else (deadline - workflow.now()).total_seconds()
            if wait is not None and wait <= 0:
                await self._on_deadline()
            elif not await self._changed_within(wait):
                await self._on_deadline()
            if self._state.status != "closed" and self._should_continue_as_new():
                # Handlers first; a delivery in flight finishes in this run too (its result
                # is its timeline line); what waits for the quiet period goes to the next.
                await self._settled()
                if self._ask_queue or (self._asking is not None and not self._asking.done()):
                    # The queue's answer, and the routing it may call for, are this run's.
                    if self._asking is not None:
                        await self._asking
                    continue
                if notifier is not None:
                    notifier.cancel()
                if router_notes is not None:
                    router_notes.cancel()
                workflow.continue_as_new(
                    CaseInput(
                        case_id=self._state.case_id,
                        actor=inp.actor,
                        policy=self._policy,
                        auto_close_seconds=inp.auto_close_seconds,
                        state=self._state,
                        history_event_limit=inp.history_event_limit,
                        notify_quiet_seconds=inp.notify_quiet_seconds,
                        pending_notices=list(self._outbox),
                    )
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
        if self._asking is not None:
            self._asking.cancel()  # closed before its queue answered: nothing to apply
        await workflow.wait_condition(lambda: not self._router_behind())
        if router_notes is not None:
            router_notes.cancel()
        # Closed: nothing more will follow, so what waits goes out now, before the run ends.
        self._flush_now = True
        if notifier is not None:
            await workflow.wait_condition(lambda: not self._outbox and not self._sending)
            notifier.cancel()
        return self._state

    # --- reads ---------------------------------------------------------------------------

    @workflow.query
    def get_case(self) -> CaseState:
        return self._state

    # Every command Update (claim, assign, comment, ...) is added below from rules.COMMANDS.

    # --- internals -----------------------------------------------------------------------

    def _check(self, cmd: Command) -> None:
        if self._invalid is not None:
            raise _refusal(self._invalid)
        try:
            rules.decide(self._state, cmd, workflow.now(), self._policy.sla)
        except rules.RuleError as err:
            raise _refusal(err) from err

    def _execute(self, cmd: Command) -> CaseState:
        now = workflow.now()
        try:
            # Decided again: updates validated in the same activation see the earlier ones now.
            effect = rules.decide(self._state, cmd, now, self._policy.sla)
        except rules.RuleError as err:
            raise _refusal(err) from err
        before = self._state
        self._state = rules.apply(self._state, effect, cmd.actor, now)
        self._notice(before, effect, cmd.actor)
        if self._policy.route and before.assignee and before.assignee != self._state.assignee:
            self._released(before)
        values = cmd.values if isinstance(cmd, SetAttributes) else \
            cmd.changes.attributes if isinstance(cmd, ApplyMacro) else {}
        if values:
            workflow.upsert_search_attributes(custom_updates({
                name: self._state.attributes.get(name, AttributeValue(attr.type, None))
                for name, attr in values.items()
            }))
        elif isinstance(cmd, SetCaseType):
            self._upsert_changed(before)
        self._publish()
        return self._state

    def _upsert_changed(self, before: CaseState) -> None:
        """A type's defaults fill values the case list filters by (issue 25): only those."""
        changed = {name: value for name, value in self._state.attributes.items()
                   if before.attributes.get(name) != value}
        if changed:
            workflow.upsert_search_attributes(custom_updates(changed))

    async def _on_deadline(self) -> None:
        now = workflow.now()
        breach = rules.sla_breach(self._state, now)
        if breach is not None:
            refused = await self._escalation_refused()
            if refused is not None:
                # The check took a while: the case may have been resolved meanwhile.
                now = workflow.now()
                breach = rules.sla_breach(self._state, now)
                if breach is None:
                    return
            before = self._state
            self._state = rules.apply(self._state, breach, SYSTEM_ACTOR, now)
            self._notice(before, breach, SYSTEM_ACTOR)
            # The queue's escalation (issue 17), in the same task: the projection applies it
            # right after the breach it finds by the activity scheduled below.
            escalate = rules.escalation(self._state, self._policy.sla, refused or "")
            if escalate is not None:
                before = self._state
                self._state = rules.apply(self._state, escalate, SYSTEM_ACTOR, now)
                self._notice(before, escalate, SYSTEM_ACTOR)
                if before.queue != self._state.queue:
                    if self._policy.route and before.assignee and \
                            before.assignee != self._state.assignee:
                        self._released(before)
                    # The new queue's rules: a case moved into a routed queue is routed there
                    # (issue 22); cases before it routed by their first queue's flag.
                    if workflow.patched("queue-policy"):
                        self._ask_queue = self._state.queue
                    elif self._policy.route and not self._state.assignee:
                        self._route_why = "escalated"
            self._publish()
            assert self._state.due_at is not None
            await workflow.execute_activity(
                notify_sla_breach,
                SlaBreachNotice(
                    case_id=self._state.case_id,
                    title=self._state.title,
                    queue=self._state.queue,
                    assignee=self._state.assignee,
                    due_at=self._state.due_at,
                ),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=5),
            )
            return
        risk = rules.sla_at_risk(self._state, now)
        if risk is not None:
            # CaseAtRisk upserted alone marks the moment in the event history, where the
            # history projection finds it (workers/projection.py); then the whole row.
            workflow.upsert_search_attributes([CASE_AT_RISK.value_set(True)])
            before = self._state
            self._state = rules.apply(self._state, risk, SYSTEM_ACTOR, now)
            self._notice(before, risk, SYSTEM_ACTOR)
            self._publish()
            return
        closing = rules.auto_close(self._state, now, self._input.auto_close_seconds)
        if closing is not None:
            self._state = rules.apply(self._state, closing, SYSTEM_ACTOR, now)
            self._publish()
            return
        # A timer can fire a hair before the deadline by the workflow clock; wait again.
        await workflow.sleep(0.05)

    async def _escalation_refused(self) -> str | None:
        """Why the breach may not give the case to the policy's person ("" when it may), by
        the access rule at the breach (config lives in Django: an activity); None when the
        policy names nobody, or the case breached before this check existed (its history
        has no marker, and replays as it ran)."""
        policy = self._policy.sla.escalation
        if policy is None or not policy.to_assignee or \
                not workflow.patched("escalation-access"):
            return None
        while True:
            queue = policy.to_queue or self._state.queue
            try:
                refused = await workflow.execute_activity(
                    check_escalation,
                    EscalationAsk(self._state.case_id, queue, policy.to_assignee),
                    start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=RetryPolicy(maximum_attempts=5))
            except ActivityError:
                # Unchecked is not allowed: the case goes to its queue, unheld (the
                # projection reads the failure the same way).
                workflow.logger.warning("escalation check of %s failed", self._state.case_id)
                refused = rules.ESCALATION_UNCHECKED
            # Moved by someone while it was asked: asked again for the queue it is in now
            # (the projection takes the last answer).
            if (policy.to_queue or self._state.queue) == queue:
                return refused

    async def _changed_within(self, seconds: float | None) -> bool:
        """Wait for a command to change the case (or for continue-as-new to be due);
        False when `seconds` passed first. A new version re-evaluates every timer."""
        seen = self._state.version
        try:
            await workflow.wait_condition(
                lambda: self._state.version != seen or self._should_continue_as_new()
                or bool(self._route_why) or self._invalid is not None,
                timeout=None if seconds is None else timedelta(seconds=seconds),
            )
        except TimeoutError:
            return False
        return True

    # --- the queue's policy (issue 22) -------------------------------------------------------

    async def _ask_policy(self, why: str) -> None:
        """Ask the case's queue what a case there gets (an activity: the answer is in the
        history, so a replay lives by the same rules); the case's times follow it, and a
        routed queue's router is asked for an agent (`why`: arrived, escalated)."""
        queue, self._ask_queue = self._ask_queue, ""
        try:
            policy = await workflow.execute_activity(
                queue_policy, queue, result_type=QueuePolicy,
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=5))
        except ActivityError:
            workflow.logger.warning("no policy for %s of %s", queue, self._state.case_id)
            if self._typing:
                # A type nobody could check is not taken on trust (issue 25).
                self._invalid = rules.RuleError(
                    f"The case type {self._typing!r} could not be checked with its queue.",
                    "case_type")
            return
        # CaseDueAt upserted alone marks the moment the case took the answer, where the
        # history projection takes it too: an Update in the same task may come before it.
        due = self._state.due_at
        workflow.upsert_search_attributes(
            [CASE_DUE_AT.value_set(due) if due else CASE_DUE_AT.value_unset()])
        self._policy = policy
        effect = rules.queue_rules(self._state, policy)
        if effect is not None:
            # Nobody is told: the case's times follow its queue's rules, nothing happened.
            self._state = rules.apply(self._state, effect, SYSTEM_ACTOR, workflow.now())
            self._publish()
        if self._typing:
            name, self._typing = self._typing, ""
            try:
                typed = rules.take_type(self._state, name, policy)
            except rules.RuleError as err:
                self._invalid = err
                return
            before = self._state
            self._state = rules.apply(self._state, typed, SYSTEM_ACTOR, workflow.now())
            self._upsert_changed(before)
            self._publish()
        if policy.route and self._state.is_open and not self._state.assignee:
            self._route_why = why

    # --- routing (issue 17) ----------------------------------------------------------------

    def _released(self, before: CaseState) -> None:
        """The case left an agent: an open case with nobody asks for someone."""
        assert before.assignee is not None
        if not self._tells_routers():  # a run from before issue 22 replays its old signal
            told = asyncio.create_task(self._tell_router(before.queue, before.assignee))
            self._router_calls.add(told)
            told.add_done_callback(self._router_calls.discard)
        if self._state.is_open and not self._state.assignee:
            self._route_why = "released"

    def _tells_routers(self) -> bool:
        return workflow.patched("router-holds")

    def _holding(self) -> tuple[str, str]:
        """(queue, who holds the case open in it): what the queue's router counts; ("", "")
        in a queue that does not route (by the policy the case has for the queue it is in)."""
        policy = self._policy
        if not policy.route or policy.queue not in ("", self._state.queue):
            return ("", "")
        return (self._state.queue,
                (self._state.assignee or "") if self._state.is_open else "")

    def _router_behind(self) -> bool:
        return self._router_notes and (
            self._router_told != self._holding() or self._router_lock.locked())

    async def _tell_routers(self) -> None:
        """Tells the router who holds the case whenever that changes: resolved, closed,
        reopened, reassigned, assigned by hand, moved to another queue. Only the latest truth
        is sent, so changes in a burst are one note."""
        self._router_notes = self._tells_routers()
        while self._router_notes:
            await workflow.wait_condition(lambda: self._router_told != self._holding())
            async with self._router_lock:
                want = self._holding()
                told_queue, told_agent = self._router_told
                notes = []
                if told_queue != want[0] and told_agent != "":
                    notes.append((told_queue, ""))  # it left that queue
                if told_queue == want[0] or want[1]:
                    notes.append(want)
                for queue, agent in notes:
                    if queue:  # "": a queue that does not route
                        await self._hold_note(queue, agent)
                self._router_told = want

    async def _hold_note(self, queue: str, agent: str) -> None:
        try:
            await workflow.execute_activity(
                tell_router, RouteHold(self._state.case_id, queue, agent, self._state.version),
                start_to_close_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_attempts=5))
        except ActivityError:
            # The router counts this case wrongly until the case changes again; the case
            # itself must not wait on that.
            workflow.logger.warning("router of %s not told of %s", queue,
                                    self._state.case_id)

    async def _tell_router(self, queue: str, agent: str) -> None:
        try:
            await workflow.get_external_workflow_handle(router_id(queue)).signal(
                "released", agent)
        except Exception:  # no router yet (nothing routed): nothing to count down
            workflow.logger.info("no router for %s", queue)

    async def _route(self) -> None:
        why, self._route_why = self._route_why, ""
        state = self._state
        async with self._router_lock:
            try:
                pick = await workflow.execute_activity(
                    route_case, RouteAsk(state.case_id, state.queue, why),
                    result_type=RoutePick, start_to_close_timeout=timedelta(seconds=30),
                    retry_policy=RetryPolicy(maximum_attempts=5))
            except ActivityError:
                workflow.logger.warning("routing %s failed", state.case_id)
                self._router_told = (state.queue, None)  # it may have picked someone
                return
            if pick.agent:
                self._router_told = (state.queue, pick.agent)  # the router counts it so
        effect = rules.routed(self._state, pick.agent, pick.reason)
        if effect is not None:
            now = workflow.now()
            before = self._state
            self._state = rules.apply(self._state, effect, SYSTEM_ACTOR, now)
            self._notice(before, effect, SYSTEM_ACTOR)
            self._publish()

    # --- notifications (issue 16) ---------------------------------------------------------

    async def _settled(self) -> None:
        """Until no handler runs and no delivery is in flight, both at once: other tasks
        may run between a condition coming true and this coroutine resuming, so it is
        checked again here, where nothing else runs before the caller's next await."""
        def quiet() -> bool:
            return (workflow.all_handlers_finished() and not self._sending
                    and not self._router_behind())

        while not quiet():
            await workflow.wait_condition(quiet)

    def _notice(self, before: CaseState, effect: rules.Effect, actor: str) -> None:
        if self._input.notify_quiet_seconds < 0:
            return
        notices = rules.notices_for(before, self._state, effect, actor)
        # Cases started before notifications replay without them (no marker in their history).
        if notices and workflow.patched("notices"):
            self._outbox.extend(notices)
            self._noticed += len(notices)

    async def _notifier(self, quiet: float) -> None:
        """Gathers a case's notices until `quiet` seconds pass without a new one (a durable
        timer), then delivers them as one batch: a burst of ten comments is one email."""
        while True:
            await workflow.wait_condition(lambda: bool(self._outbox))
            # A case that never goes quiet still tells people: at most ten quiet periods late.
            latest = workflow.now() + timedelta(seconds=quiet * 10)
            carried, self._flush_next = self._flush_next, False
            while not self._flush_now and not carried:
                seen = self._noticed
                wait = min(quiet, (latest - workflow.now()).total_seconds())
                if wait <= 0:
                    break
                try:
                    await workflow.wait_condition(
                        lambda seen=seen: self._noticed != seen or self._flush_now,
                        timeout=timedelta(seconds=wait))
                except TimeoutError:
                    break
            batch, self._outbox = self._outbox, []
            take = _batch_size(batch)
            if take < len(batch) and workflow.patched("bounded-batches"):
                # Only what one email can sensibly tell and one payload carry: the rest goes
                # at once in the next batch, not after another quiet period.
                batch, self._outbox = batch[:take], batch[take:]
                self._flush_next = True
            self._sending = True
            try:
                delivered = await self._deliver(batch)
            finally:
                self._sending = False
            # No new version: the case did not change, only what is known of its mail.
            marked = rules.mark_mailed(self._state, batch, delivered)
            if marked is not None:
                self._state = marked

    async def _deliver(self, notices: list[Notice]) -> list[Delivered]:
        state = self._state
        try:
            return await workflow.execute_activity(
                deliver_notices,
                NoticeBatch(case_id=state.case_id, title=state.title, queue=state.queue,
                            requester=state.requester, notices=notices),
                result_type=list[Delivered],
                # Room for a batch's emails, each up to a dozen SMTP steps of EMAIL_TIMEOUT;
                # the activity starts no send it could not finish within it.
                start_to_close_timeout=timedelta(minutes=15),
                # A worker that died mid-delivery is noticed this soon, not after the whole
                # timeout: a live one beats every few seconds, during each send too, so no
                # retry starts beside a send still in flight (longer than EMAIL_TIMEOUT, one
                # SMTP step, between beats).
                heartbeat_timeout=timedelta(seconds=30),
                # Each retry skips what the ledger has (sent, being sent or refused) and
                # sends what a temporary failure held back: exactly once per recipient.
                retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=60),
                                         maximum_attempts=20),
            )
        except ActivityError:
            # Mail that cannot go out after twenty tries must not hold the case up; the
            # failure is in the history, and the worker's log says why.
            workflow.logger.warning("notices of %s not delivered", state.case_id)
            return []

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        limit = self._input.history_event_limit
        return info.is_continue_as_new_suggested() or (
            limit is not None and info.get_current_history_length() >= limit
        )

    def _publish(self) -> None:
        workflow.upsert_search_attributes(updates_for(self._state))
        workflow.upsert_memo({ROW_MEMO_KEY: row_memo(self._state)})
