"""What the shared store holds: JSON in a versioned envelope, never a pickle.

Every web process trusts what it reads from the store (the change feed, shared answers), and
Django's Redis backend would unpickle it: whoever could write one key would run code in all of
them. So values go through `JSONSerializer`: an `int` stays a bare number (Redis INCR needs
it), anything else is `{"v": SCHEMA, "d": <JSON>}`. Reading back, anything else (a pickle,
garbage, another schema from a rolling deploy) is a miss, logged, never executed.

The app's own types are turned into JSON by explicit codecs (`dump(CHANGE, change)`,
`load(ROW, data)`), one fixed shape per stored type, applied where the value is stored and
read: the local-memory store of `make run` and the tests then holds the very values Redis
would, and a shape that is not what this process expects reads as missing.

A change to any stored shape bumps SCHEMA. During a rolling deploy the older processes then
treat the newer ones' values as missing (the feed resyncs, answers are asked again), and the
reverse, until one version is left.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any, ClassVar

from django.core.cache.backends.base import DEFAULT_TIMEOUT
from django.core.cache.backends.locmem import LocMemCache
from django.core.cache.backends.redis import RedisCache

logger = logging.getLogger(__name__)

# 2: rows carry at_risk (issue 17). 3: basics carry the queues' reply modes (issue 23).
SCHEMA = 3
READABLE = frozenset({SCHEMA})
# One line per kind of refusal a minute: a rolling deploy or a planted key is read several
# times a second by every process, and the first line says all there is to say.
WARN_EVERY_SECONDS = 60.0

_warned: dict[str, tuple[float, int]] = {}
_warned_lock = threading.Lock()


def _ignore(kind: str, message: str, *args: object) -> None:
    now = time.monotonic()
    with _warned_lock:
        last, skipped = _warned.get(kind, (float("-inf"), 0))
        if now - last < WARN_EVERY_SECONDS:
            _warned[kind] = (last, skipped + 1)
            return
        _warned[kind] = (now, 0)
    more = f" ({skipped} more since the last such line)" if skipped else ""
    logger.warning("shared store: " + message + ": read as missing" + more, *args)


# --- the envelope ----------------------------------------------------------------------------


def encode(value: Any) -> bytes:
    # allow_nan=False: NaN is not JSON, and another reader could refuse it.
    return json.dumps({"v": SCHEMA, "d": value}, separators=(",", ":"),
                      allow_nan=False).encode()


def decode(data: bytes | str) -> Any:
    """The payload, or None for anything that is not an envelope this process can read."""
    try:
        envelope = json.loads(data)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        pickled = isinstance(data, bytes) and data[:1] == b"\x80"
        _ignore("not-json", "a value that is not JSON%s",
                " (a pickle, never unpickled)" if pickled else "")
        return None
    if not isinstance(envelope, dict) or envelope.keys() != {"v", "d"}:
        _ignore("not-envelope", "a JSON value without Tracerail's envelope")
        return None
    version = envelope["v"]
    if type(version) is not int or version not in READABLE:
        shown = version if type(version) is int and abs(version) < 10**6 else "?"
        _ignore("schema", "a value of schema version %s (this process reads %s)",
                shown, ", ".join(map(str, sorted(READABLE))))
        return None
    return envelope["d"]


class JSONSerializer:
    """For Django's RedisCache (OPTIONS["serializer"]), in place of its own, which pickles."""

    def dumps(self, value: Any) -> int | bytes:
        # type(), not isinstance: True is an int too, and must come back as True.
        if type(value) is int:
            return value
        return encode(value)

    def loads(self, data: bytes) -> Any:
        try:
            return int(data)
        except ValueError:
            return decode(data)


_serializer = JSONSerializer()


def _as_stored(value: Any) -> Any:
    return _serializer.loads(_serializer.dumps(value))


class SharedRedisCache(RedisCache):
    """Django's Redis cache with one client, and so one connection pool, per process. Django
    makes a backend per async context: every request, and every push stream for as long as it
    stays open, got a pool of its own, holding a connection each (two processes of 5,000
    streams would pass Redis's 10,000 clients). redis-py's pool is thread-safe."""

    _clients: ClassVar[dict[tuple[Any, ...], Any]] = {}
    _clients_lock = threading.Lock()

    @cached_property
    def _cache(self) -> Any:
        key = (os.getpid(), tuple(self._servers), repr(sorted(self._options.items())))
        with self._clients_lock:
            client = self._clients.get(key)
            if client is None:
                client = self._clients[key] = self._class(self._servers, **self._options)
            return client


class JSONLocMemCache(LocMemCache):
    """`make run`'s store (and the tests'): local memory holding what Redis would, so a value
    that is not JSON fails here as it would in production, not only there."""

    def add(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT,
            version: int | None = None) -> bool:
        return super().add(key, _as_stored(value), timeout, version)

    def set(self, key: Any, value: Any, timeout: Any = DEFAULT_TIMEOUT,
            version: int | None = None) -> None:
        super().set(key, _as_stored(value), timeout, version)


# --- the app's shapes --------------------------------------------------------------------------


class Malformed(ValueError):
    pass


@dataclass(frozen=True)
class Kind:
    """One stored shape: `dump` makes JSON of a value (refusing what `load` would refuse, so
    what is written can be read), `load` makes the value of JSON or raises Malformed."""

    name: str
    dump: Callable[[Any], Any]
    load: Callable[[Any], Any]
    fields: dict[str, Kind] = field(default_factory=dict)  # a record's


def dump(kind: Kind, value: Any) -> Any:
    return kind.dump(value)


def load(kind: Kind, data: Any) -> Any:
    """The value, or None when absent or not of this shape (logged)."""
    if data is None:
        return None
    try:
        return kind.load(data)
    except (Malformed, TypeError, ValueError, KeyError):
        _ignore(f"shape:{kind.name}", "a %s of another shape", kind.name)
        return None


def _exactly(*types: type) -> Callable[[Any], Any]:
    allowed = frozenset(types)

    def check(value: Any) -> Any:
        if type(value) in allowed:
            return value
        raise Malformed(f"{type(value).__name__}, not {'/'.join(t.__name__ for t in types)}")
    return check


def _same(check: Callable[[Any], Any], name: str) -> Kind:
    return Kind(name, check, check)


STR = _same(_exactly(str), "string")
INT = _same(_exactly(int), "int")
BOOL = _same(_exactly(bool), "bool")
# A wall-clock time in seconds (JSON may give a whole one back as an int).
_number = _exactly(float, int)
SECONDS = _same(lambda v: float(_number(v)), "seconds")


def _aware(value: datetime) -> datetime:
    if type(value) is not datetime or value.tzinfo is None:
        raise Malformed("not a datetime with a time zone")
    return value


TIME = Kind("time", lambda v: _aware(v).isoformat(),
            lambda v: _aware(datetime.fromisoformat(STR.load(v))))


def _json_object(value: Any) -> dict[str, Any]:
    if type(value) is not dict or not all(type(k) is str for k in value):
        raise Malformed("not an object")
    return dict(value)


JSON_OBJECT = _same(_json_object, "object")


def optional(kind: Kind) -> Kind:
    def either(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return lambda v: None if v is None else convert(v)
    return Kind(f"{kind.name} or null", either(kind.dump), either(kind.load))


def list_of(kind: Kind) -> Kind:
    sequence = _exactly(list, tuple)

    def each(convert: Callable[[Any], Any]) -> Callable[[Any], list[Any]]:
        return lambda v: [convert(x) for x in sequence(v)]
    return Kind(f"list of {kind.name}", each(kind.dump), each(kind.load))


def tuple_of(kind: Kind) -> Kind:
    listed = list_of(kind)
    return Kind(f"tuple of {kind.name}", listed.dump, lambda v: tuple(listed.load(v)))


def record(name: str, make: Callable[[], type], fields: dict[str, Kind]) -> Kind:
    """A dataclass as a JSON object of exactly `fields`. `make` gives the class when it is
    first needed: the cache backend above is built before the app's modules may be imported,
    and feed and answers import this module."""
    make = functools.cache(make)
    dumps = tuple((attr, kind.dump) for attr, kind in fields.items())
    loads = tuple((attr, kind.load) for attr, kind in fields.items())
    keys = fields.keys()

    def dump_record(value: Any) -> dict[str, Any]:
        if type(value) is not make():
            raise Malformed(f"{type(value).__name__}, not {name}")
        out = {}
        for attr, convert in dumps:
            try:
                out[attr] = convert(getattr(value, attr))
            except Malformed as err:
                raise Malformed(f"{name}.{attr}: {err}") from None
        return out

    def load_record(data: Any) -> Any:
        if type(data) is not dict or data.keys() != keys:
            raise Malformed(f"not a {name}")
        return make()(**{attr: convert(data[attr]) for attr, convert in loads})

    return Kind(name, dump_record, load_record, fields)
