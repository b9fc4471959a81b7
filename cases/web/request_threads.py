"""Which thread a request's synchronous parts run on (the ASGI application's wrapper).

Django gives each request a thread of its own for its synchronous parts (asgiref's
ThreadSensitiveContext): a new thread per request, and since asgiref 3.13 a second one to join
it, each start holding the event loop until the new thread gets the GIL (a quarter of the
loop's busy time at 500 agents). Here the wrapper decides once, by path, where a request's
synchronous parts go:

- An ordinary request leases a one-thread executor from a pool and returns it when it ends:
  one request at a time per thread, the threads and (on SQLite) their persistent database
  connections reused, as a WSGI server's are. A lease has one owner and is returned exactly
  once, by the wrapper that made it; at most REQUEST_THREADS are out at once, and a request
  beyond that waits on the event loop for one (so what a process holds at once, database and
  Redis connections included, is bounded: settings.REDIS_POOL_SIZE is sized from it).
- A push stream (`/events/`) is a request that does not end: it never leases a thread. Its
  few synchronous steps (the session at its start, its access re-checks) run on one of
  EVENTS_THREADS shared threads that live as long as the process; the stream itself is plain
  async code on the event loop.

asgiref lets the caller own the executor of a ThreadSensitiveContext (it is not shut down on
exit), which is what both cases use: nothing here reaches into asgiref's own tables.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.conf import settings


class RequestThreads:
    # Idle threads kept beyond that are ended: a burst's threads do not all stay.
    KEEP_IDLE = 64

    def __init__(self, app: Any, *, size: int | None = None, stream_threads: int | None = None,
                 stream_paths: tuple[str, ...] | None = None) -> None:
        self.app = app
        self.size = size or settings.REQUEST_THREADS
        self.idle: list[ThreadPoolExecutor] = []
        self.out = 0  # leases not yet returned
        self.lock = threading.Lock()
        # A semaphore per event loop (an asyncio one belongs to the loop it first waits on;
        # the tests drive one application from several loops).
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())
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
        async with self.lease() as executor, ThreadSensitiveContext(executor=executor):
            await self.app(scope, receive, send)

    @asynccontextmanager
    async def lease(self) -> Any:
        """A thread of this request's own, until it ends."""
        loop = asyncio.get_running_loop()
        slots = self._slots.get(loop)
        if slots is None:
            slots = self._slots[loop] = asyncio.Semaphore(self.size)
        async with slots:
            with self.lock:
                executor = self.idle.pop() if self.idle else None
                self.out += 1
            if executor is None:
                executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="request")
            try:
                yield executor
            finally:
                with self.lock:
                    self.out -= 1
                    keep = len(self.idle) < self.KEEP_IDLE
                    if keep:
                        self.idle.append(executor)
                if not keep:
                    executor.shutdown(wait=False)
