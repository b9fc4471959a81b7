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
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import close_old_connections
from django.db.models import Count

from cases.config import dbconn
from cases.models import Notification

logger = logging.getLogger(__name__)


def unread_counts(user_ids: list[int]) -> dict[int, int]:
    rows = (Notification.objects.filter(user_id__in=user_ids, read_at__isnull=True)
            .values("user_id").annotate(n=Count("id")))
    counts = {int(r["user_id"]): int(r["n"]) for r in rows}
    return {u: counts.get(u, 0) for u in user_ids}


class InboxWatcher:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        # user id -> {a stream's token: (its loop, its hand-over, the count it was last told)}
        self.watching: dict[int, dict[object, tuple[asyncio.AbstractEventLoop,
                                                    Callable[[int], None], int | None]]] = {}
        self.thread: threading.Thread | None = None
        self.reads = 0

    def watch(self, user_id: int, token: object, hand: Callable[[int], Any]) -> None:
        """Call `hand(count)` on the caller's loop with the user's unread count whenever it
        changes (and at the first check, unless it is 0: the page read it as it loaded)."""
        with self.lock:
            self.watching.setdefault(user_id, {})[token] = (
                asyncio.get_running_loop(), hand, None)
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
            users = list(self.watching)
        if not users:
            return
        try:
            counts = unread_counts(users)
        finally:
            dbconn.release()  # a pooled connection is not this thread's to keep between reads
        self.reads += 1
        with self.lock:
            for user_id in users:
                streams = self.watching.get(user_id, {})
                for token, (loop, hand, told) in list(streams.items()):
                    count = counts.get(user_id, 0)
                    # The page read its count as it loaded: a first reading of 0 says
                    # nothing new (one that is not may be a notice in between, so it goes).
                    if count != told and not (told is None and count == 0):
                        streams[token] = (loop, hand, count)
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
