"""Which thread a request's synchronous parts run on (the ASGI application's wrapper).

Django gives each request a thread of its own for its synchronous parts (asgiref's
ThreadSensitiveContext): a new thread per request, and since asgiref 3.13 a second one to join
it, each start holding the event loop until the new thread gets the GIL (a quarter of the
loop's busy time at 500 agents). Here the wrapper decides once, by path, where a request's
synchronous parts go, onto threads that live as long as the process:

- An ordinary request is assigned one of REQUEST_THREADS one-thread executors, the one with
  the fewest requests on it, for its whole life. Requests that share a thread take turns on
  it for their synchronous steps (the session, the ORM), as asgiref's own single shared thread
  does for all requests outside a context; while a request waits on Temporal it holds nothing.
  So a process runs at most REQUEST_THREADS threads and database or Redis connections for
  requests, however many requests are open (settings.REDIS_POOL_SIZE is sized from it), and
  nothing is ever handed back: an executor is owned by the pool alone and never shut down.
- A push stream (`/events/`) is a request that does not end: its few synchronous steps (the
  session at its start, its access re-checks) run on EVENTS_THREADS threads of its own kind,
  so hours-long streams never weigh on the pages' threads; the stream itself is plain async
  code on the event loop.

asgiref lets the caller own the executor of a ThreadSensitiveContext (it is not shut down on
exit), which is what both cases use: nothing here reaches into asgiref's own tables.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings


class RequestThreads:
    def __init__(self, app: Any, *, size: int | None = None, stream_threads: int | None = None,
                 stream_paths: tuple[str, ...] | None = None) -> None:
        self.app = app
        # A thread starts on an executor's first call, so idle ones cost nothing.
        self.executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"request-{n}")
            for n in range(size or settings.REQUEST_THREADS)]
        self.on = [0] * len(self.executors)  # open requests assigned to each
        self.lock = threading.Lock()
        self.stream_executors = [
            ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"tracerail-streams-{n}")
            for n in range(stream_threads or settings.EVENTS_THREADS)]
        self._next_stream: Iterator[int] = itertools.cycle(range(len(self.stream_executors)))
        self.stream_paths = stream_paths

    def is_stream(self, scope: dict[str, Any]) -> bool:
        if self.stream_paths is None:
            from django.urls import reverse  # the URLconf is ready by the first request

            self.stream_paths = (reverse("events"),)
        return scope.get("path") in self.stream_paths

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.is_stream(scope):
            executor = self.stream_executors[next(self._next_stream)]
            async with ThreadSensitiveContext(executor=executor):
                return await self.app(scope, receive, send)
        with self.assigned() as executor:
            async with ThreadSensitiveContext(executor=executor):
                await self.app(scope, receive, send)

    @contextmanager
    def assigned(self) -> Iterator[ThreadPoolExecutor]:
        """The least busy request thread, for this request's life."""
        with self.lock:
            n = min(range(len(self.on)), key=self.on.__getitem__)
            self.on[n] += 1
        try:
            yield self.executors[n]
        finally:
            with self.lock:
                self.on[n] -= 1
