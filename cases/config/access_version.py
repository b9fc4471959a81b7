"""Access versions: a token per user in the shared store that changes whenever anything that
decides what the user may see changes (queues, groups, role, activation, password, logout),
and one for the configuration everyone shares (queues, groups, the attribute registry).

Two things hang on them, so one bump serves both:
- the request path caches a user and their configuration under the versions
  (cases/config/reading.py), so a request reads the store, not five tables, and a change is
  never served stale;
- every open push stream watches its user's version (`Watcher`) and re-checks its access as
  soon as it moves (cases/web/events.py): a stream is a request that never ends.

A version is a random token, not a counter: `set` is atomic on every backend, and a token
that went missing (a store restart, an eviction) is replaced by a new one, never by a value
some cached entry was made under before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading

from django.conf import settings

from cases import store

logger = logging.getLogger(__name__)

CONFIG = "config"  # the version of the shared configuration (not a user's)
# Longer than any cached entry made under it lives; a lost token only costs a re-read.
_TTL = 30 * 24 * 3600


def _key(who: int | str) -> str:
    return f"access:v:{who}"


def bump(*who: int | str) -> None:
    """A new version for each user id (or CONFIG): their cached configuration is dropped and
    their open streams re-check. Never raises: a store that is away loses the bump, and the
    streams' periodic re-check (EVENTS_RECHECK_SECONDS) still catches the change."""
    if not who:
        return
    try:
        store.shared().set_many({_key(w): secrets.token_hex(8) for w in who}, timeout=_TTL)
    except Exception as err:
        logger.warning("access: could not bump %s: %s", who, err)


def current(*who: int | str) -> dict[int | str, str]:
    """The version of each, made now if the store has none (so an entry cached under a token
    that was lost is never read again)."""
    shared = store.shared()
    keys = {_key(w): w for w in who}
    found = shared.get_many(list(keys))
    missing = [k for k in keys if not isinstance(found.get(k), str)]
    for k in missing:
        shared.add(k, secrets.token_hex(8), timeout=_TTL)
    if missing:
        found.update(shared.get_many(missing))
    return {w: str(found.get(k) or "") for k, w in keys.items()}


class Watcher:
    """Per process: which users have open streams, and one `get_many` a second for all of
    them (not one read per stream). A stream registers the version its access was read at and
    an Event to set when that version moves."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # user id -> {event: (its loop, the version it was read at)}
        self.watching: dict[int, dict[asyncio.Event, tuple[asyncio.AbstractEventLoop, str]]] = {}
        self.thread: threading.Thread | None = None
        self.reads = 0

    def watch(self, user_id: int, version: str, moved: asyncio.Event) -> None:
        """Set `moved` (on the caller's loop) once the user's version is not `version`."""
        with self.lock:
            self.watching.setdefault(user_id, {})[moved] = (asyncio.get_running_loop(), version)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._run, name="tracerail-access",
                                               daemon=True)
                self.thread.start()

    def unwatch(self, user_id: int, moved: asyncio.Event) -> None:
        with self.lock:
            mine = self.watching.get(user_id, {})
            mine.pop(moved, None)
            if not mine:
                self.watching.pop(user_id, None)

    def check(self) -> None:
        """One read of every watched user's version; wakes the streams whose version moved."""
        with self.lock:
            users = list(self.watching)
        if not users:
            return
        versions = current(*users)
        self.reads += 1
        with self.lock:
            for user_id in users:
                for moved, (loop, seen) in list(self.watching.get(user_id, {}).items()):
                    if versions.get(user_id) != seen:
                        with contextlib.suppress(RuntimeError):  # its loop has closed
                            loop.call_soon_threadsafe(moved.set)

    def _run(self) -> None:
        stop = threading.Event()
        while not stop.wait(settings.ACCESS_WATCH_SECONDS):
            try:
                self.check()
            except Exception as err:  # the store away: the periodic re-check still runs
                logger.warning("access: reading versions failed: %s", err)


WATCHER = Watcher()

