"""The change feed: one reader of Visibility for the whole deployment, many screens.

Whichever process holds the lease (in the shared store: Redis in production, local memory for
`make run`) asks Visibility about once a second for the cases changed since its watermark
(`CaseUpdatedAt`, minus an overlap for Visibility's lag, so a row indexed late still comes
back) and appends each case's new row to a log in the store. Every web process reads that
log a few times a second, keeps the recent part in memory (cached List and Count answers are
checked against it, cases/live/answers.py) and hands each change to its subscribers (the
Server-Sent-Event streams, cases/web/events.py). The cost in Visibility calls follows how often
cases change, not how many people watch.

Changes are deduplicated by case version, so the overlap never publishes a change twice. The
feed runs on a thread and event loop of its own in each process, so it neither depends on nor
blocks the loop that serves requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings

from cases import store, temporal
from cases.store import wire
from cases.temporal.visibility import changed_since_query

logger = logging.getLogger(__name__)

KEY_SEQ = "feed:seq"
KEY_EPOCH = "feed:epoch"
KEY_LEASE = "feed:lease"
KEY_WATERMARK = "feed:watermark"
KEY_POLLED = "feed:polled"  # wall time (a float) of the last poll that succeeded
PAGE = 1000


def _entry(seq: int) -> str:
    return f"feed:entry:{seq}"


def _known(case_id: str) -> str:
    return f"feed:row:{case_id}"


@dataclass
class Change:
    seq: int  # position in the deployment-wide feed
    case_id: str
    row: temporal.CaseRow  # the case as Visibility now shows it
    before: temporal.CaseRow | None  # the row the feed last published for it, if known
    seen_at: float = 0.0  # wall time the poller had it (it was indexed before then)

    def listed_before(self, matches: Callable[[temporal.CaseRow], bool | None]) -> bool | None:
        """Did the case match a filter before this change? Unknown to the feed: a case's
        first version was listed nowhere; any later one only the index can tell (None)."""
        if self.before is None:
            return False if (self.row.version or 0) <= 1 else None
        return matches(self.before)


@dataclass
class Resync:
    """This process may have missed changes (the store restarted, or it fell behind)."""

    reason: str


def _store() -> Any:
    return store.shared()


def _version(row: temporal.CaseRow) -> tuple[int, datetime]:
    return (row.version or 0, row.updated_at or datetime.min.replace(tzinfo=UTC))


# --- the poller (one per deployment, by lease) ------------------------------------------------


class Poller:
    def __init__(self) -> None:
        self.holder = f"{os.uname().nodename}:{os.getpid()}:{secrets.token_hex(4)}"
        self.polls = 0

    def hold_lease(self) -> bool:
        store = _store()
        ttl = settings.FEED_LEASE_SECONDS
        if store.add(KEY_LEASE, self.holder, timeout=ttl):
            logger.info("feed: %s holds the lease", self.holder)
            return True
        if store.get(KEY_LEASE) == self.holder:
            store.touch(KEY_LEASE, timeout=ttl)
            return True
        return False

    async def poll_once(self) -> int:
        """Publish every case changed since the watermark; returns how many."""
        store = _store()
        now = datetime.now(UTC)
        overlap = timedelta(seconds=settings.FEED_OVERLAP_SECONDS)
        watermark: datetime = wire.load(wire.TIME, store.get(KEY_WATERMARK)) or now - overlap
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
        published = 0
        newest = watermark
        # Rows come from any Temporal client: one that cannot be ordered or published is
        # skipped, so it never holds back the rows after it or the watermark. Within the
        # overlap it is asked for again on the next polls.
        for key, row in sorted(_orderable(rows), key=lambda pair: pair[0]):
            if row.updated_at is not None and row.updated_at > newest:
                newest = row.updated_at
            # A store that fails here fails the poll, as it should: nothing was skipped.
            before: temporal.CaseRow | None = wire.load(wire.ROW, store.get(_known(row.case_id)))
            try:
                if before is not None and _version(before) >= key:
                    continue  # already published (the overlap brings rows back)
            except (TypeError, AttributeError):
                before = None  # kept by an older version in a shape that does not compare
            try:
                _publish(store, row, before, seen_at)
            except Exception:
                logger.exception("feed: skipped the change of case %s", row.case_id)
                continue
            published += 1
        # Not past "now": a clock running ahead on a row must not hide the rows after it.
        store.set(KEY_WATERMARK, wire.dump(wire.TIME, min(newest, now)), timeout=None)
        store.set(KEY_POLLED, time.time(), timeout=None)
        return published


def _orderable(rows: list[temporal.CaseRow]
               ) -> list[tuple[tuple[int, datetime], temporal.CaseRow]]:
    """The rows with their order keys, leaving out (with a log line) any whose key would not
    compare with the others'."""
    out = []
    for row in rows:
        key = _version(row)
        if isinstance(key[0], int) and isinstance(key[1], datetime) and key[1].tzinfo:
            out.append((key, row))
        else:
            logger.warning("feed: skipped case %s: its version or update time is unreadable",
                           row.case_id)
    return out


def _publish(store: Any, row: temporal.CaseRow, before: temporal.CaseRow | None,
             seen_at: float) -> None:
    store.add(KEY_EPOCH, secrets.token_hex(8), timeout=None)
    store.add(KEY_SEQ, 0, timeout=None)
    seq = store.incr(KEY_SEQ)
    store.set(_entry(seq), wire.dump(wire.CHANGE, Change(seq, row.case_id, row, before, seen_at)),
              timeout=settings.FEED_RETENTION_SECONDS)
    store.set(_known(row.case_id), wire.dump(wire.ROW, row), timeout=settings.FEED_KNOWN_SECONDS)


# --- the listener (every process) ---------------------------------------------------------------


class _Subscriber:
    """One subscription. With `sift`, the queue holds one list per feed read of the
    (event, sift(event)) pairs whose sift answer is not empty: one wake-up per read however
    many of its changes concern the subscriber, and none when none do. `sift` runs once per
    event for every subscriber of the same `group` (500 screens of one queue cost one
    evaluation, not 500)."""

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 sift: Callable[[Change | Resync], Any] | None = None,
                 group: Hashable = None) -> None:
        self.loop = loop
        self.sift, self.group = sift, group
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=2000)

    def take(self, events: list[Change | Resync], memo: dict[Any, Any]) -> None:
        if self.sift is None:
            for event in events:
                self.offer(event)
            return
        batch = []
        for event in events:
            key = (event.seq if isinstance(event, Change) else id(event), self.group)
            if self.group is None or key not in memo:
                memo[key] = self.sift(event)
            if memo[key]:
                batch.append((event, memo[key]))
        if batch:
            self.offer(batch)

    def offer(self, item: Any) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            # A subscriber this far behind re-reads its screen instead.
            while not self.queue.empty():
                self.queue.get_nowait()
            resync = Resync("fell behind")
            self.queue.put_nowait(resync if self.sift is None else [(resync, self.sift(resync))])


def _hand_out(subscribers: list[_Subscriber], events: list[Change | Resync]) -> None:
    """On the subscribers' own loop: a read's events, in order, to each of them."""
    memo: dict[Any, Any] = {}
    for sub in subscribers:
        sub.take(events, memo)


class Listener:
    def __init__(self) -> None:
        self.cursor: int | None = None
        self.epoch: str | None = None
        self.recent: deque[Change] = deque(maxlen=settings.FEED_RECENT)
        self.lock = threading.Lock()
        self.subscribers: set[_Subscriber] = set()
        self.last_read = 0.0  # monotonic time of the last successful read of the store
        self.polled_at = 0.0  # wall time of the feed's last successful poll, as last read
        self.resyncs = 0
        self.gap_since: float | None = None  # since when an entry has been missing
        # The newest version each recently changed case had in the feed (bounded).
        self.versions: OrderedDict[str, int] = OrderedDict()

    def read_once(self) -> None:
        store = _store()
        seq = store.get(KEY_SEQ) or 0
        epoch = store.get(KEY_EPOCH)
        if self.cursor is None:
            # Start from now: what happened before is on the pages already.
            self.cursor, self.epoch = seq, epoch
        elif self.epoch is None and self.cursor == 0 and epoch is not None:
            self.epoch = epoch  # the feed's very first change: nothing was missed
        if epoch != self.epoch or seq < self.cursor:
            self.cursor, self.epoch = seq, epoch
            self._resync("the shared store was reset")
        elif seq > self.cursor:
            wanted = range(self.cursor + 1, seq + 1)
            found = store.get_many([_entry(n) for n in wanted])
            changes: list[Change] = []
            for n in wanted:
                # Unreadable (another schema, not ours) is missing: waited for, then resynced.
                change = wire.load(wire.CHANGE, found.get(_entry(n)))
                if change is None:
                    break
                changes.append(change)
            self._emit(changes)
            self.cursor += len(changes)
            if self.cursor < seq:
                # The poller takes a number, then writes the entry: a missing entry is most
                # likely being written. Still missing after FEED_GAP_SECONDS, it is lost
                # (expired, or its poller died between the two).
                now = time.monotonic()
                self.gap_since = self.gap_since or now
                if now - self.gap_since > settings.FEED_GAP_SECONDS:
                    self.cursor, self.gap_since = seq, None
                    self._resync("changes expired before this process read them")
            else:
                self.gap_since = None
        polled = store.get(KEY_POLLED)
        self.polled_at = float(polled) if isinstance(polled, int | float) else 0.0
        self.last_read = time.monotonic()

    def _emit(self, events: list[Change | Resync]) -> None:
        if not events:
            return
        with self.lock:
            for change in events:
                if isinstance(change, Change):
                    self.recent.append(change)
                    self.versions[change.case_id] = max(
                        change.row.version or 0, self.versions.get(change.case_id, 0))
                    self.versions.move_to_end(change.case_id)
            while len(self.versions) > 4 * settings.FEED_RECENT:
                self.versions.popitem(last=False)
        # One wake-up per event loop per read, however many subscribers it has.
        by_loop: dict[asyncio.AbstractEventLoop, list[_Subscriber]] = {}
        for sub in list(self.subscribers):
            by_loop.setdefault(sub.loop, []).append(sub)
        for loop, subs in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop has closed
                loop.call_soon_threadsafe(_hand_out, subs, events)

    def _resync(self, reason: str) -> None:
        logger.warning("feed: resync (%s)", reason)
        self.resyncs += 1
        with self.lock:
            self.recent.clear()  # cached answers cannot be checked across the gap
            self.versions.clear()
        self._emit([Resync(reason)])

    # What cases/live/answers.py asks.

    def healthy(self) -> bool:
        """Read recently, and fed recently: a store that answers says nothing of a poller
        that cannot reach Temporal, and answers checked against a feed that publishes
        nothing would miss every change. The lease holder stamps each poll that succeeded,
        about every FEED_INTERVAL_SECONDS; when it dies, another process polls once its
        lease lapses (FEED_LEASE_SECONDS). Quiet for FEED_STALE_SECONDS beyond that, the
        feed cannot poll. The stamp is another host's wall clock: answers.py already
        counts on the hosts' clocks agreeing to within a fraction of a second."""
        polled_within = settings.FEED_STALE_SECONDS + settings.FEED_LEASE_SECONDS
        return self.cursor is not None and \
            time.monotonic() - self.last_read < settings.FEED_STALE_SECONDS and \
            time.time() - self.polled_at < polled_within

    def known_version(self, case_id: str) -> int | None:
        """The newest version of the case this process has seen in the feed, if any."""
        with self.lock:
            return self.versions.get(case_id)

    def position(self) -> tuple[str | None, int | None]:
        return self.epoch, self.cursor

    def since(self, epoch: str | None, seq: int) -> list[Change] | None:
        """The changes after `seq`, or None when they are not all in memory any more."""
        with self.lock:
            if epoch != self.epoch:
                return None
            if self.recent and self.recent[0].seq > seq + 1:
                return None
            if not self.recent and self.cursor is not None and self.cursor > seq:
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

    def stop(self) -> None:
        async def shutdown() -> None:
            tasks = asyncio.all_tasks() - {asyncio.current_task()}
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

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
                await asyncio.to_thread(self.listener.read_once)
            except Exception as err:
                logger.warning("feed: reading the shared store failed: %s", err)
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


def current() -> Feed | None:
    return _feed if _feed_pid == os.getpid() else None


def stop() -> None:
    """For tests: stop this process's feed (as if the process died)."""
    global _feed, _feed_pid
    with _start_lock:
        if _feed is not None:
            _feed.stop()
        _feed, _feed_pid = None, None


class _Events:
    """The subscriber's events; waiting for the next one may be cancelled (a timeout, a
    closed stream) without ending the subscription, unlike an async generator."""

    def __init__(self, queue: asyncio.Queue[Any]) -> None:
        self.queue = queue

    def __aiter__(self) -> _Events:
        return self

    async def __anext__(self) -> Any:
        return await self.queue.get()


@contextlib.asynccontextmanager
async def subscribe(sift: Callable[[Change | Resync], Any] | None = None,
                    group: Hashable = None) -> AsyncIterator[_Events]:
    """`async with feed.subscribe() as events: async for event in events: ...`; with
    `sift`, `async for batch in events: for event, answer in batch: ...` (_Subscriber)."""
    listener = ensure_running().listener
    sub = _Subscriber(asyncio.get_running_loop(), sift, group)
    listener.subscribers.add(sub)

    try:
        yield _Events(sub.queue)
    finally:
        listener.subscribers.discard(sub)
