"""The change log (cases/live/log.py), the same tests against both homes: real Redis (a Stream,
a Lua append, redis-py's Lock) and the in-process log of `make run`.

- one change per case version, however many pollers append it at once;
- reads after a position, and a Gap when the log no longer holds it (trimmed, or replaced);
- the poller's lease has one holder, and a lapsed holder cannot extend it;
- a stream resumes from Last-Event-ID (or `last=`) with exactly what it missed, through the
  one access rule, or tells its page to re-read once when it cannot.
"""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient

from cases import temporal as gateway
from cases.live import feed, log
from cases.temporal.ids import new_case_id
from tracerail.settings import cache_settings

from .test_events import Stream


@pytest.fixture(params=["redis", "local"])
def changes(request, settings, monkeypatch) -> Any:
    """The change log of the shared store the settings name, empty; the feed stopped, and
    its poller kept off the log when it runs (the tests write the log themselves)."""
    feed.stop()
    monkeypatch.setattr(feed.Poller, "hold_lease", lambda self: False)
    if request.param == "redis":
        server = request.getfixturevalue("redis_server")
        settings.CACHES = cache_settings(server.url, 2.0)
    settings.FEED_LEASE_SECONDS = 1
    settings.FEED_LISTEN_SECONDS = 0.05
    settings.FEED_INTERVAL_SECONDS = 0.2
    found = log.current()
    assert type(found).__name__ == ("RedisLog" if request.param == "redis" else "LocalLog")
    found.forget()
    yield found
    feed.stop()
    found.forget()


_clock = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


def _row(case_id: str, version: int, *, queue: str = "general", assignee: str | None = None,
         title: str = "Printer on fire") -> gateway.CaseRow:
    moment = _clock + timedelta(seconds=version)
    return gateway.CaseRow(
        case_id=case_id, title=title, status="new", priority=3, queue=queue,
        assignee=assignee, tags=[], due_at=None, updated_at=moment, sla_breached=False,
        started_at=_clock, execution_status="running", version=version)


def _all(changes: Any) -> list[log.Change]:
    return changes.tail(100_000)[1]


# --- appending ---------------------------------------------------------------------------------


def test_a_version_is_published_once_and_knows_the_row_before_it(changes):
    case = new_case_id()
    first = changes.append(_row(case, 1), 1.0)
    assert first is not None and first.seq == 1
    assert changes.append(_row(case, 1), 2.0) is None  # the overlap brings it back
    second = changes.append(_row(case, 3, assignee="alice"), 3.0)
    assert second is not None and second.seq == 2
    assert changes.append(_row(case, 2), 4.0) is None  # older than what was published
    # The index re-stamping the same version is no change; the run ending after it is.
    later = _row(case, 3, assignee="alice")
    later.updated_at += timedelta(seconds=5)
    assert changes.append(later, 5.0) is None
    later.execution_status = "completed"
    assert changes.append(later, 6.0) is not None
    stored = _all(changes)
    assert [(c.seq, c.row.version) for c in stored] == [(1, 1), (2, 3), (3, 3)]
    assert stored[1].before == _row(case, 1) and stored[0].before is None
    assert stored[1].seen_at == 3.0 and stored[2].before.execution_status == "running"


def test_two_pollers_appending_the_same_rows_at_once_publish_each_version_once(changes):
    """Two lease holders whose leases overlap (a paused process that wakes up still believing
    it holds the lease) both publish everything they read: the log keeps one of each."""
    cases = [new_case_id() for _ in range(30)]
    rows = [_row(c, v) for v in (1, 2, 3) for c in cases]
    start = threading.Barrier(4)

    def poller(order: list[gateway.CaseRow]) -> None:
        start.wait()
        for row in order:
            changes.append(row, time.time())

    threads = [threading.Thread(target=poller, args=(rows if n % 2 else rows[::-1],))
               for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = _all(changes)
    published = [(c.case_id, c.row.version) for c in stored]
    assert len(published) == len(set(published))  # never twice
    # Each case ends at its newest version, whatever order the pollers went in.
    newest = {c.case_id: c.row.version for c in stored}
    assert newest == dict.fromkeys(cases, 3)
    assert [c.seq for c in stored] == list(range(1, len(stored) + 1))  # no hole either


def test_two_real_pollers_polling_at_once_publish_each_change_once(changes, temporal,
                                                                   open_case, settings):
    """The same with the feed's own Poller against the dev server: both poll the same
    window of Visibility (the overlap), on two threads, at once."""
    settings.FEED_OVERLAP_SECONDS = 60
    ids = [open_case(title=f"Polled twice {n}", queue="general") for n in range(5)]
    deadline = time.monotonic() + 15
    pollers = [feed.Poller(), feed.Poller()]

    async def both() -> list[int]:
        return await asyncio.gather(*(asyncio.to_thread(asyncio.run, p.poll_once())
                                      for p in pollers))

    while time.monotonic() < deadline:
        async_to_sync(both)()
        seen = {c.case_id for c in _all(changes)}
        if set(ids) <= seen:
            break
        time.sleep(0.2)
    async_to_sync(both)()  # and again: everything comes back within the overlap
    published = [(c.case_id, c.row.version) for c in _all(changes) if c.case_id in ids]
    assert sorted({case for case, _ in published}) == sorted(ids)
    assert len(published) == len(set(published))


# --- reading -----------------------------------------------------------------------------------


def test_reads_follow_the_position_and_a_trimmed_or_replaced_log_is_a_gap(changes, settings):
    start = changes.read(None)
    assert not isinstance(start, log.Gap)
    head, nothing = start
    assert nothing == []
    case = new_case_id()
    for version in range(1, 4):
        changes.append(_row(case, version), 1.0)
    found = changes.read(head)
    assert not isinstance(found, log.Gap)
    position, got = found
    assert [c.row.version for c in got] == [1, 2, 3] and position[1] == 3
    assert changes.read(position) == (position, [])
    # Someone far behind: the log was trimmed past their position.
    settings.FEED_LOG_LENGTH = 10
    if isinstance(changes, log.LocalLog):
        changes.forget()  # the in-process log takes its length when made
        head = changes.read(None)[0]
    for version in range(4, 400):
        changes.append(_row(case, version), 1.0)
    assert isinstance(changes.read(head), log.Gap)
    # A log that was replaced (the store lost everything) is another epoch.
    latest = changes.read(None)[0]
    changes.forget()
    changes.append(_row(case, 1), 1.0)
    assert isinstance(changes.read(latest), log.Gap)
    assert isinstance(changes.read(("deadbeef", 1)), log.Gap)


def test_a_reader_waits_for_the_next_change_and_wakes_when_it_is_written(changes):
    head = changes.read(None)[0]
    case = new_case_id()
    timer = threading.Timer(0.3, changes.append, args=(_row(case, 1), 1.0))
    started = time.monotonic()
    timer.start()
    found = changes.read(head, block=5.0)
    waited = time.monotonic() - started
    assert not isinstance(found, log.Gap) and [c.case_id for c in found[1]] == [case]
    assert 0.2 < waited < 4.0  # woken by the write, not by the timeout


def test_the_lease_has_one_holder_and_a_lapsed_one_cannot_extend_it(changes, settings):
    first, second = changes.lease("test"), changes.lease("test")
    assert first.hold() and first.hold()
    assert not second.hold()
    time.sleep(settings.FEED_LEASE_SECONDS + 0.3)  # the first holder paused past its lease
    assert second.hold()
    assert not first.hold()  # token-checked: it finds the lease taken
    second.release()
    assert first.hold()


# --- resuming a stream ---------------------------------------------------------------------------


async def _open(user: Any, query: str, last: str | None = None) -> Stream:
    client = AsyncClient()
    await client.aforce_login(user)
    headers = {"Last-Event-ID": last} if last is not None else {}
    stream = Stream(await client.get(f"/events/?{query}", headers=headers))
    assert await stream.next() == ("", "connected")
    return stream


def _position(changes: Any) -> str:
    found = changes.read(None)
    assert not isinstance(found, log.Gap)
    return log.position_id(found[0])


def _running_at(position: str) -> None:
    """The process's feed has read the log up to `position`."""
    running = feed.ensure_running()
    deadline = time.monotonic() + 10
    while log.position_id(running.listener.position()) != position:
        assert time.monotonic() < deadline, "the feed did not follow the log"
        time.sleep(0.02)


def test_a_reconnecting_stream_gets_exactly_what_it_missed_then_goes_on_live(
        changes, agent):
    mine, hidden = new_case_id(), new_case_id()
    changes.append(_row(mine, 1), 1.0)
    feed.ensure_running()
    before = _position(changes)
    _running_at(before)
    # While the tab was away: two changes of its case, one of a case in a queue it cannot see.
    changes.append(_row(mine, 2), 2.0)
    changes.append(_row(hidden, 1, queue="billing"), 2.0)
    changes.append(_row(mine, 3), 3.0)
    away = _position(changes)
    _running_at(away)

    async def scenario() -> None:
        stream = await _open(agent, f"case={mine}", last=before)
        assert await stream.message() == ("case", "2")
        assert await stream.message() == ("case", "3")
        assert stream.last_id == away  # told where it stands now: past the hidden change
        await asyncio.to_thread(changes.append, _row(mine, 4), 4.0)
        assert await stream.message() == ("case", "4")  # once, live
        await stream.close()
        # Coming back from where it is: nothing again.
        again = await _open(agent, f"case={mine}", last=stream.last_id)
        assert again.last_id == stream.last_id
        await asyncio.to_thread(changes.append, _row(mine, 5), 5.0)
        assert await again.message() == ("case", "5")
        await again.close()

    async_to_sync(scenario)()


def test_a_list_stream_resumes_its_rows_by_the_access_rule(changes, agent):
    theirs, billing = new_case_id(), new_case_id()
    changes.append(_row(theirs, 1), 1.0)
    changes.append(_row(billing, 1, queue="billing"), 1.0)
    feed.ensure_running()
    before = _position(changes)
    _running_at(before)
    changes.append(_row(theirs, 2, title="Toner <low>"), 2.0)
    changes.append(_row(billing, 2, queue="billing", title="Secret billing"), 2.0)
    _running_at(_position(changes))

    async def scenario() -> None:
        # Through `last=`, as the page and the htmx extension open a stream.
        stream = await _open(agent, f"assignee=none&last={before}")
        name, data = await stream.message()
        assert name == "row" and f'id="row-{theirs}"' in data and "Toner &lt;low&gt;" in data
        await asyncio.to_thread(changes.append, _row(billing, 3, queue="billing"), 3.0)
        await asyncio.to_thread(changes.append, _row(theirs, 3), 3.0)
        name, data = await stream.message()
        assert name == "row" and f'id="row-{theirs}"' in data
        assert "Secret" not in stream.buffer
        await stream.close()

    async_to_sync(scenario)()


def test_a_stream_whose_position_is_gone_is_told_once_to_re_read(changes, agent, settings):
    settings.FEED_RECENT = 5  # this process keeps the last five changes
    case = new_case_id()
    changes.append(_row(case, 1), 1.0)
    feed.ensure_running()
    before = _position(changes)
    _running_at(before)
    for version in range(2, 12):
        changes.append(_row(case, version), 1.0)
    _running_at(_position(changes))

    async def scenario() -> None:
        for n, last in enumerate((before, "deadbeef-3", "not an id"), start=100):
            stream = await _open(agent, f"case={case}", last=last)
            assert await stream.message() == ("list", "")
            assert await stream.message() == ("case", "")
            await asyncio.to_thread(changes.append, _row(case, n), 1.0)
            assert await stream.message() == ("case", str(n))
            await stream.close()

    async_to_sync(scenario)()
