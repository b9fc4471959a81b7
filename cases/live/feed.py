"""The change feed: one reader of Visibility for the whole deployment, many screens.

Whichever process holds the lease asks Visibility about once a second for the cases changed
since its watermark (`CaseUpdatedAt`, minus an overlap for Visibility's lag, so a row indexed
late still comes back) and appends each row to the change log (cases/live/log.py), which keeps
one entry per case version however often the overlap brings a row back. Every web process
follows the log (blocked in a read, so a change arrives as soon as it is written), keeps its
recent part in memory (cached List and Count answers are checked against it,
cases/live/answers.py; streams resume from it, cases/live/stream.py) and hands each change to its
subscribers. The cost in Visibility calls follows how often cases change, not how many people
watch.

The feed runs on a thread and event loop of its own in each process, so it neither depends on
nor blocks the loop that serves requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from cachetools import LRUCache
from django.conf import settings

from cases import store, temporal
from cases.live import log
from cases.live.log import Change, Gap, Position
from cases.store import wire
from cases.temporal.visibility import changed_since_query

logger = logging.getLogger(__name__)

KEY_WATERMARK = "feed:watermark"
KEY_POLLED = "feed:polled"  # wall time (a float) of the last poll that succeeded
LEASE = "feed-poller"
PAGE = 1000

__all__ = ["Change", "Feed", "Listener", "Poller", "Resync", "subscribe"]


@dataclass
class Resync:
    """This process may have missed changes (the log was replaced, or it fell behind): its
    subscribers re-read. `position` is where the listener goes on from."""

    reason: str
    position: Position | None = field(default=None, compare=False)


def _store() -> Any:
    return store.shared()


# --- the poller (one per deployment, by lease) ------------------------------------------------


class Poller:
    def __init__(self) -> None:
        self.log = log.current()
        self.lease = self.log.lease(LEASE)
        self.polls = 0

    def hold_lease(self) -> bool:
        return self.lease.hold()

    async def poll_once(self) -> int:
        """Append every case changed since the watermark to the log; returns how many were
        new (the log refuses a version it already holds)."""
        shared = _store()
        now = datetime.now(UTC)
        overlap = timedelta(seconds=settings.FEED_OVERLAP_SECONDS)
        watermark: datetime = wire.load(wire.TIME, shared.get(KEY_WATERMARK)) or now - overlap
        rows: list[temporal.CaseRow] = []
        token: str | None = None
        query = changed_since_query(watermark - overlap)
        while True:
            page = await temporal.list_cases(query, PAGE, token, priority=True)
            rows.extend(page.rows)
            token = page.next_page_token
            if not token:
                break
        # Every row returned was indexed before now: a Count asked after this already holds it.
        seen_at = time.time()
        self.polls += 1
        # Temporal answered: stamped before the rows are published, so the listeners that
        # read them find the poll that brought them (Listener.healthy).
        shared.set(KEY_POLLED, seen_at, timeout=None)
        published = 0
        newest = watermark
        # Rows come from any Temporal client: one that cannot be ordered or published is
        # skipped, so it never holds back the rows after it or the watermark. Within the
        # overlap it is asked for again on the next polls.
        for _key, row in sorted(_orderable(rows), key=lambda pair: pair[0]):
            if row.updated_at is not None and row.updated_at > newest:
                newest = row.updated_at
            try:
                # A store that fails here fails the poll, as it should: nothing was skipped.
                if self.log.append(row, seen_at) is not None:
                    published += 1
            except (wire.Malformed, TypeError, ValueError):
                logger.exception("feed: skipped the change of case %s", row.case_id)
        # Not past "now": a clock running ahead on a row must not hide the rows after it.
        shared.set(KEY_WATERMARK, wire.dump(wire.TIME, min(newest, now)), timeout=None)
        return published


def _orderable(rows: list[temporal.CaseRow]
               ) -> list[tuple[tuple[int, int, float], temporal.CaseRow]]:
    """The rows with their order keys, leaving out (with a log line) any that cannot be
    ordered."""
    out = []
    for row in rows:
        key = log.order_key(row)
        if key is not None:
            out.append((key, row))
        else:
            logger.warning("feed: skipped case %s: its version or update time is unreadable",
                           row.case_id)
    return out


# --- the listener (every process) ---------------------------------------------------------------


Take = Callable[[list["Change | Resync"], "Position | None"], None]


@dataclass(eq=False)
class _Subscriber:
    """A follower of this process's feed: `take` gets each read's events, in order, on the
    follower's own loop, with the position the read reached."""

    loop: asyncio.AbstractEventLoop
    take: Take


def _hand_out(subscribers: list[_Subscriber], events: list[Change | Resync],
              position: Position | None = None) -> None:
    """On the subscribers' own loop: a read's events, in order, to each of them."""
    for sub in subscribers:
        sub.take(events, position)


class Listener:
    """This process's follower of the log: the recent changes in memory and the subscribers."""

    def __init__(self) -> None:
        self.log = log.current()
        self.cursor: Position | None = None
        self.recent: deque[Change] = deque(maxlen=settings.FEED_RECENT)
        self.lock = threading.Lock()
        self.subscribers: set[_Subscriber] = set()
        self.last_read = 0.0  # monotonic time of the last successful read of the log
        self.polled_at = 0.0  # wall time of the feed's last successful poll, as last read
        self.resyncs = 0
        # The newest version each recently changed case had in the log (bounded).
        self.versions: LRUCache[str, int] = LRUCache(maxsize=4 * settings.FEED_RECENT)

    def read_once(self, block: float = 0.0) -> None:
        if self.cursor is None:
            # A process starting up takes the log's recent part: the tabs it inherits from
            # a restarted process resume from it instead of re-reading.
            head, changes = self.log.tail(settings.FEED_RECENT)
            self._remember(changes)
            self.cursor = head
        found = self.log.read(self.cursor, block)
        # Before what was read is handed out: a subscriber judges shared states by `healthy`
        # as it takes them, and the read that brought them is the freshest proof there is.
        # (Stamped after, the first change following a quiet spell was judged by the read
        # before it, one blocked read older.)
        polled = _store().get(KEY_POLLED)
        self.polled_at = float(polled) if isinstance(polled, int | float) else 0.0
        self.last_read = time.monotonic()
        logger.debug("feed: read after %s: %s", self.cursor,
                     found if isinstance(found, Gap) else (found[0], len(found[1])))
        if isinstance(found, Gap):
            head, _ = self.log.read(None)
            self._resync(found.reason, head)
        else:
            position, changes = found
            self._remember(changes)
            self.cursor = position
            self._emit(changes, position)

    def _remember(self, changes: list[Change]) -> None:
        with self.lock:
            for change in changes:
                self.recent.append(change)
                self.versions[change.case_id] = max(
                    change.row.version or 0, self.versions.get(change.case_id, 0))

    def _emit(self, events: list[Change | Resync], position: Position | None) -> None:
        if not events:
            return
        # One wake-up per event loop per read, however many subscribers it has.
        by_loop: dict[asyncio.AbstractEventLoop, list[_Subscriber]] = {}
        for sub in list(self.subscribers):
            by_loop.setdefault(sub.loop, []).append(sub)
        for loop, subs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(_hand_out, subs, events, position)

    def _resync(self, reason: str, head: Position) -> None:
        logger.warning("feed: resync (%s)", reason)
        self.resyncs += 1
        with self.lock:
            self.recent.clear()  # cached answers cannot be checked across the gap
            self.versions.clear()
        self.cursor = head
        self._emit([Resync(reason, head)], head)

    # What answers, lookups and streams ask.

    def healthy(self) -> bool:
        """Read recently, and fed recently: a store that answers says nothing of a poller
        that cannot reach Temporal, and answers checked against a feed that publishes
        nothing would miss every change. The lease holder stamps each poll that succeeded,
        about every FEED_INTERVAL_SECONDS; when it dies, another process polls once its
        lease lapses (FEED_LEASE_SECONDS). Quiet for FEED_STALE_SECONDS beyond that, the
        feed cannot poll. The stamp is another host's wall clock: answers.py already
        counts on the hosts' clocks agreeing to within a fraction of a second."""
        return not self.unhealthy()

    def unhealthy(self) -> str:
        """Why `healthy` is false ("" when it is true), for the log line of who gave up on it."""
        polled_within = settings.FEED_STALE_SECONDS + settings.FEED_LEASE_SECONDS
        if self.cursor is None:
            return "the change log not read yet"
        read_ago = time.monotonic() - self.last_read
        if read_ago >= settings.FEED_STALE_SECONDS:
            return f"the change log last read {read_ago:.1f} s ago"
        polled_ago = time.time() - self.polled_at
        if polled_ago >= polled_within:
            return f"Temporal last polled {polled_ago:.1f} s ago" if self.polled_at \
                else "Temporal not polled yet"
        return ""

    def known_version(self, case_id: str) -> int | None:
        """The newest version of the case this process has seen in the log, if any."""
        with self.lock:
            return self.versions.get(case_id)

    def position(self) -> Position | None:
        return self.cursor

    def since(self, position: Position | None) -> list[Change] | None:
        """The changes after `position`, or None when they are not all in memory any more
        (another epoch, older than the memory holds, or not yet read here)."""
        if position is None:
            return None
        epoch, seq = position
        with self.lock:
            cursor = self.cursor
            if cursor is None or epoch != cursor[0] or seq > cursor[1]:
                return None
            if self.recent and self.recent[0].seq > seq + 1:
                return None
            if not self.recent and cursor[1] > seq:
                return None
            return [c for c in self.recent if c.seq > seq]


# --- running it ---------------------------------------------------------------------------------


class Feed:
    def __init__(self) -> None:
        self.poller = Poller()
        self.listener = Listener()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tracerail-feed",
                                       daemon=True)
        self.tasks: list[asyncio.Future[Any]] = []

    def start(self) -> None:
        self.thread.start()
        for job in (self._poll_forever(), self._listen_forever()):
            self.tasks.append(asyncio.run_coroutine_threadsafe(job, self.loop))

    def stop(self, release: bool = False) -> None:
        async def shutdown() -> None:
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if release:
            with contextlib.suppress(Exception):
                self.poller.lease.release()

    async def _poll_forever(self) -> None:
        while True:
            try:
                if await asyncio.to_thread(self.poller.hold_lease):
                    await self.poller.poll_once()
            except Exception as err:  # the store or Temporal away: say so, try again
                logger.warning("feed: poll failed: %s", getattr(err, "message", err))
            await asyncio.sleep(settings.FEED_INTERVAL_SECONDS)

    async def _listen_forever(self) -> None:
        while True:
            try:
                # Blocked in the log's read: a change is handed out as soon as it is written.
                await asyncio.to_thread(self.listener.read_once, settings.FEED_LISTEN_SECONDS)
            except Exception as err:
                logger.warning("feed: reading the change log failed: %s", err)
                await asyncio.sleep(settings.FEED_LISTEN_SECONDS)


_feed: Feed | None = None
_feed_pid: int | None = None
_start_lock = threading.Lock()


def ensure_running() -> Feed:
    """This process's feed, started on first use (again after a fork)."""
    global _feed, _feed_pid
    with _start_lock:
        if _feed is None or _feed_pid != os.getpid():
            _feed, _feed_pid = Feed(), os.getpid()
            _feed.start()
        return _feed


def position_id() -> str:
    """Where this process's feed is now, as a stream id ("" before it has read the log): a page
    rendered now opens its stream from here, so whatever changes meanwhile reaches it."""
    running = current()
    return log.position_id(running.listener.position()) if running is not None else ""


def since(position: Position | None) -> list[Change] | None:
    """The changes after `position` this process still holds (Listener.since)."""
    running = current()
    return running.listener.since(position) if running is not None else None


def healthy_listener() -> Listener | None:
    """This process's listener, when it is healthy enough to judge shared states by."""
    found = current()
    listener = found.listener if found is not None else None
    return listener if listener is not None and listener.healthy() else None


def unhealthy() -> str:
    """Why this process has no healthy listener ("" when it has one)."""
    found = current()
    return found.listener.unhealthy() if found is not None else "no feed in this process"


def current() -> Feed | None:
    return _feed if _feed_pid == os.getpid() else None


def stop(release: bool = False) -> None:
    """For tests: stop this process's feed, as if the process died (its poll lease lapses
    before another feed polls) or, with `release`, as a clean shutdown that lets go of it."""
    global _feed, _feed_pid
    with _start_lock:
        if _feed is not None:
            _feed.stop(release)
        _feed, _feed_pid = None, None


def follow(take: Take) -> Callable[[], None]:
    """Hand every read's events to `take` on the caller's loop, from now on; returns what
    stops it. (The push streams' audiences, cases/live/audience.py, follow the feed.)"""
    listener = ensure_running().listener
    sub = _Subscriber(asyncio.get_running_loop(), take)
    listener.subscribers.add(sub)
    return lambda: listener.subscribers.discard(sub)


def position() -> Position | None:
    """Where this process's feed has read to (None before it has)."""
    running = current()
    return running.listener.position() if running is not None else None


class _Events:
    """Events one at a time; waiting for the next one may be cancelled (a timeout) without
    ending the subscription, unlike an async generator."""

    def __init__(self, queue: asyncio.Queue[Any]) -> None:
        self.queue = queue

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> Any:
        return await self.queue.get()


@contextlib.asynccontextmanager
async def subscribe() -> AsyncIterator[_Events]:
    """`async with feed.subscribe() as events: async for event in events: ...`"""
    queue: asyncio.Queue[Any] = asyncio.Queue()

    def take(events: list[Change | Resync], position: Position | None) -> None:
        for event in events:
            queue.put_nowait(event)

    stop = follow(take)
    try:
        yield _Events(queue)
    finally:
        stop()
