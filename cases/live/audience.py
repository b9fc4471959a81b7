"""Audiences: the open streams of a process that watch alike, each change worked out once
for all of them (`Audience`), one stream's place in one (`Member`), and this process's
audiences (`Audiences`, `AUDIENCES`)."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import weakref
from collections.abc import AsyncIterator, Callable
from typing import Any

from django.conf import settings

from cases.live import case_pages, feed, log
from cases.live.sse import REREAD, message
from cases.live.watch import Watch


class Audience:
    """The open streams of this process that watch alike: the same interest (what `answer`
    depends on), the same list page. The one home of "does this change touch this list":
    each change is answered once for all of them, its row rendered once, and a changed list
    rendered once, at the audience's tick (EVENTS_LIST_DEBOUNCE_SECONDS after the first
    change waiting for it), from the shared, feed-checked answers. Each stream only sends
    what it is handed, with the position its page has now been told up to (`told`). That
    position never passes a change the page has not had: a list change waiting for the
    tick holds it just before that change until the list is sent. A change of a case page's
    case is pushed the same way, at once rather than at the tick: read once and rendered once
    per kind of page among the members (cases/live/case_pages.py)."""

    def __init__(self, key: tuple[Any, ...], watch: Watch, owner: Audiences) -> None:
        self.key, self.watch, self.owner = key, watch, owner
        self.loop = asyncio.get_running_loop()
        self.members: set[Member] = set()
        # "list" / "counts" waiting for the tick -> case id; "case" -> its newest version
        self.pending: dict[str, str] = {}
        self.resync = False
        self.latest: tuple[int, float] = (0, 0.0)  # newest change: (seq, when the feed saw it)
        self.at: log.Position | None = None  # handed out up to here
        self.held: log.Position | None = None  # told up to here while a list change waits
        self.tick: asyncio.TimerHandle | None = None
        self.flushing: asyncio.Task[None] | None = None
        self.unsubscribe: Callable[[], None] | None = None

    @property
    def told(self) -> log.Position | None:
        return self.held if self.held is not None else self.at

    def take(self, events: list[feed.Change | feed.Resync], position: log.Position | None
             ) -> None:
        """A feed read's events, on this loop: answered once, sent to every member."""
        chunks: list[bytes] = []
        last = 0
        for event in events:
            if isinstance(event, feed.Resync):
                # Missed changes: every page re-reads; the id moves on once it is told to.
                self.resync = True
                self.pending.setdefault("list", "")
                if self.held is None:
                    self.held = self.at
                self._schedule(0.0)
                continue
            self.owner.answered += 1
            epoch = position[0] if position is not None else None
            for name, data in self.watch.answer(event):
                if name in ("list", "counts"):
                    if not self.pending:
                        self._schedule(settings.EVENTS_LIST_DEBOUNCE_SECONDS)
                    if self.held is None:
                        self.held = (epoch, event.seq - 1)
                    self.pending.setdefault(name, data)
                elif name == "case":
                    if self.tick is None:
                        self._schedule(0.0)
                    if self.held is None:
                        self.held = (epoch, event.seq - 1)
                    self.pending["case"] = data
                else:
                    chunks.append(message(name, data))
            self.latest, last = (event.seq, event.seen_at), event.seq
        if position is not None:
            self.at = position
        self._send(chunks, last)

    def _schedule(self, delay: float) -> None:
        if self.tick is not None and delay > 0:
            return
        if self.tick is not None:
            self.tick.cancel()
        self.tick = self.loop.call_later(delay, self._start_flush)

    def _start_flush(self) -> None:
        self.tick = None
        if self.flushing is None or self.flushing.done():
            # In a context of its own: the one it would inherit may be a request's that has
            # ended (the feed's), whose thread hand-back refuses new work; a case push reads
            # the database (dbconn.read) as it renders.
            self.flushing = self.loop.create_task(self._flush(), context=contextvars.Context())
        else:  # one render at a time: the next tick follows this one
            self._schedule(settings.EVENTS_LIST_DEBOUNCE_SECONDS)

    async def _flush(self) -> None:
        pending, resync, self.pending, self.resync = self.pending, self.resync, {}, False
        if not pending:
            return
        members = list(self.members)
        cases: list[bytes] = [b""] * len(members)
        chunks: list[bytes] = []
        if resync:
            chunks.append(REREAD)
        else:
            if "case" in pending:
                cases = await case_pages.messages(self.watch.case_id, pending["case"],
                                                  [m.watch for m in members])
            if "list" in pending or "counts" in pending:
                what = "results" if "list" in pending else "counts"
                chunks.append(await self.watch.render(what, pending.get("list", "")))
                self.owner.rendered += 1
        if not self.pending:
            self.held = None
        told = self.told
        for member, case in zip(members, cases, strict=True):
            member.put([case, *chunks], told, 0)

    def _send(self, chunks: list[bytes], upto: int) -> None:
        told = self.told
        for member in list(self.members):
            member.put(chunks, told, upto)

    def close(self) -> None:
        if self.tick is not None:
            self.tick.cancel()
        if self.flushing is not None:
            self.flushing.cancel()
        if self.unsubscribe is not None:
            self.unsubscribe()


class Member:
    """One stream's place in its audience: what it is handed, waiting to be sent, and the
    position its page is told with the next write (a change that concerns nobody here
    moves it without waking the stream: the next keepalive carries it)."""

    def __init__(self, audience: Audience, watch: Watch, replayed: int = 0) -> None:
        self.audience, self.watch = audience, watch  # its own watch: whose page it is
        self.replayed = replayed  # the last change sent from this stream's own replay
        self.told = audience.told
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)

    def put(self, chunks: list[bytes], told: log.Position | None, upto: int) -> None:
        self.told = told
        if upto and upto <= self.replayed:
            return  # sent already, with the replay
        data = b"".join(chunks)
        if not data:
            return
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            # A page this far behind re-reads instead.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(REREAD)


class Audiences:
    """This process's audiences, by loop and key; an audience lives while it has members."""

    def __init__(self) -> None:
        # By loop (weakly: a loop that closed takes its audiences along), then by key.
        self.by: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                           dict[tuple[Any, ...], Audience]] = (
            weakref.WeakKeyDictionary())
        self.answered = 0  # changes answered, once per audience
        self.rendered = 0  # lists rendered, once per audience

    @contextlib.asynccontextmanager
    async def join(self, watch: Watch, replayed: int = 0) -> AsyncIterator[Member]:
        audiences = self.by.setdefault(asyncio.get_running_loop(), {})
        key = watch.audience
        audience = audiences.get(key)
        if audience is None:
            audience = audiences[key] = Audience(key, watch, self)
            audience.unsubscribe = feed.follow(audience.take)
            audience.at = feed.position()
        member = Member(audience, watch, replayed)
        audience.members.add(member)
        try:
            yield member
        finally:
            audience.members.discard(member)
            if not audience.members and audiences.get(key) is audience:
                del audiences[key]
                audience.close()


AUDIENCES = Audiences()
