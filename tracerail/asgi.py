from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import ThreadSensitiveContext
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracerail.settings")


class ReusedRequestThreads:
    """Django gives each request a thread of its own for its synchronous parts (asgiref's
    ThreadSensitiveContext): a new thread per request, and since asgiref 3.13 a second one
    to join it, each start holding the event loop until the new thread gets the GIL (a
    quarter of the loop's busy time at 500 agents). Here a request borrows a one-thread
    executor and gives it back: still one request at a time per thread, but the threads,
    and (on SQLite) their persistent database connections, are reused, as a WSGI server's
    are. PostgreSQL connections come from a pool per process instead (settings)."""

    KEEP_IDLE = 64

    def __init__(self, app: Any) -> None:
        self.app = app
        self.idle: list[ThreadPoolExecutor] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        executor = self.idle.pop() if self.idle else ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="request")
        try:
            # Django's own context inside this one finds it entered and leaves it be.
            async with ThreadSensitiveContext(executor=executor):
                await self.app(scope, receive, send)
        finally:
            if getattr(executor, "_shutdown", False):
                # An event stream gave its request's thread back (cases/web/events.py,
                # `_give_back_request_thread`, shut it down): a dead executor never goes back
                # to the pool, or every request that borrowed it would fail.
                pass
            elif len(self.idle) < self.KEEP_IDLE:
                self.idle.append(executor)
            else:
                executor.shutdown(wait=False)


application = ReusedRequestThreads(get_asgi_application())
