"""Identical concurrent calls in one process share one call."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    """The first caller of a key starts the call; callers of the same key meanwhile await the
    same result (or exception). A caller that goes away (a cancelled request) does not cancel
    the call for the others. Per event loop: a task belongs to its loop."""

    def __init__(self) -> None:
        self._by: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                            dict[Hashable, asyncio.Task[Any]]] = (
            weakref.WeakKeyDictionary())

    def _flights(self) -> dict[Hashable, asyncio.Task[Any]]:
        return self._by.setdefault(asyncio.get_running_loop(), {})

    def pending(self, key: Hashable) -> asyncio.Task[T] | None:
        """The call under way for `key`, if any."""
        return self._flights().get(key)

    async def run(self, key: Hashable, call: Callable[[], Awaitable[T]]) -> T:
        flights = self._flights()
        task = flights.get(key)
        if task is None:
            task = asyncio.ensure_future(call())
            flights[key] = task

            def landed(done: asyncio.Task[Any]) -> None:
                if flights.get(key) is done:
                    del flights[key]
                if not done.cancelled():
                    done.exception()  # retrieved: its callers re-raise it, nobody else must

            task.add_done_callback(landed)
        return await asyncio.shield(task)
