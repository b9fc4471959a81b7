"""Taking turns on a busy case.

Temporal admits at most 10 Updates in flight per workflow run (history.maxInFlightUpdates) and
refuses the next. A refusal is not harmless: the server then drops the case's cached state,
aborting the Updates it had admitted but not yet accepted ("workflow update was aborted"),
so a crowd that keeps overshooting the limit makes almost no progress. Each process therefore
lets at most TEMPORAL_UPDATES_PER_CASE of its Updates into a case at once and halves that
after each refusal (other processes, API or bulk work share the 10) until the case is idle
here again: growing back would only find the limit again by being refused. A refused Update
waits a jittered, growing pause and queues again under the same update id, which Temporal
deduplicates, so no retry can apply a change twice.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import uuid
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

from django.conf import settings
from temporalio.api.enums.v1 import ResourceExhaustedCause
from temporalio.api.errordetails.v1 import ResourceExhaustedFailure
from temporalio.client import WorkflowHandle
from temporalio.service import RPCError, RPCStatusCode

from cases.temporal.types import CaseBusy
from workers.model import CaseState, Command

BUSY_MESSAGE = ("Many people are changing this case right now; nothing was applied. "
                "Your text is below; send it again.")
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0
# Waiting for a turn may use this share of TEMPORAL_UPDATE_TIMEOUT; the Update itself keeps
# the rest, so a turn that came late is not reported as a case that did not answer.
_TURN_SHARE = 0.75


class _Turns:
    """One case's turns in this process: a FIFO gate whose width adapts to refusals."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.active = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.holders = 0  # waiting or holding; at zero the entry goes, so idle cases cost nothing
        # Bumped by every cut: refusals of attempts sent before it carry no news.
        self.round = 0

    async def acquire(self) -> None:
        if self.active < self.width and not self.waiters:
            self.active += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self.waiters.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release()  # handed a turn just as the wait ended
            elif turn in self.waiters:
                self.waiters.remove(turn)
            raise

    def release(self) -> None:
        self.active -= 1
        while self.waiters and self.active < self.width:
            turn = self.waiters.popleft()
            if not turn.done():
                self.active += 1
                turn.set_result(None)

    def refused(self, sent_in: int) -> None:
        if sent_in == self.round:
            self.round += 1
            self.width = max(1, self.width // 2)


_turns: dict[tuple[int, str], _Turns] = {}


@asynccontextmanager
async def _case_turn(case_id: str, last_start: float) -> AsyncIterator[_Turns | None]:
    """A turn on the case, or CaseBusy when none comes by `last_start` (loop time)."""
    ceiling = settings.TEMPORAL_UPDATES_PER_CASE
    if ceiling <= 0:
        yield None
        return
    # Keyed by loop too: futures belong to the loop that waits on them.
    key = (id(asyncio.get_running_loop()), case_id)
    turns = _turns.get(key)
    if turns is None:
        turns = _turns[key] = _Turns(ceiling)
    turns.holders += 1
    try:
        try:
            async with asyncio.timeout_at(last_start):
                await turns.acquire()
        except TimeoutError:
            raise CaseBusy(BUSY_MESSAGE) from None
        try:
            yield turns
        finally:
            turns.release()
    finally:
        turns.holders -= 1
        if turns.holders == 0:
            del _turns[key]


def _no_turn(err: RPCError) -> bool:
    """Whether the case turned the Update away only for the Updates in flight on it; it was
    not accepted, so sending it again under the same id is safe."""
    if err.status == RPCStatusCode.UNAVAILABLE:
        # Dropped by the server with the case's cached state (module docstring): send again.
        return err.message.lower().rstrip(".") == "workflow update was aborted"
    if err.status != RPCStatusCode.RESOURCE_EXHAUSTED:
        return False
    for detail in err.grpc_status.details:
        failure = ResourceExhaustedFailure()
        if detail.Unpack(failure):
            # The same cause covers the in-flight payload size limit, which drains alike.
            return failure.cause == ResourceExhaustedCause.RESOURCE_EXHAUSTED_CAUSE_CONCURRENT_LIMIT
    return "in-flight updates" in err.message


async def update_in_turn(handle: WorkflowHandle[Any, Any], name: str, command: Command,
                          update_id: str | None) -> CaseState:
    """The Update, sent once the case has room for it, all within TEMPORAL_UPDATE_TIMEOUT."""
    budget = settings.TEMPORAL_UPDATE_TIMEOUT
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    last_start = deadline - budget * (1 - _TURN_SHARE)
    # Chosen before the first attempt: every retry must name the same Update.
    update_id = update_id or str(uuid.uuid4())
    for attempt in itertools.count():
        async with _case_turn(handle.id, last_start) as turns:
            sent_in = turns.round if turns else 0
            remaining = deadline - loop.time()
            if remaining < 0.05:
                # A loaded process got its turn past the deadline: not sent, nothing applied.
                raise CaseBusy(BUSY_MESSAGE)
            try:
                result: CaseState = await handle.execute_update(
                    name,
                    command,
                    id=update_id,
                    result_type=CaseState,
                    rpc_timeout=timedelta(seconds=remaining),
                )
            except RPCError as err:
                if not _no_turn(err):
                    raise
                if turns:
                    turns.refused(sent_in)
                refusal = err
            else:
                return result
        now = loop.time()
        if now >= last_start:
            raise CaseBusy(BUSY_MESSAGE) from refusal
        pause = random.uniform(0, min(_BACKOFF_MAX, _BACKOFF_FIRST * 2**attempt))
        await asyncio.sleep(min(pause, last_start - now))
    raise AssertionError("unreachable")
