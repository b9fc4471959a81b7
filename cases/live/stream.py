"""One stream (one per open tab): what a resuming page missed, then what its audience hands
it, its keepalives and position marks, its re-checks, until the page goes away, the access
it serves changes or it reaches its age."""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

from django.conf import settings

from cases.live import audience, feed, log, wakeups
from cases.live.guards import OPEN, Ended, Guard, recheck
from cases.live.sse import KEEPALIVE, OPENING, REREAD, mark, message
from cases.live.watch import Watch


def replay(watch: Watch, missed: list[feed.Change]) -> bytes:
    """What a resuming page missed, answered for it alone (once per reconnect): rows and
    its case as they are; a list that changed is re-read by the page itself."""
    chunks, reread = [], False
    for change in missed:
        for name, data in watch.answer(change):
            if name in ("list", "counts"):
                reread = True
            else:
                chunks.append(message(name, data))
    if reread:
        chunks.append(message("list", ""))
    return b"".join(chunks)


async def stream(watch: Watch, guard: Guard | None = None,
                 resume: log.Position | None = None, resuming: bool = False
                 ) -> AsyncIterator[bytes]:
    """`resume` is the page's position (its last event id, or the feed's position when the page
    was rendered): what changed since is sent first, or, when this process no longer holds
    it, one re-read. `resuming` with no readable position is a re-read too."""
    feed.ensure_running()
    loop = asyncio.get_running_loop()
    keepalive = settings.EVENTS_KEEPALIVE_SECONDS
    recheck_every = settings.EVENTS_RECHECK_SECONDS
    started = last_sent = loop.time()
    ends_at = started + settings.EVENTS_MAX_AGE_SECONDS * (1 + random.uniform(0, 0.1))
    recheck_at = started + recheck_every
    if guard is not None:
        guard.watch(guard.version)
        OPEN.open(guard)
    # Joined first, then what was missed: nothing falls between the two, and a change in
    # both is sent once (the member skips what the replay sent).
    async with audience.AUDIENCES.join(watch) as member:
        if guard is not None:
            # The nav bar's unread count rides along (`event: inbox`), from one watcher a
            # second for every open stream of this process.
            def hand(count: int, queue: asyncio.Queue[bytes] = member.queue) -> None:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(message("inbox", str(count)))

            wakeups.WATCHER.watch_inbox(guard.user_id, guard, hand,
                                          watch.access.visible_queues)
        missed = feed.since(resume)
        opening = [OPENING]
        if missed is None and (resuming or resume is not None):
            opening.append(REREAD)
        elif missed:
            opening.append(replay(watch, missed))
            member.replayed = missed[-1].seq
        told = member.told
        opening.append(mark(told))
        yield b"".join(opening)
        upcoming: asyncio.Future[Any] = asyncio.ensure_future(member.queue.get())
        woken: asyncio.Future[Any] | None = None
        try:
            while True:
                deadline = min(last_sent + keepalive, ends_at)
                waiting: set[asyncio.Future[Any]] = {upcoming}
                if guard is not None:
                    deadline = min(deadline, recheck_at)
                    if woken is None:
                        woken = asyncio.ensure_future(guard.wake.wait())
                    waiting.add(woken)
                done, _ = await asyncio.wait(waiting, timeout=max(0.0, deadline - loop.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if loop.time() >= ends_at:
                    return  # the page reconnects as a fresh request
                if guard is not None and (woken in done or loop.time() >= recheck_at):
                    # Before anything more is sent: it may be for access that is gone.
                    if woken in done:
                        woken = None  # a timed re-check keeps waiting on the same wake-up
                    recheck_at = loop.time() + recheck_every
                    guard.wake.clear()
                    try:
                        await recheck(watch, guard)
                    except Ended as end:
                        if end.last:
                            yield end.last
                        return
                handed: list[bytes] = []
                if upcoming in done:  # and everything handed out meanwhile: one write
                    handed.append(upcoming.result())
                    while not member.queue.empty():
                        handed.append(member.queue.get_nowait())
                    upcoming = asyncio.ensure_future(member.queue.get())
                body = b"".join(handed)
                now = loop.time()
                if not body and now - last_sent >= keepalive:
                    body = KEEPALIVE
                if body and member.told is not None and member.told != told:
                    told = member.told  # all that was handed out is in this write
                    body += mark(told)
                if body:
                    last_sent = now
                    yield body
        finally:
            # The client went away (Django cancels the response) or the stream ended.
            upcoming.cancel()
            if woken is not None:
                woken.cancel()
            if guard is not None:
                guard.unwatch()
                wakeups.WATCHER.unwatch(guard.user_id, guard)
                OPEN.close(guard)
