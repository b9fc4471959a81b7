"""The Case workflow: one execution per case, the system of record while the case lives
(docs/adr/ADR-002-workflow-as-system-of-record.md).

Sandbox-safe: imports only the pure model and rules (never Django). Every command is an
Update whose validator and handler both run `rules.decide`, so a refusal writes no history
and concurrent commands that all passed validation are still re-checked when applied.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError

with workflow.unsafe.imports_passed_through():
    from . import rules
    from .activities import notify_sla_breach
    from .model import (
        SYSTEM_ACTOR,
        AttributeValue,
        CaseInput,
        CaseState,
        Command,
        SetAttributes,
        SlaBreachNotice,
    )
    from .search_attributes import ROW_MEMO_KEY, custom_updates, row_memo, updates_for


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
    def __init__(self, inp: CaseInput) -> None:
        self._input = inp
        # Bad input fails the run (below) rather than __init__, which would only retry the task.
        self._invalid: rules.RuleError | None = None
        try:
            case_id = rules.case_id_of(workflow.info().workflow_id)
            if inp.state is not None:
                self._state = replace(inp.state, case_id=case_id)
            else:
                if inp.new is None:
                    raise rules.RuleError("A case needs its fields.")
                self._state = rules.open_case(
                    case_id, inp.new, inp.actor, inp.sla, workflow.now()
                )
        except rules.RuleError as err:
            self._invalid = err

    @workflow.run
    async def run(self, inp: CaseInput) -> CaseState:
        if self._invalid is not None:
            raise _refusal(self._invalid)
        if inp.state is None and self._state.attributes:
            workflow.upsert_search_attributes(custom_updates(self._state.attributes))
        self._publish()
        while self._state.status != "closed":
            deadline = rules.next_deadline(self._state, inp.auto_close_seconds)
            wait = None if deadline is None else (deadline - workflow.now()).total_seconds()
            if wait is not None and wait <= 0:
                await self._on_deadline()
            elif not await self._changed_within(wait):
                await self._on_deadline()
            if self._state.status != "closed" and self._should_continue_as_new():
                await workflow.wait_condition(workflow.all_handlers_finished)
                workflow.continue_as_new(
                    CaseInput(
                        case_id=self._state.case_id,
                        actor=inp.actor,
                        sla=inp.sla,
                        auto_close_seconds=inp.auto_close_seconds,
                        state=self._state,
                        history_event_limit=inp.history_event_limit,
                    )
                )
        await workflow.wait_condition(workflow.all_handlers_finished)
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
            rules.decide(self._state, cmd, workflow.now(), self._input.sla)
        except rules.RuleError as err:
            raise _refusal(err) from err

    def _execute(self, cmd: Command) -> CaseState:
        now = workflow.now()
        try:
            # Decided again: updates validated in the same activation see the earlier ones now.
            effect = rules.decide(self._state, cmd, now, self._input.sla)
        except rules.RuleError as err:
            raise _refusal(err) from err
        self._state = rules.apply(self._state, effect, cmd.actor, now)
        if isinstance(cmd, SetAttributes):
            workflow.upsert_search_attributes(custom_updates({
                name: self._state.attributes.get(name, AttributeValue(attr.type, None))
                for name, attr in cmd.values.items()
            }))
        self._publish()
        return self._state

    async def _on_deadline(self) -> None:
        now = workflow.now()
        breach = rules.sla_breach(self._state, now)
        if breach is not None:
            self._state = rules.apply(self._state, breach, SYSTEM_ACTOR, now)
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
        closing = rules.auto_close(self._state, now, self._input.auto_close_seconds)
        if closing is not None:
            self._state = rules.apply(self._state, closing, SYSTEM_ACTOR, now)
            self._publish()
            return
        # A timer can fire a hair before the deadline by the workflow clock; wait again.
        await workflow.sleep(0.05)

    async def _changed_within(self, seconds: float | None) -> bool:
        """Wait for a command to change the case (or for continue-as-new to be due);
        False when `seconds` passed first. A new version re-evaluates every timer."""
        seen = self._state.version
        try:
            await workflow.wait_condition(
                lambda: self._state.version != seen or self._should_continue_as_new(),
                timeout=None if seconds is None else timedelta(seconds=seconds),
            )
        except TimeoutError:
            return False
        return True

    def _should_continue_as_new(self) -> bool:
        info = workflow.info()
        limit = self._input.history_event_limit
        return info.is_continue_as_new_suggested() or (
            limit is not None and info.get_current_history_length() >= limit
        )

    def _publish(self) -> None:
        workflow.upsert_search_attributes(updates_for(self._state))
        workflow.upsert_memo({ROW_MEMO_KEY: row_memo(self._state)})
