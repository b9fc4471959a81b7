"""Whose stream it is, and how many they hold: a stream's claim to its session (`Guard`),
the per-process limits (`OpenStreams`), and the re-check of session and access while a
stream is open (`recheck`)."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from importlib import import_module
from typing import Any

from django.conf import settings
from django.urls import reverse
from django.utils.http import urlencode

from cases.config import dbconn
from cases.config.reading import resolve_session
from cases.live import wakeups
from cases.live.sse import REREAD, message
from cases.live.watch import Watch

logger = logging.getLogger(__name__)


DISPLACED = ("Live updates stopped in this tab: newer tabs of yours took them over. "
             "Reload the page to resume them here.")


class Guard:
    """A stream's claim to its session: who it serves, the access version it was checked at,
    and an Event set when that may no longer hold (the version moved, or a newer stream
    displaced this one)."""

    def __init__(self, session_key: str, user_id: int, version: str) -> None:
        self.session_key, self.user_id, self.version = session_key, user_id, version
        self.loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        self.displaced = False

    def watch(self, version: str) -> None:
        """Wake when the user's access version is no longer `version`."""
        self.version = version
        wakeups.WATCHER.watch_access(self.user_id, version, self.wake)

    def unwatch(self) -> None:
        wakeups.WATCHER.unwatch(self.user_id, self.wake)

    def displace(self) -> None:
        self.displaced = True
        self.loop.call_soon_threadsafe(self.wake.set)


class OpenStreams:
    """This process's open streams by session and by user: a new one over either limit
    displaces the oldest. Per process because a stream's cost (memory, a slot on the loop) is
    the process's; a deployment's limit is this times its web processes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by: dict[tuple[str, Any], OrderedDict[Guard, None]] = {}

    def open(self, guard: Guard) -> None:
        limits = ((("session", guard.session_key), settings.EVENTS_MAX_PER_SESSION),
                  (("user", guard.user_id), settings.EVENTS_MAX_PER_USER))
        with self.lock:
            for key, limit in limits:
                held = self.by.setdefault(key, OrderedDict())
                held[guard] = None
                while len(held) > limit:
                    oldest, _ = held.popitem(last=False)
                    oldest.displace()

    def close(self, guard: Guard) -> None:
        with self.lock:
            for key in (("session", guard.session_key), ("user", guard.user_id)):
                held = self.by.get(key)
                if held is not None:
                    held.pop(guard, None)
                    if not held:
                        del self.by[key]

    def count(self, kind: str, who: Any) -> int:
        with self.lock:
            return len(self.by.get((kind, who), ()))


OPEN = OpenStreams()


def _session_store() -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore


class Ended(Exception):
    """The stream must end, after sending `last`."""

    def __init__(self, last: bytes = b"") -> None:
        self.last = last


async def recheck(watch: Watch, guard: Guard) -> None:
    """The session and access again, as a fresh request would read them. Raises Ended when
    the stream must not go on: signed out, or the access it serves changed (the page then
    re-reads and reconnects under the new access)."""
    if guard.displaced:
        raise Ended(message("ended", DISPLACED))
    store_class = _session_store()
    found = await dbconn.read(lambda: resolve_session(store_class(guard.session_key)))
    if found.user is None or found.config is None or found.user.pk != guard.user_id:
        login = reverse("login") + "?" + urlencode({"next": watch.page_path})
        raise Ended(message("signed-out", login))
    if found.config.access != watch.access:
        logger.info("events: %s's access changed; their stream ends",
                    watch.access.username)
        raise Ended(REREAD)
    guard.watch(found.version)
