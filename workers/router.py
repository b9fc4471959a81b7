"""One router workflow per queue (issue 17): it holds the rotation pointer and which open
cases each agent holds (issue 22), and answers cases' asks by Update. Sandbox-safe."""

from __future__ import annotations

from collections import Counter

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from . import routing
    from .model import RoutePick, RouterAsk, RouterHold, RouterState


def router_id(queue: str) -> str:
    return f"router-{queue}"


@workflow.defn(name="QueueRouter")
class QueueRouter:
    @workflow.init
    def __init__(self, state: RouterState) -> None:
        self._last = state.last
        # A router from before issue 22 hands over only counts of every case it had routed:
        # they are dropped, and its cases tell it who holds them as they next change.
        self._held = dict(state.held)

    @workflow.run
    async def run(self, state: RouterState) -> None:
        await workflow.wait_condition(
            lambda: workflow.info().is_continue_as_new_suggested()
            and workflow.all_handlers_finished())
        workflow.continue_as_new(RouterState(self._last, dict(self._held)))

    def _load(self) -> dict[str, int]:
        return dict(Counter(self._held.values()))

    @workflow.update
    def pick(self, ask: RouterAsk) -> RoutePick:
        agent, reason = routing.pick(ask.mode, ask.candidates, self._last, self._load())
        if agent:
            self._last = agent
            # Counted at once, so the next ask sees it; the case confirms or corrects it
            # (`hold`) once it has applied the pick.
            self._held[ask.case_id] = agent
        return RoutePick(agent, reason)

    @workflow.update
    def hold(self, note: RouterHold) -> None:
        """A case of this queue says who holds it now (its end, a reassignment, a manual
        assignment, a move): idempotent, so a retried or repeated note changes nothing."""
        if note.agent:
            self._held[note.case_id] = note.agent
        else:
            self._held.pop(note.case_id, None)

    @hold.validator
    def _check_hold(self, note: RouterHold) -> None:
        if not note.case_id:
            raise ValueError("a hold names its case")

    @workflow.signal
    def released(self, agent: str) -> None:
        """Sent by cases whose run began before issue 22 (they replay it): a count-down by
        agent alone, which the router's load by case id has no use for."""

    @workflow.query
    def state(self) -> RouterState:
        return RouterState(self._last, dict(self._held), self._load())
