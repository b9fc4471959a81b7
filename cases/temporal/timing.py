"""How long a request waited on Temporal, for its Server-Timing header
(cases/web/middleware.server_timing): the part of a slow answer that is the cluster's and
the worker's, told apart from ours. The calls a request makes at once (a list page's rows and
counts) each count in full, so the sum may pass the request's own time."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")


class Spent:
    def __init__(self) -> None:
        self.ms = 0.0
        self.calls = 0


# A request's own (a task started inside it copies the context, and with it this object).
_spent: ContextVar[Spent | None] = ContextVar("tracerail_temporal_spent", default=None)


def measure() -> Spent:
    """From now on, in this context, calls to Temporal add up here."""
    spent = Spent()
    _spent.set(spent)
    return spent


def timed(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    @functools.wraps(fn)
    async def run(*args: P.args, **kwargs: P.kwargs) -> T:
        spent = _spent.get()
        if spent is None:
            return await fn(*args, **kwargs)
        start = time.perf_counter()
        try:
            return await fn(*args, **kwargs)
        finally:
            spent.ms += (time.perf_counter() - start) * 1000
            spent.calls += 1

    return run
