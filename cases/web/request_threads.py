"""Threads for the synchronous parts of requests, reused (the ASGI application's wrapper).

Django gives each request a thread of its own for its synchronous parts (asgiref's
ThreadSensitiveContext): a new thread per request, and since asgiref 3.13 a second one to join
it, each start holding the event loop until the new thread gets the GIL (a quarter of the
loop's busy time at 500 agents). Here a request borrows a one-thread executor and gives it
back: still one request at a time per thread, but the threads, and (on SQLite) their
persistent database connections, are reused, as a WSGI server's are. PostgreSQL connections
come from a pool per process instead (settings).

A push stream is a request that does not end: it gives its thread back early (`give_back`),
once its own database work is done, instead of holding it for hours.
"""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext

_pool: contextvars.ContextVar[ReusedRequestThreads | None] = contextvars.ContextVar(
    "tracerail_request_threads", default=None)


class ReusedRequestThreads:
    KEEP_IDLE = 64

    def __init__(self, app: Any) -> None:
        self.app = app
        self.idle: list[ThreadPoolExecutor] = []
        self.given_back: set[int] = set()  # ids of borrowed executors returned early

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        executor = self.idle.pop() if self.idle else ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="request")
        token = _pool.set(self)
        try:
            # Django's own context inside this one finds it entered and leaves it be.
            async with ThreadSensitiveContext(executor=executor):
                await self.app(scope, receive, send)
        finally:
            _pool.reset(token)
            if id(executor) in self.given_back:
                self.given_back.discard(id(executor))
            else:
                self._return(executor)

    def _return(self, executor: ThreadPoolExecutor) -> None:
        if len(self.idle) < self.KEEP_IDLE:
            self.idle.append(executor)
        else:
            executor.shutdown(wait=False)


def give_back(executor: Any) -> None:
    """The request no longer needs its thread: another request may have it now (the caller
    sends this request's later synchronous work elsewhere). Outside the wrapper (tests,
    another server) the thread just ends."""
    pool = _pool.get()
    if pool is None or not isinstance(executor, ThreadPoolExecutor):
        executor.shutdown(wait=False)
        return
    pool.given_back.add(id(executor))
    pool._return(executor)
