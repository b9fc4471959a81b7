"""The in-app badge over the push stream: each open stream is handed an `inbox` event with
its user's unread count whenever that count changes.

Like the access versions' Watcher (cases/config/access_version.py): per process, one thread
and ONE query a second for the users of all open streams, not one per stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Count, Q, QuerySet

from cases.config import dbconn
from cases.models import Notification

logger = logging.getLogger(__name__)

# Who reads: a user id and the queues they may see (None: every queue), as Access names them.
Reader = tuple[int, tuple[str, ...] | None]


def reader(user_id: int, visible_queues: Sequence[str] | None) -> Reader:
    return user_id, None if visible_queues is None else tuple(sorted(visible_queues))


def seen_by(who: Reader) -> Q:
    """What a person may see of their notices: the one rule every list, count and mark-read
    asks. A notice keeps the queue its case was in when told, and shows only while its reader
    can see that queue (the access rule, applied to the queue told). A notice told before
    notices kept their queue (queue "", migration 0010) names no queue anyone was checked
    against, so only those who see every queue see it."""
    user_id, queues = who
    mine = Q(user_id=user_id)
    return mine if queues is None else mine & Q(queue__in=queues)


def notices_of(who: Reader) -> QuerySet[Notification]:
    return Notification.objects.filter(seen_by(who))


def unread_counts(readers: Sequence[Reader]) -> dict[Reader, int]:
    """Each reader's unread count by `seen_by`, in one query for all of them."""
    readers = list(dict.fromkeys(readers))
    asked = {f"r{i}": Count("id", filter=seen_by(who))
             for i, who in enumerate(readers) if who[1] != ()}
    found: dict[str, Any] = {}
    if asked:
        found = Notification.objects.filter(
            read_at__isnull=True, user_id__in={u for u, _ in readers}).aggregate(**asked)
    return {who: int(found.get(f"r{i}") or 0) for i, who in enumerate(readers)}


class InboxWatcher:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        # user id -> {a stream's token: (its reader, its loop, its hand-over, the count it was
        # last told)}; a stream reads under the access it was opened with (it ends when that
        # access changes, cases/web/events.py).
        self.watching: dict[int, dict[object, tuple[Reader, asyncio.AbstractEventLoop,
                                                    Callable[[int], None], int | None]]] = {}
        self.thread: threading.Thread | None = None
        self.reads = 0

    def watch(self, user_id: int, token: object, hand: Callable[[int], Any],
              visible_queues: Sequence[str] | None) -> None:
        """Call `hand(count)` on the caller's loop with the user's unread count (of what
        `visible_queues` lets them see) whenever it changes (and at the first check, unless
        it is 0: the page read it as it loaded)."""
        with self.lock:
            self.watching.setdefault(user_id, {})[token] = (
                reader(user_id, visible_queues), asyncio.get_running_loop(), hand, None)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="tracerail-inbox",
                                               daemon=True)
                self.thread.start()

    def unwatch(self, user_id: int, token: object) -> None:
        with self.lock:
            mine = self.watching.get(user_id, {})
            mine.pop(token, None)
            if not mine:
                self.watching.pop(user_id, None)

    def check(self) -> None:
        with self.lock:
            readers = [who for streams in self.watching.values()
                       for who, *_ in streams.values()]
        if not readers:
            return
        try:
            counts = unread_counts(readers)
        finally:
            dbconn.release()  # a pooled connection is not this thread's to keep between reads
        self.reads += 1
        with self.lock:
            for streams in self.watching.values():
                for token, (who, loop, hand, told) in list(streams.items()):
                    count = counts.get(who)
                    if count is None:
                        continue  # watched since the read: the next check tells it
                    # The page read its count as it loaded: a first reading of 0 says
                    # nothing new (one that is not may be a notice in between, so it goes).
                    if count != told and not (told is None and count == 0):
                        streams[token] = (who, loop, hand, count)
                        with contextlib.suppress(RuntimeError):  # its loop has closed
                            loop.call_soon_threadsafe(hand, count)

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(settings.INBOX_WATCH_SECONDS):
            try:
                self.check()
            except Exception as err:  # the database away: the next second tries again
                logger.warning("inbox: reading unread counts failed: %s", err)
                close_old_connections()


WATCHER = InboxWatcher()
