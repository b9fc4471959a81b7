"""The change log: every case change the poller saw, numbered, once per case version.

One small interface, two homes:

- `RedisLog` (production: the shared store is Redis) keeps the log in a Redis Stream. One Lua
  script does the whole append atomically: compare the case's newest published version,
  number the change, `XADD` it (trimmed to `FEED_LOG_LENGTH` entries) and remember the row.
  Two pollers whose leases overlap therefore cannot publish one change twice, and an entry
  is never numbered without being written (nothing for a reader to wait for). Readers block
  in `XREAD`. The poller's lease is redis-py's `Lock` (token-checked extend and release).
- `LocalLog` (`make run` and most tests: the store is local memory, one process) keeps the
  same in memory behind a lock and a condition.

A position is (epoch, seq). The epoch is a random token made with the log; a store that lost
its data (Redis restarted without persistence) starts a new epoch, so a reader can tell "the
log moved on" from "the log was replaced". `read` answers a position with the changes after
it, or `Gap` when the log no longer holds them all.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from cachetools import LRUCache
from django.conf import settings

from cases import store
from cases.store import wire
from cases.temporal import CaseRow, codecs

logger = logging.getLogger(__name__)

Position = tuple[str | None, int]
# A log nothing was ever written to has no epoch yet: its first change is not a new log.
_EMPTY: Position = (None, 0)


@dataclass
class Change:
    seq: int  # position in the log
    case_id: str
    row: CaseRow  # the case as Visibility now shows it
    before: CaseRow | None  # the row the log last held for it, if it still knew it
    seen_at: float = 0.0  # wall time the poller had it (it was indexed before then)

    def listed_before(self, matches: Any) -> bool | None:
        """Did the case match a filter before this change? A case's first version was
        listed nowhere; a later one without a known `before` only the index can tell."""
        if self.before is None:
            return False if (self.row.version or 0) <= 1 else None
        return matches(self.before)


@dataclass
class Gap:
    """The log no longer holds every change after the reader's position."""

    reason: str


def order_key(row: CaseRow) -> tuple[int, int, float] | None:
    """What "newer" means for a case's rows: its version, then whether its run has ended
    (closing ends the run after the last Update, with no new version), then its update
    time. None for a row that cannot be ordered (a foreign client's version or time of the
    wrong type)."""
    version, updated = row.version or 0, row.updated_at
    if updated is None:
        updated = datetime.min.replace(tzinfo=UTC)
    if type(version) is not int or not isinstance(updated, datetime) or updated.tzinfo is None:
        return None
    ended = int(row.execution_status != "running")
    return version, ended, updated.timestamp() if updated.year > 1 else 0.0


def is_newer(key: tuple[int, int, float], known: tuple[int, int, float] | None) -> bool:
    """One change per (case, version, ended): the index re-stamps a row's update time
    without a new version (the workflow's first task, say), which is no change to anyone.
    A row without a version (written by another client) is ordered by its time alone."""
    if known is None:
        return True
    if key[:2] != known[:2]:
        return key[:2] > known[:2]
    return key[0] == 0 and key[2] > known[2]


class Lease(Protocol):
    def hold(self) -> bool:
        """Take or keep the lease; False while another holder has it."""

    def release(self) -> None: ...


class Log(Protocol):
    def append(self, row: CaseRow, seen_at: float) -> Change | None:
        """Publish the row unless this version (or a newer one) already was."""

    def read(self, after: Position | None, block: float = 0.0, limit: int = 1000
             ) -> tuple[Position, list[Change]] | Gap:
        """The changes after `after` (None: from the head, i.e. nothing yet), waiting up to
        `block` seconds for one; with the position after the last one returned."""

    def tail(self, count: int) -> tuple[Position, list[Change]]:
        """The newest `count` changes and the head position (a reader starting up)."""

    def lease(self, name: str) -> Lease: ...

    def forget(self) -> None:
        """Drop everything (tests)."""


def _dumps(row: CaseRow | None) -> bytes:
    return b"" if row is None else wire.encode(wire.dump(codecs.ROW, row))


def _loads(data: bytes | None) -> CaseRow | None:
    return None if not data else wire.load(codecs.ROW, wire.decode(data))


# --- in one process ------------------------------------------------------------------------------


class _LocalLease:
    def __init__(self, log: LocalLog, name: str) -> None:
        self.log, self.name = log, name
        self.token = secrets.token_hex(8)

    def hold(self) -> bool:
        now = time.monotonic()
        with self.log.lock:
            holder, until = self.log.leases.get(self.name, (None, 0.0))
            if holder not in (None, self.token) and until > now:
                return False
            self.log.leases[self.name] = (self.token, now + settings.FEED_LEASE_SECONDS)
            return True

    def release(self) -> None:
        with self.log.lock:
            if self.log.leases.get(self.name, (None, 0))[0] == self.token:
                del self.log.leases[self.name]


class LocalLog:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.grew = threading.Condition(self.lock)
        self.forget()

    def forget(self) -> None:
        with self.lock:
            self.epoch = secrets.token_hex(8)
            self.seq = 0
            self.entries: deque[Change] = deque(maxlen=settings.FEED_LOG_LENGTH)
            self.known: LRUCache[str, tuple[tuple[int, int, float], CaseRow]] = LRUCache(
                maxsize=settings.FEED_KNOWN_CASES)
            self.leases: dict[str, tuple[str, float]] = {}

    def append(self, row: CaseRow, seen_at: float) -> Change | None:
        key = order_key(row)
        if key is None:
            return None
        with self.lock:
            known = self.known.get(row.case_id)
            if not is_newer(key, known[0] if known is not None else None):
                return None
            self.seq += 1
            change = Change(self.seq, row.case_id, row, known[1] if known else None, seen_at)
            self.entries.append(change)
            self.known[row.case_id] = (key, row)
            self.grew.notify_all()
            return change

    def read(self, after: Position | None, block: float = 0.0, limit: int = 1000
             ) -> tuple[Position, list[Change]] | Gap:
        with self.lock:
            if after is None:
                return (self.epoch, self.seq), []
            epoch, seq = after
            if (epoch != self.epoch and after != _EMPTY) or seq > self.seq:
                return Gap("the log was replaced")
            if block > 0 and seq == self.seq:
                self.grew.wait(block)
            if self.entries and self.entries[0].seq > seq + 1:
                return Gap("the log no longer holds changes this old")
            if not self.entries and seq < self.seq:
                return Gap("the log no longer holds changes this old")
            found = [c for c in self.entries if c.seq > seq][:limit]
            return (self.epoch, found[-1].seq if found else seq), found

    def tail(self, count: int) -> tuple[Position, list[Change]]:
        with self.lock:
            return (self.epoch, self.seq), list(self.entries)[-count:] if count else []

    def lease(self, name: str) -> Lease:
        return _LocalLease(self, name)


# --- in Redis ------------------------------------------------------------------------------------

# KEYS: stream, counter, epoch, the case's last published row (a hash: v, e, t, row)
# ARGV: version, ended (0/1), time, row, maxlen, ttl of the case's row, a new epoch token,
#       seen-at. The comparison is log.is_newer's, in Lua so that it and the write are one.
_APPEND = """
local v = redis.call('HGET', KEYS[4], 'v')
if v then
  local nv, ne, nt = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
  local e = tonumber(redis.call('HGET', KEYS[4], 'e') or '0')
  local t = tonumber(redis.call('HGET', KEYS[4], 't') or '0')
  v = tonumber(v)
  if v > nv or (v == nv and e > ne) then return false end
  if v == nv and e == ne and (nv ~= 0 or t >= nt) then return false end
end
local before = redis.call('HGET', KEYS[4], 'row') or ''
redis.call('SET', KEYS[3], ARGV[7], 'NX')
local seq = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], seq .. '-1',
           'row', ARGV[4], 'before', before, 'seen', ARGV[8])
redis.call('HSET', KEYS[4], 'v', ARGV[1], 'e', ARGV[2], 't', ARGV[3], 'row', ARGV[4])
redis.call('EXPIRE', KEYS[4], ARGV[6])
return {seq, redis.call('GET', KEYS[3])}
"""


class _RedisLease:
    def __init__(self, client: Any, name: str) -> None:
        # thread_local=False: the feed's thread pool may extend from another thread.
        self.lock = client.lock(name, timeout=settings.FEED_LEASE_SECONDS, thread_local=False)
        # The token names its holder, so an operator (and a test) can tell which process
        # polls: `GET tracerail:1:lease:feed-poller`.
        self.token = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"

    def hold(self) -> bool:
        from redis.exceptions import LockError

        try:
            if self.lock.owned():
                self.lock.reacquire()  # token-checked: fails if another took it meanwhile
                return True
        except LockError:
            pass
        return bool(self.lock.acquire(blocking=False, token=self.token))

    def release(self) -> None:
        from redis.exceptions import LockError

        try:
            self.lock.release()
        except LockError:
            pass


class RedisLog:
    def __init__(self, backend: Any) -> None:
        self.client = backend._cache.get_client(write=True)
        key = backend.make_key
        self.stream, self.counter, self.epoch_key = (
            key("log:stream"), key("log:seq"), key("log:epoch"))
        self.case_key = lambda case_id: key(f"log:case:{case_id}")
        self.lease_key = lambda name: key(f"lease:{name}")
        self.script = self.client.register_script(_APPEND)

    def append(self, row: CaseRow, seen_at: float) -> Change | None:
        key = order_key(row)
        if key is None:
            return None
        from redis.exceptions import ResponseError

        data = _dumps(row)
        keys = [self.stream, self.counter, self.epoch_key, self.case_key(row.case_id)]
        args = [key[0], key[1], repr(key[2]), data, settings.FEED_LOG_LENGTH,
                settings.FEED_KNOWN_SECONDS, secrets.token_hex(8), repr(seen_at)]
        try:
            found = self.script(keys=keys, args=args)
        except ResponseError as err:
            if "WRONGTYPE" not in str(err):
                raise
            # Something else wrote the case's key (not our hash): it is ours to replace,
            # or the case would never be published again.
            logger.warning("feed: replaced a value of the wrong type kept for case %s",
                           row.case_id)
            self.client.delete(keys[3])
            found = self.script(keys=keys, args=args)
        if not found:
            return None
        return Change(int(found[0]), row.case_id, row, None, seen_at)

    def _epoch(self) -> str | None:
        epoch = self.client.get(self.epoch_key)
        return epoch.decode() if isinstance(epoch, bytes) else epoch

    def _changes(self, entries: list[Any]) -> list[Change]:
        out = []
        for entry_id, fields in entries:
            seq = int(entry_id.split(b"-")[0])
            row = _loads(fields.get(b"row"))
            if row is None:  # written by another schema: skipped, as unreadable rows are
                continue
            try:
                seen = float(fields.get(b"seen", b"0"))
            except ValueError:
                seen = 0.0
            out.append(Change(seq, row.case_id, row, _loads(fields.get(b"before")), seen))
        return out

    def read(self, after: Position | None, block: float = 0.0, limit: int = 1000
             ) -> tuple[Position, list[Change]] | Gap:
        epoch = self._epoch()
        if after is None:
            return (epoch, int(self.client.get(self.counter) or 0)), []
        if epoch != after[0] and after != _EMPTY:
            return Gap("the log was replaced (the store restarted or was cleared)")
        seq = after[1]
        if block > 0:
            found = self.client.xread({self.stream: f"{seq}-1"}, count=limit,
                                      block=max(1, int(block * 1000)))
            entries = found[0][1] if found else []
        else:
            entries = self.client.xrange(self.stream, f"({seq}-1", "+", count=limit)
        if entries and int(entries[0][0].split(b"-")[0]) > seq + 1:
            return Gap("the log no longer holds changes this old")
        if not entries and int(self.client.get(self.counter) or 0) > seq and \
                not self.client.xrange(self.stream, f"({seq}-1", "+", count=1):
            return Gap("the log no longer holds changes this old")
        if epoch is None and entries:
            epoch = self._epoch()  # the first change made the epoch while we waited
        changes = self._changes(entries)
        last = int(entries[-1][0].split(b"-")[0]) if entries else seq
        return (epoch, last), changes

    def tail(self, count: int) -> tuple[Position, list[Change]]:
        epoch = self._epoch()
        entries = self.client.xrevrange(self.stream, count=count) if count else []
        head = int(self.client.get(self.counter) or 0)
        return (epoch, head), self._changes(list(reversed(entries)))

    def lease(self, name: str) -> Lease:
        return _RedisLease(self.client, self.lease_key(name))

    def forget(self) -> None:
        self.client.delete(self.stream, self.counter, self.epoch_key)


# --- this process's log --------------------------------------------------------------------------

def current() -> Log:
    """The log of this process's shared store (a new store, after a fork or a changed
    setting, is a new log)."""
    backend = store.shared()
    found: Log | None = getattr(backend, "_tracerail_log", None)
    if found is None:
        found = RedisLog(backend) if store.spans_processes() else LocalLog()
        backend._tracerail_log = found  # type: ignore[attr-defined]
    return found


def position_id(position: Position | None) -> str:
    """A position as a Server-Sent-Event id: `<epoch>-<seq>`."""
    if position is None:
        return ""
    return f"{position[0] or ''}-{position[1]}"


def parse_position(text: str | None) -> Position | None:
    """A stream id back into a position; None for anything else (a client may send any text)."""
    if not text or len(text) > 100 or "-" not in text:
        return None
    epoch, _, seq = text.rpartition("-")
    if not seq.isdigit() or (epoch and not epoch.isalnum()):
        return None
    return (epoch or None), int(seq)
