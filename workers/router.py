"""One router workflow per queue (issue 17): it holds the rotation pointer and how many
routed cases each agent holds, and answers cases' asks by Update. Sandbox-safe."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from . import routing
    from .model import RoutePick, RouterAsk, RouterState


def router_id(queue: str) -> str:
    return f"router-{queue}"


@workflow.defn(name="QueueRouter")
class QueueRouter:
    @workflow.init
    def __init__(self, state: RouterState) -> None:
        self._last = state.last
        self._load = dict(state.load)

    @workflow.run
    async def run(self, state: RouterState) -> None:
        await workflow.wait_condition(
            lambda: workflow.info().is_continue_as_new_suggested()
            and workflow.all_handlers_finished())
        workflow.continue_as_new(RouterState(self._last, self._load))

    @workflow.update
    def pick(self, ask: RouterAsk) -> RoutePick:
        agent, reason = routing.pick(ask.mode, ask.candidates, self._last, self._load)
        if agent:
            self._last = agent
            self._load[agent] = self._load.get(agent, 0) + 1
        return RoutePick(agent, reason)

    @workflow.signal
    def released(self, agent: str) -> None:
        """A case left `agent` (resolved, reassigned, moved): one fewer for least-loaded."""
        if self._load.get(agent, 0) > 0:
            self._load[agent] -= 1

    @workflow.query
    def state(self) -> RouterState:
        return RouterState(self._last, dict(self._load))
