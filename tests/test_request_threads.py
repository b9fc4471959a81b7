"""The request-thread pool (cases/web/request_threads.py) and a stream that gives its thread
back."""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async

from cases.web.events import _give_back_request_thread
from cases.web.request_threads import ReusedRequestThreads


def test_a_thread_given_back_by_a_stream_is_not_lent_again():
    async def stream(scope, receive, send):
        _give_back_request_thread()  # what an event stream does once its database work is done

    async def page(scope, receive, send):
        assert await sync_to_async(lambda: 42)() == 42

    async def main():
        pool = ReusedRequestThreads(stream)
        await pool({"type": "http"}, None, None)
        pool.app = page
        for _ in range(3):  # would raise "cannot schedule new futures after shutdown"
            await pool({"type": "http"}, None, None)
        assert all(not getattr(e, "_shutdown", False) for e in pool.idle)
        # Given back once, by the stream: the pool holds it once, not again at the stream's end.
        assert len(pool.idle) == len({id(e) for e in pool.idle}) == 1

    asyncio.run(main())
