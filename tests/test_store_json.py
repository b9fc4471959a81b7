"""The shared store holds JSON with a schema version, never a pickle (issue 14, point 4): what
the feed and the shared answers write is JSON in Redis; a pickle planted in the store is never
unpickled, and it, an unknown schema or a strange shape read as missing; `make run-prod`'s
Redis wants a password."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.cache.backends.redis import RedisSerializer
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from redis.backoff import NoBackoff
from redis.retry import Retry

from cases import store
from cases import temporal as gateway
from cases.config import reading as config
from cases.live import answers, feed, log
from cases.store import budget, wire
from cases.temporal import codecs
from tracerail.settings import cache_settings, envurl

from .conftest import _require, _stop, free_port

ROOT = Path(__file__).resolve().parent.parent
IST = timezone(timedelta(hours=5, minutes=30))


def make_row(case_id: str = "case-7K2M9QXA", **changes: Any) -> gateway.CaseRow:
    row = gateway.CaseRow(
        case_id=case_id, title="Refund — 2nd try", status="in_progress", priority=2,
        queue="billing", assignee="alice", tags=["vip", "refund"],
        due_at=datetime(2026, 3, 1, 9, 30, tzinfo=IST),
        updated_at=datetime(2026, 2, 27, 14, 5, 6, 789000, tzinfo=UTC), sla_breached=True,
        started_at=datetime(2026, 2, 20, 8, 0, tzinfo=UTC), execution_status="running",
        requester="Bo Diaz", version=4, comments=2, run_id="run-1", closed_at=None,
        attributes={"CaseRegion": "emea", "CaseScore": 7.5, "CaseLabels": ["a", "b"],
                    "CaseFlag": True, "CaseNote": None})
    return dataclasses.replace(row, **changes)


@pytest.fixture(autouse=True)
def every_warning() -> None:
    wire._warned.clear()  # each test sees its own first warning line


@pytest.fixture
def redis_store(settings, redis_server) -> Any:
    """The shared store as the settings build it for REDIS_URL=<the test server>."""
    settings.CACHES = cache_settings(redis_server.url, 2.0)
    settings.FEED_CACHE = "default"
    shared = store.shared()
    assert type(shared).__name__ == "SharedRedisCache"
    shared.clear()
    yield shared
    shared.clear()


@pytest.fixture
def raw(redis_server) -> redis.Redis:
    return redis.Redis.from_url(redis_server.url)


class Planted:
    """A pickle that creates `marker` when it is unpickled: code run by whoever reads it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (open, (str(self.marker), "w"))


def planted(tmp_path: Path) -> tuple[bytes, Path]:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(Planted(marker))
    # The payload does run code under Django's own serializer: the test is not vacuous.
    RedisSerializer().loads(payload).close()
    assert marker.exists()
    marker.unlink()
    return payload, marker


def listening(monkeypatch: pytest.MonkeyPatch) -> tuple[feed.Listener, list[Any]]:
    listener = feed.Listener()
    listener.read_once()  # starts from now
    emitted: list[Any] = []
    monkeypatch.setattr(listener, "_emit", lambda events, position: emitted.extend(events))
    return listener, emitted


def ask(key: str, value: Any) -> tuple[Any, int]:
    """A shared answer for `key`: (what it answered, how many times it asked Visibility)."""
    calls = 0

    async def call() -> Any:
        nonlocal calls
        calls += 1
        return value

    kind = key.split(":")[1]  # answers._key's "vis:<kind>:<digest>"
    got = asyncio.run(answers._answer(kind, key, call, None, 60))
    return got, calls


# --- 1. JSON in the store -----------------------------------------------------------------


def test_a_published_change_is_json_with_the_schema_version_and_reads_back_equal(
        redis_store, raw, monkeypatch):
    listener, emitted = listening(monkeypatch)
    changes = log.current()
    before = make_row(version=3, assignee=None, sla_breached=False)
    row = make_row(closed_at=datetime(2026, 2, 28, tzinfo=UTC))
    changes.append(before, 1772200000.0)
    changes.append(row, 1772200000.25)

    (first_id, _), (second_id, second) = raw.xrange(redis_store.make_key("log:stream"))
    assert (first_id, second_id) == (b"1-1", b"2-1")  # the id is the change's number
    stored = json.loads(second[b"row"])
    assert stored["v"] == wire.SCHEMA == 3
    assert stored["d"]["due_at"] == "2026-03-01T09:30:00+05:30"
    assert json.loads(second[b"before"])["d"]["version"] == 3
    assert json.loads(raw.hget(redis_store.make_key(f"log:case:{row.case_id}"), "row"))["d"][
        "attributes"] == row.attributes
    # The number stays a bare number: INCR needs it.
    assert raw.get(redis_store.make_key("log:seq")) == b"2"

    listener.read_once()
    assert emitted == [feed.Change(1, row.case_id, before, None, 1772200000.0),
                       feed.Change(2, row.case_id, row, before, 1772200000.25)]
    assert emitted[1].row.due_at.utcoffset() == timedelta(hours=5, minutes=30)


def test_the_watermark_is_json_and_the_lease_a_plain_token(redis_store, raw):
    poller = feed.Poller()
    assert poller.hold_lease() and poller.hold_lease()  # read back as its own
    assert feed.Poller().hold_lease() is False
    assert raw.get(redis_store.make_key("lease:feed-poller")) == poller.lease.lock.local.token
    moment = datetime(2026, 2, 27, 14, 5, 6, tzinfo=UTC)
    redis_store.set(feed.KEY_WATERMARK, wire.dump(wire.TIME, moment), timeout=None)
    assert json.loads(raw.get(redis_store.make_key(feed.KEY_WATERMARK)))["d"] == \
        "2026-02-27T14:05:06+00:00"
    assert wire.load(wire.TIME, redis_store.get(feed.KEY_WATERMARK)) == moment


def test_a_shared_answer_is_json_and_is_used_from_the_store(redis_store, raw):
    page = gateway.CasePage([make_row(), make_row("case-2", due_at=None, tags=[])], "tok")
    key = answers._key("list", "CaseQueue = 'billing'", 50, "")
    assert ask(key, page) == (page, 1)
    stored = json.loads(raw.get(redis_store.make_key(key)))
    assert stored["v"] == wire.SCHEMA and stored["d"]["value"]["page"]["next_page_token"] == "tok"
    assert ask(key, "not asked") == (page, 0)

    count = answers._key("count", "CaseQueue = 'billing'")
    assert ask(count, 12) == (12, 1) and ask(count, 99) == (12, 0)
    assert json.loads(raw.get(redis_store.make_key(count)))["d"]["value"] == {"count": 12}


def test_the_budget_counts_with_bare_numbers(redis_store, raw, settings):
    settings.VISIBILITY_RPS = 100
    asyncio.run(budget.acquire())
    counters = raw.keys(redis_store.make_key("vis:budget:*"))
    assert counters and all(raw.get(k).isdigit() for k in counters)


# --- 2. a planted pickle is never unpickled ---------------------------------------------------


def _plant(redis_store: Any, raw: redis.Redis, fields: dict[str, bytes]) -> int:
    """A log entry written by someone else, numbered as the log numbers its own."""
    seq = raw.incr(redis_store.make_key("log:seq"))
    raw.xadd(redis_store.make_key("log:stream"), fields, id=f"{seq}-1")
    return seq


def test_a_pickle_planted_as_a_log_entry_is_not_run_and_is_skipped(
        redis_store, raw, monkeypatch, tmp_path, caplog):
    payload, marker = planted(tmp_path)
    listener, emitted = listening(monkeypatch)
    changes = log.current()
    changes.append(make_row(), time.time())
    _plant(redis_store, raw, {"row": payload, "before": payload, "seen": b"1"})
    changes.append(make_row("case-2"), time.time())

    with caplog.at_level(logging.WARNING, logger="cases.store.wire"):
        listener.read_once()
        listener.read_once()
    assert not marker.exists()
    # The entries around it arrive; nobody re-reads for it.
    assert [c.seq for c in emitted] == [1, 3] and listener.resyncs == 0
    assert any("a pickle, never unpickled" in r.getMessage() for r in caplog.records)
    assert sum("pickle" in r.getMessage() for r in caplog.records) == 1  # one line


def test_a_pickle_planted_as_an_answer_is_not_run_and_the_answer_is_asked_again(
        redis_store, raw, tmp_path, caplog):
    payload, marker = planted(tmp_path)
    key = answers._key("count", "CaseQueue = 'general'")
    raw.set(redis_store.make_key(key), payload)
    with caplog.at_level(logging.WARNING, logger="cases.store.wire"):
        assert ask(key, 5) == (5, 1)
    assert not marker.exists()
    assert "(a pickle, never unpickled): read as missing" in caplog.text
    # The fresh answer replaced it.
    assert json.loads(raw.get(redis_store.make_key(key)))["d"]["value"] == {"count": 5}


def test_a_pickle_planted_as_the_lease_or_a_known_row_is_not_run(redis_store, raw, tmp_path,
                                                                 monkeypatch):
    payload, marker = planted(tmp_path)
    raw.set(redis_store.make_key("lease:feed-poller"), payload, ex=60)
    assert feed.Poller().hold_lease() is False  # not its own; not code either
    # The last row the log keeps of a case, as its `before`: read as unknown.
    listener, emitted = listening(monkeypatch)
    raw.hset(redis_store.make_key("log:case:case-1"),
             mapping={"v": 1, "t": 0, "row": payload})
    assert log.current().append(make_row("case-1"), 1.0) is not None
    listener.read_once()
    assert emitted[0].before is None
    # Not even a hash: what a foreign client left there is replaced, not a stuck feed.
    raw.delete(redis_store.make_key("log:case:case-2"))
    raw.set(redis_store.make_key("log:case:case-2"), payload)
    assert log.current().append(make_row("case-2"), 1.0) is not None
    assert not marker.exists()


# --- 3. another schema, another shape ---------------------------------------------------------


def test_an_unknown_schema_version_reads_as_missing_not_as_an_error(
        redis_store, raw, monkeypatch, caplog):
    listener, emitted = listening(monkeypatch)
    later = wire.SCHEMA + 1
    newer = json.dumps({"v": later, "d": wire.dump(codecs.ROW, make_row())}).encode()
    _plant(redis_store, raw, {"row": newer, "before": b"", "seen": b"1"})
    key = answers._key("count", "q")
    raw.set(redis_store.make_key(key), json.dumps({"v": later, "d": {"anything": 1}}))
    with caplog.at_level(logging.WARNING, logger="cases.store.wire"):
        listener.read_once()
        assert ask(key, 3) == (3, 1)
    assert emitted == [] and listener.resyncs == 0  # skipped, as an unreadable row is
    assert (f"a value of schema version {later} (this process reads {wire.SCHEMA}): read as "
            "missing") in caplog.text


@pytest.mark.parametrize("stored", [
    b"garbage \xff\xfe",
    b'{"seq": 1}',  # JSON, not our envelope
    b'{"v": "1", "d": {}}',
    b'{"v": 2, "d": {"seq": 1}}',  # our envelope, not a row
    b'[' * 100_000,  # deeper than the decoder goes
    b"1e3",
])
def test_anything_else_in_the_store_reads_as_missing(redis_store, raw, stored, caplog):
    raw.set(redis_store.make_key("test:planted"), stored)
    with caplog.at_level(logging.WARNING, logger="cases.store.wire"):
        assert wire.load(codecs.ROW, redis_store.get("test:planted")) is None
    assert "read as missing" in caplog.text


def test_a_shape_that_is_not_the_one_expected_reads_as_missing(caplog):
    good = wire.dump(codecs.ROW, make_row())
    bad = [
        {**good, "priority": True},  # a bool is not a number here
        {**good, "due_at": "2026-03-01T09:30:00"},  # no time zone
        {**good, "tags": "vip"},
        {**good, "attributes": ["x"]},
        {k: v for k, v in good.items() if k != "run_id"},
        {**good, "extra": 1},
        {**good, "version": 4.0},
    ]
    with caplog.at_level(logging.WARNING, logger="cases.store.wire"):
        assert [wire.load(codecs.ROW, b) for b in bad] == [None] * len(bad)
    assert wire.load(codecs.ROW, good) == make_row()
    assert caplog.text.count("a row of another shape: read as missing") == 1  # once a minute


# --- 4. the codecs --------------------------------------------------------------------------


def through_json(kind: wire.Kind, value: Any) -> Any:
    return wire.load(kind, json.loads(json.dumps(wire.dump(kind, value))))


def test_every_stored_type_round_trips():
    row, bare = make_row(), make_row(
        "case-2", priority=None, assignee=None, tags=[], due_at=None, updated_at=None,
        started_at=None, version=None, attributes={}, execution_status="completed",
        closed_at=datetime(2026, 2, 28, 23, 59, 59, 999999, tzinfo=IST))
    for value in (row, bare):
        assert through_json(codecs.ROW, value) == value
    page = gateway.CasePage([row, bare], None)
    assert through_json(codecs.PAGE, page) == page
    for value in (page, 0, 12):
        answer = answers._Answer(value, "ab12", None if value == 0 else 7, 1.5, 301.5, 2.0)
        assert through_json(answers.ANSWER, answer) == answer
    moment = datetime(2026, 2, 27, 14, 5, 6, 1, tzinfo=IST)
    assert through_json(wire.TIME, moment) == moment
    assert through_json(wire.TIME, moment).utcoffset() == moment.utcoffset()


def test_the_codecs_know_every_field_of_what_they_store():
    # A new field on a stored type must get a codec (and a new SCHEMA), not fall away.
    for kind, cls in ((codecs.ROW, gateway.CaseRow), (codecs.PAGE, gateway.CasePage),
                      (answers.ANSWER, answers._Answer),
                      (config.SIGNED_IN, config.SignedIn), (config.BASICS, config.Basics)):
        assert set(kind.fields) == {f.name for f in dataclasses.fields(cls)}, kind.name


def test_what_cannot_be_read_back_is_refused_when_stored(settings):
    with pytest.raises(wire.Malformed, match="due_at"):
        wire.dump(codecs.ROW, make_row(due_at=datetime(2026, 3, 1)))  # no time zone
    with pytest.raises(wire.Malformed):
        wire.dump(codecs.PAGE, make_row())
    # `make run`'s local-memory store takes only what Redis would.
    local = store.shared()
    assert type(local).__name__ == "JSONLocMemCache"
    with pytest.raises(TypeError):
        local.set("feed:watermark", datetime.now(UTC))
    with pytest.raises(ValueError):
        local.set("k", {"x": float("nan")})
    try:
        local.set("test:k", {"tags": ("a", "b"), "n": 1})
        assert local.get("test:k") == {"tags": ["a", "b"], "n": 1}  # as Redis gives it back
        assert local.add("test:n", 0) and local.incr("test:n") == 1
        assert local.get("test:n") == 1
    finally:
        local.delete_many(["test:k", "test:n"])


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                          allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8)
_moments = st.none() | st.datetimes(timezones=st.sampled_from([UTC, IST, timezone(
    -timedelta(hours=7))]))
_rows = st.builds(
    gateway.CaseRow, case_id=st.text(), title=st.text(), status=st.text(),
    priority=st.none() | st.integers(), queue=st.text(), assignee=st.none() | st.text(),
    tags=st.lists(st.text(), max_size=4), due_at=_moments, updated_at=_moments,
    sla_breached=st.booleans(), started_at=_moments, execution_status=st.text(),
    requester=st.text(), version=st.none() | st.integers(min_value=0),
    comments=st.integers(min_value=0), run_id=st.text(), closed_at=_moments,
    attributes=st.dictionaries(st.text(), _json, max_size=4))


@given(_rows)
@hypothesis_settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_row_round_trips_through_the_redis_serializer(row):
    serializer = wire.JSONSerializer()
    stored = serializer.dumps(wire.dump(codecs.ROW, row))
    assert wire.load(codecs.ROW, serializer.loads(stored)) == row


# --- 5. `make run-prod`'s Redis wants a password ----------------------------------------------


def test_the_stack_redis_refuses_a_client_without_its_password(tmp_path, settings, monkeypatch):
    _require("redis-server", "apt-get install -y redis-server")
    port = free_port()
    env = {"PATH": os.environ["PATH"], "TRACERAIL_VAR_DIR": str(tmp_path),
           "REDIS_PORT": str(port)}
    url = subprocess.run(["bash", "-c", '. bin/prod-env && echo "$REDIS_URL"'], cwd=ROOT,
                         env=env, capture_output=True, text=True, check=True).stdout.strip()
    password = (tmp_path / "redis-password").read_text().strip()
    assert len(password) == 64 and url == f"redis://:{password}@127.0.0.1:{port}/0"
    proc = subprocess.Popen([str(ROOT / "bin" / "prod-redis")], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as bare:
            bare.sendall(b"PING\r\n")
            assert bare.recv(64).startswith(b"-NOAUTH")
        # No retries: redis-py would retry a refused login for seconds.
        once = Retry(NoBackoff(), 0)
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=port, retry=once).ping()
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(port=port, password="wrong", retry=once).ping()
        assert redis.Redis(port=port, password=password).ping() is True
        for secret in (tmp_path / "redis-password", tmp_path / "redis" / "redis.conf"):
            assert secret.stat().st_mode & 0o777 == 0o600, secret
        # The settings take the URL as it is, and the product's cache works through it.
        monkeypatch.setenv("REDIS_URL", url)
        assert envurl("REDIS_URL", ("redis",)) == url
        settings.CACHES = cache_settings(url, 2.0)
        settings.FEED_CACHE = "default"
        shared = store.shared()
        shared.set("feed:epoch", "e1")
        assert shared.get("feed:epoch") == "e1"
        assert redis.Redis(port=port, password=password).get(shared.make_key("feed:epoch")) \
            == b'{"v":%d,"d":"e1"}' % wire.SCHEMA
    finally:
        _stop(proc, signal.SIGTERM)


def test_every_request_and_stream_shares_one_redis_pool_per_process(redis_store, raw):
    """Django makes a cache backend per async context (each request, each open stream); they
    share one client and pool, so open streams do not each hold a Redis connection."""
    from django.core.cache import caches

    async def in_a_request() -> Any:
        backend = caches["default"]
        backend.set("test:pool", 1)
        return backend

    async def many() -> list[Any]:
        return list(await asyncio.gather(*(asyncio.create_task(in_a_request())
                                           for _ in range(50))))

    backends = asyncio.run(many())
    assert len({id(b) for b in backends}) > 1  # Django's own: one per context
    assert len({id(b._cache) for b in backends}) == 1
    clients = [c for c in raw.client_list() if c.get("name", "") == "" and c["cmd"] != "client"]
    assert len(clients) <= 5  # not one per context
