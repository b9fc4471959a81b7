"""The change feed against the real dev server: bursts arrive whole, late rows still arrive,
another process takes the lease when its holder dies, and shared answers stay fresh."""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta

import pytest

from cases import temporal as gateway
from cases.live import answers, feed
from cases.store import wire
from cases.temporal import rows as temporal_rows
from cases.temporal.visibility import CaseFilter
from workers.model import AddComment, Claim

from .conftest import run


@pytest.fixture
def quick_feed(settings, temporal):
    settings.FEED_INTERVAL_SECONDS = 0.2
    settings.FEED_LISTEN_SECONDS = 0.05
    settings.FEED_LEASE_SECONDS = 1
    feed.stop()
    from django.core.cache import caches

    caches[settings.FEED_CACHE].clear()
    yield feed.ensure_running()
    feed.stop()


def _collect(case_ids: set[str], until: float, want: int = 0) -> list[feed.Change]:
    """Subscribe on the harness loop and gather changes of `case_ids` until `until`."""
    async def gather() -> list[feed.Change]:
        got: list[feed.Change] = []
        async with feed.subscribe() as events:
            while time.monotonic() < until:
                try:
                    event = await asyncio.wait_for(anext(events), 0.2)
                except TimeoutError:
                    continue
                if isinstance(event, feed.Change) and event.case_id in case_ids:
                    got.append(event)
                    if want and len({(c.case_id, c.row.version) for c in got}) >= want:
                        break
        return got

    return run(gather())


def test_a_burst_of_changes_across_many_cases_all_arrive_once(quick_feed, open_case, temporal):
    ids = [open_case(title=f"Burst {i}", queue="general") for i in range(20)]
    time.sleep(0.5)  # the openings are published first; the burst is what we wait for

    async def burst() -> None:
        await asyncio.gather(*(gateway.act(c, Claim(actor="alice")) for c in ids))

    future = temporal.loop.submit(burst())
    changes = _collect(set(ids), time.monotonic() + 30, want=40)
    future.result(30)
    seen = [(c.case_id, c.row.version) for c in changes]
    assert len(seen) == len(set(seen))  # never twice, the overlap notwithstanding
    claimed = {c.case_id for c in changes if c.row.assignee == "alice"}
    assert claimed == set(ids)
    # Each claim knows the row it replaced (for cached answers and for screens).
    for change in changes:
        if change.row.assignee == "alice":
            assert change.before is not None and change.before.assignee is None


def test_a_row_indexed_after_the_watermark_passed_it_still_arrives(quick_feed, open_case,
                                                                  settings):
    from django.core.cache import caches

    store = caches[settings.FEED_CACHE]
    case_id = open_case(title="Late row", queue="general")
    _collect({case_id}, time.monotonic() + 10, want=1)
    # Stop the poller, change the case, then move the watermark past the change, as if the
    # row had been indexed after the poller had already looked beyond its time.
    feed.stop()
    state = run(gateway.act(case_id, AddComment(actor="alice", body="indexed late")))
    store.set(feed.KEY_WATERMARK, wire.dump(wire.TIME, state.updated_at + timedelta(seconds=5)),
              timeout=None)
    feed.ensure_running()
    changes = _collect({case_id}, time.monotonic() + 15, want=1)
    assert any(c.row.version == state.version for c in changes)


def test_when_the_lease_holder_dies_another_process_takes_over(quick_feed, open_case):
    holder = quick_feed.poller
    first = open_case(title="Before the holder died", queue="general")
    _collect({first}, time.monotonic() + 10, want=1)
    assert holder.polls > 0
    # The holder dies without letting go; a second process's feed (its own poller) waits
    # for the lease to lapse, then polls.
    feed.stop()
    other = feed.ensure_running()
    assert other.poller.lease is not holder.lease
    second = open_case(title="After the holder died", queue="general")
    changes = _collect({second}, time.monotonic() + 15, want=1)
    assert changes and other.poller.polls > 0


def test_a_shared_count_costs_no_call_until_a_change_touches_it(quick_feed, open_case,
                                                               settings, monkeypatch):
    settings.VISIBILITY_CACHE_SECONDS = 3.0
    answers.forget()
    f = CaseFilter(queues=["general"], statuses=["new"])
    query = f.query()

    def matches(row: gateway.CaseRow) -> bool | None:
        return f.matches(row)

    calls = 0
    real = temporal_rows._count_cases

    async def counting(q: str) -> int:
        nonlocal calls
        if q == query:
            calls += 1
        return await real(q)

    monkeypatch.setattr(temporal_rows, "_count_cases", counting)
    case_id = open_case(title="Counted", queue="general")
    _collect({case_id}, time.monotonic() + 10, want=1)
    first = run(answers.count_cases(query, matches=matches))
    for _ in range(5):
        assert run(answers.count_cases(query, matches=matches)) == first
    assert calls == 1
    time.sleep(answers.MARGIN_SECONDS + 0.1)  # a change the answer cannot already hold
    run(gateway.act(case_id, Claim(actor="alice")))  # new -> in progress: leaves the count
    _collect({case_id}, time.monotonic() + 10, want=1)
    time.sleep(0.3)  # this process's listener reads it too
    assert run(answers.count_cases(query, matches=matches)) == first - 1
    assert calls == 1  # corrected from the feed, not asked again
    # A change that does not touch it (a comment on a case not in it) costs nothing either.
    run(gateway.act(case_id, AddComment(actor="alice", body="no effect")))
    _collect({case_id}, time.monotonic() + 10, want=1)
    assert run(answers.count_cases(query, matches=matches)) == first - 1
    assert calls == 1
    # And a fresh Count agrees with the corrected one.
    assert run(gateway.count_cases(query)) == first - 1


def test_a_new_case_joins_a_shared_first_page_and_counts_without_a_call(
        quick_feed, open_case, settings, monkeypatch):
    """A case that comes into a filter takes its place on the shared first page (newest
    start first) and in its Count from the feed, and a fresh List and Count agree."""
    settings.VISIBILITY_CACHE_SECONDS = 3.0
    answers.forget()
    tag = f"join{time.time_ns() % 10**9}"
    f = CaseFilter(tag=tag, execution="live")
    query = f.query()
    calls: list[str] = []
    real_list, real_count = temporal_rows._list_cases, temporal_rows._count_cases

    async def listing(q: str, *args, **kwargs):
        if q == query:
            calls.append("list")
        return await real_list(q, *args, **kwargs)

    async def counting(q: str) -> int:
        if q == query:
            calls.append("count")
        return await real_count(q)

    monkeypatch.setattr(temporal_rows, "_list_cases", listing)
    monkeypatch.setattr(temporal_rows, "_count_cases", counting)
    older = [open_case(title=f"Older {n}", queue="general", tags=[tag]) for n in range(2)]
    _collect(set(older), time.monotonic() + 10, want=2)
    page = run(answers.list_cases(query, 3, matches=f.matches))
    count = run(answers.count_cases(query, matches=f.matches))
    assert [r.case_id for r in page.rows] == older[::-1] and count == 2
    time.sleep(answers.CLOCK_SKEW_SECONDS + 0.1)  # made after the answers came
    newest = open_case(title="Newest", queue="general", tags=[tag])
    _collect({newest}, time.monotonic() + 10, want=1)
    time.sleep(0.3)  # this process's listener reads it too
    page = run(answers.list_cases(query, 3, matches=f.matches))
    assert [r.case_id for r in page.rows] == [newest, *older[::-1]]
    assert run(answers.count_cases(query, matches=f.matches)) == 3
    assert calls == ["list", "count"]  # placed and counted from the feed
    assert [r.case_id for r in run(gateway.list_cases(query, 3)).rows] == \
        [r.case_id for r in page.rows]
    assert run(gateway.count_cases(query)) == 3


def test_the_visibility_budget_holds_as_the_server_counts_it(temporal, settings):
    """Many simulated readers at once; the server's own metrics show the calls kept to the
    deployment-wide budget (a slot per call in the shared store)."""
    from .conftest import settled_visibility_calls, visibility_calls

    settings.VISIBILITY_RPS = 5
    settings.VISIBILITY_WAIT_SECONDS = 30  # all 25 wait their turn (pages get 4 a window)
    query = "WorkflowType = 'Case' AND CaseTitle = 'budgettest'"

    async def readers() -> None:
        await asyncio.gather(*(gateway.count_cases(query) for _ in range(25)))

    feed.stop()  # this test's readers are to be the only ones
    before = settled_visibility_calls(temporal)
    time.sleep(1.0 - time.time() % 1.0)  # start at a window's edge, like a real burst would
    started = time.monotonic()
    run(readers())
    elapsed = time.monotonic() - started
    # The server publishes its counters every few seconds: wait until they show the burst.
    deadline = time.monotonic() + 15
    while (calls := visibility_calls(temporal) - before) < 25 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert calls >= 25
    # 25 calls at 5 per one-second window need at least four more windows.
    assert elapsed >= 4.0, elapsed
    assert calls / (elapsed + 1.0) <= 5.0 + 0.5


@pytest.mark.parametrize("case_filter", [
    CaseFilter(queues=["general"]),
    CaseFilter(queues=["general"], statuses=["new"]),
    CaseFilter(queues=["general"], statuses=["in_progress"], assignee="alice"),
    CaseFilter(queues=["general"], assignee="none"),
    CaseFilter(queues=["general"], assignee="me"),
    CaseFilter(queues=["general"], priorities=[1, 2], tag="vip"),
    CaseFilter(queues=["general"], breached=False, execution="live"),
    CaseFilter(queues=["general"], execution="ended"),
])
def test_a_filter_read_in_python_agrees_with_visibility(case_filter, open_case):
    """CaseFilter.matches is what keeps shared answers fresh: it must say what the index
    says for every row it is sure about."""
    from workers.model import Close

    from .conftest import eventually

    tag = f"m{int(time.time() * 1000) % 10**9}"
    ids = [open_case(title="Matcher", queue="general", priority=p, tags=[tag, *extra])
           for p, extra in ((1, ["vip"]), (2, []), (3, ["vip"]))]
    run(gateway.act(ids[0], Claim(actor="alice")))
    run(gateway.act(ids[2], Close(actor="sam")))
    universe = f"WorkflowType = 'Case' AND CaseTags = '{tag}'"

    def agree() -> None:
        rows = run(gateway.list_cases(universe, 20)).rows
        assert len(rows) == 3 and all(r.version for r in rows)
        listed = {r.case_id for r in run(gateway.list_cases(
            f"{case_filter.query(me='alice')} AND CaseTags = '{tag}'", 20)).rows}
        for row in rows:
            verdict = case_filter.matches(row, me="alice")
            assert verdict is not None
            assert verdict == (row.case_id in listed), (row, verdict)

    eventually(agree, timeout=10)


def test_redis_restarted_mid_stream_resyncs_and_the_feed_carries_on(
        redis_server, settings, temporal, open_case):
    """The shared store is real Redis; it restarts (losing everything) between two changes:
    subscribers are told to re-read (Resync) and later changes still arrive."""
    settings.CACHES = {**settings.CACHES, "feedredis": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": redis_server.url, "KEY_PREFIX": "feedtest",
        "OPTIONS": {"serializer": "cases.store.wire.JSONSerializer"}}}
    settings.FEED_CACHE = "feedredis"
    settings.FEED_INTERVAL_SECONDS = 0.2
    settings.FEED_LISTEN_SECONDS = 0.05
    settings.FEED_LEASE_SECONDS = 1
    feed.stop()
    feed.ensure_running()
    try:
        before = open_case(title="Before the restart", queue="general")
        assert _collect({before}, time.monotonic() + 15, want=1)

        async def across_restart() -> tuple[list[object], str]:
            got: list[object] = []
            async with feed.subscribe() as events:
                await asyncio.to_thread(redis_server.restart)
                after = await asyncio.to_thread(
                    lambda: open_case(title="After the restart", queue="general"))
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    try:
                        event = await asyncio.wait_for(anext(events), 0.2)
                    except TimeoutError:
                        continue
                    got.append(event)
                    if isinstance(event, feed.Change) and event.case_id == after:
                        break
            return got, after

        events, after = asyncio.run(across_restart())
        assert any(isinstance(e, feed.Resync) for e in events)
        assert any(isinstance(e, feed.Change) and e.case_id == after for e in events)
    finally:
        feed.stop()


def test_the_shared_store_is_one_backend_for_every_task_and_thread(settings):
    """Every request (an asyncio task) and every feed read (asyncio.to_thread) uses the same
    backend, so with Redis one connection pool per process, not one per request."""
    from cases import store

    async def in_a_task() -> object:
        return store.shared()

    async def everywhere() -> list[object]:
        tasks = [await asyncio.create_task(in_a_task()) for _ in range(3)]
        return tasks + [await asyncio.to_thread(store.shared) for _ in range(2)]

    found = asyncio.run(everywhere())
    assert all(backend is found[0] for backend in found)
    settings.FEED_CACHE = "default"  # a changed setting is a fresh backend
    assert store.shared() is not found[0]


def test_the_open_pages_of_a_changed_case_share_one_query(quick_feed, open_case):
    """After a pushed change every open page of the case re-asks at once: one Query answers
    them all; a change the feed announces later is a new Query, never the stored state."""
    from cases.config.access import Access
    from cases.web import lookup

    states = lookup.SharedStates()
    access = Access("alice", "agent", ("general",))
    case_id = open_case(title="Watched by many", queue="general")
    _collect({case_id}, time.monotonic() + 10, want=1)

    def announce(body: str) -> int:
        version = run(gateway.act(case_id, AddComment(actor="alice", body=body))).version
        deadline = time.monotonic() + 10
        while (quick_feed.listener.known_version(case_id) or 0) < version \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        return version

    async def pages(n: int) -> list[int]:
        seen = await asyncio.gather(*(
            lookup.case_for(access, case_id, refresh=True) for _ in range(n)))
        return [s.state.version for s in seen]

    first = announce("one")
    lookup.STATES, real = states, lookup.STATES
    try:
        assert run(pages(8)) == [first] * 8
        assert (states.queries, states.shared) == (1, 7)
        second = announce("two")  # the stored state is older than what the feed knows
        assert run(pages(3)) == [second] * 3 and states.queries == 2
        # A shared state still passes the one access rule, user by user.
        other = Access("bob", "agent", ("billing",))
        with pytest.raises(Exception, match="No such case"):
            run(lookup.case_for(other, case_id, refresh=True))
    finally:
        lookup.STATES = real


def test_a_busy_local_memory_store_keeps_every_change(settings):
    """`make run`'s log is in memory: hundreds of changes between two reads all arrive."""
    from cases.live import log

    changes_log = log.current()
    changes_log.forget()
    listener = feed.Listener()
    listener.read_once()  # starts from now
    emitted: list[object] = []
    listener._emit = lambda events, position: emitted.extend(events)  # type: ignore[method-assign]
    for n in range(400):
        row = gateway.CaseRow(case_id=f"case-{n:08d}", title="t", status="new", priority=3,
                              queue="general", assignee=None, tags=[], due_at=None,
                              updated_at=None, sla_breached=False, started_at=None,
                              execution_status="running", version=2)
        changes_log.append(row, time.time())
    listener.read_once()
    assert len(emitted) == 400 and listener.resyncs == 0
