"""Per-user facts that wake open streams, from one watcher per process.

Two facts of a user change what their open streams must do: their access (queues, groups,
role, activation, password, a logout: the stream re-checks and may end) and their notices
(the nav bar's unread count). Whoever changes one names whose it is, by replacing that user's
token in the shared store (cases/store/versions.py: `access:v:<id>` by
cases/config/signals.py, `inbox:v:<id>` by cases/notify/inbox.py's `told`). This watcher
reads every watched user's tokens of both facts in one `get_many` every
STREAM_WATCH_SECONDS, and only for a user whose token moved does it do more: wake their
streams to re-check access, or read their unread counts (one query for all such users) and
hand each stream its count when it changed.

Without a shared store (`make run`: local memory, one per process) the worker's notices
cannot name anyone to this process, so the counts of all watched users are read every tick
instead, which is what one process's few users can afford.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import close_old_connections

from cases import store
from cases.config import dbconn
from cases.config.access_version import ACCESS
from cases.notify import inbox
from cases.store import versions

logger = logging.getLogger(__name__)


@dataclass
class _Access:
    loop: asyncio.AbstractEventLoop
    seen: str  # the version the stream's access was read at
    moved: asyncio.Event


@dataclass
class _Badge:
    loop: asyncio.AbstractEventLoop
    who: inbox.Reader
    hand: Callable[[int], Any]
    told: int | None = None  # the count last handed (None: none yet)


class Watcher:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.access: dict[int, dict[object, _Access]] = {}  # user id -> stream token -> ...
        self.badges: dict[int, dict[object, _Badge]] = {}
        self.tokens: dict[str, str] = {}  # inbox key -> the token its counts were read at
        self.thread: threading.Thread | None = None
        self.reads = 0  # store reads (one per tick with anyone watched)
        self.counted: list[int] = []  # users whose unread counts the last tick read

    # --- what a stream registers ----------------------------------------------------------

    def watch_access(self, user_id: int, version: str, moved: asyncio.Event) -> None:
        """Set `moved` (on the caller's loop) once the user's access version is not
        `version`."""
        with self.lock:
            self.access.setdefault(user_id, {})[moved] = _Access(
                asyncio.get_running_loop(), version, moved)
            self._start()

    def watch_inbox(self, user_id: int, token: object, hand: Callable[[int], Any],
                    visible_queues: Sequence[str] | None) -> None:
        """Call `hand(count)` on the caller's loop with the user's unread count (of what
        `visible_queues` lets them see, inbox.seen_by) whenever it changes, and at the first
        reading unless it is 0 (the page read its count as it loaded)."""
        with self.lock:
            self.badges.setdefault(user_id, {})[token] = _Badge(
                asyncio.get_running_loop(), inbox.reader(user_id, visible_queues), hand)
            self.tokens.pop(versions.key(inbox.INBOX, user_id), None)  # read it next tick
            self._start()

    def unwatch(self, user_id: int, token: object) -> None:
        with self.lock:
            for table in (self.access, self.badges):
                mine = table.get(user_id, {})
                mine.pop(token, None)
                if not mine:
                    table.pop(user_id, None)
            if user_id not in self.badges:
                self.tokens.pop(versions.key(inbox.INBOX, user_id), None)

    def _start(self) -> None:
        if self.thread is None or not self.thread.is_alive():
            self.thread = threading.Thread(target=self._run, name="tracerail-wakeups",
                                           daemon=True)
            self.thread.start()

    # --- one tick ---------------------------------------------------------------------------

    def check(self) -> None:
        with self.lock:
            access_users, badge_users = list(self.access), list(self.badges)
        if not access_users and not badge_users:
            return
        keys = [versions.key(ACCESS, u) for u in access_users] + \
            [versions.key(inbox.INBOX, u) for u in badge_users]
        found = versions.current(keys)
        self.reads += 1
        self._wake_access(access_users, found)
        if store.spans_processes():
            moved = [u for u in badge_users
                     if self.tokens.get(versions.key(inbox.INBOX, u)) !=
                     found[versions.key(inbox.INBOX, u)]]
        else:
            moved = badge_users
        self.counted = moved
        if moved:
            self._count(moved, found)

    def _wake_access(self, users: list[int], found: dict[str, str]) -> None:
        with self.lock:
            for user_id in users:
                now = found[versions.key(ACCESS, user_id)]
                for watched in list(self.access.get(user_id, {}).values()):
                    if watched.seen != now:
                        with contextlib.suppress(RuntimeError):  # its loop has closed
                            watched.loop.call_soon_threadsafe(watched.moved.set)

    def _count(self, users: list[int], found: dict[str, str]) -> None:
        with self.lock:
            readers = [b.who for u in users for b in self.badges.get(u, {}).values()]
        try:
            counts = inbox.unread_counts(readers)
        finally:
            dbconn.release()  # a pooled connection is not this thread's to keep between reads
        with self.lock:
            for user_id in users:
                # Read at this token: a notice told after the read moves it again.
                self.tokens[versions.key(inbox.INBOX, user_id)] = \
                    found[versions.key(inbox.INBOX, user_id)]
                for badge in list(self.badges.get(user_id, {}).values()):
                    count = counts.get(badge.who)
                    if count is None or count == badge.told or \
                            (badge.told is None and count == 0):
                        continue
                    badge.told = count
                    with contextlib.suppress(RuntimeError):
                        badge.loop.call_soon_threadsafe(badge.hand, count)

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(settings.STREAM_WATCH_SECONDS):
            try:
                self.check()
            except Exception as err:  # the store or database away: the next tick tries again
                logger.warning("wakeups: reading failed: %s", err)
                close_old_connections()


WATCHER = Watcher()
