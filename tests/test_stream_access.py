"""An open stream is a request that never ends: every change of access (queues, groups, role,
activation, password, logout) reaches it within seconds, and it holds no more than its share
(streams per session and user, a lifetime). Against the fake feed of test_events.py, with the
real middleware, sessions, signals and access versions."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.db import connection
from django.test import AsyncClient
from django.test.utils import CaptureQueriesContext

from cases.config import access_version
from cases.live import guards
from cases.models import Queue
from cases.temporal.ids import new_case_id

from .test_events import Stream, _change, _row, _sync

BOUND = 3.0  # seconds within which a change of access must reach an open stream


@pytest.fixture(autouse=True)
def quick(settings: Any) -> None:
    settings.STREAM_WATCH_SECONDS = 0.1


async def _open(client: AsyncClient, query: str) -> Stream:
    stream = Stream(await client.get(f"/events/?{query}"))
    assert await stream.next() == ("", "connected")
    return stream


async def _client(user: Any) -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(user)
    return client


async def _until_end(stream: Stream, bound: float = BOUND) -> list[tuple[str, str]]:
    """Every message until the server ends the stream; fails if it is still open after
    `bound` seconds."""
    got: list[tuple[str, str]] = []
    deadline = time.monotonic() + bound
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"the stream is still open after {bound} s; it sent {got}"
        try:
            name, data = await asyncio.wait_for(stream.next(), left)
        except StopAsyncIteration:
            return got
        if name:
            got.append((name, data))


async def _hears_nothing(stream: Stream, seconds: float = 0.5) -> None:
    """Nothing but comments for `seconds`; then the stream is closed (a read cancelled while
    it waits is how the browser's going away looks to the response)."""
    async def real() -> tuple[str, str]:
        return await stream.message()

    reading = asyncio.ensure_future(real())
    done, _ = await asyncio.wait({reading}, timeout=seconds)
    assert not done, reading.result()
    reading.cancel()
    with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
        await reading


def test_removing_an_agent_from_a_queue_ends_their_open_streams(agent, fake_feed,
                                                                fake_listing):
    technical = new_case_id()

    async def scenario() -> None:
        client = await _client(agent)
        listing = await _open(client, "queue=technical")
        page = await _open(client, f"case={technical}")
        fake_feed.publish(_change(_row(technical, version=3), _row(technical)))
        assert (await page.message()) == ("case", "3")  # still theirs
        assert (await listing.message())[0] == "row"
        started = time.monotonic()
        queue = await Queue.objects.aget(slug="technical")
        await sync_to_async(queue.agents.remove)(agent)
        # The list re-reads (a fresh request, under the new access) and the stream ends; so
        # does the case page's: nothing more of the case is sent on either.
        for stream in (listing, page):
            got = await _until_end(stream)
            assert ("list", "") in got and ("case", "") in got
            assert all(technical not in data for _, data in got), got
        assert time.monotonic() - started < BOUND
        # A fresh request is under the new access: the stream it opens hears nothing of it.
        again = await _open(client, f"case={technical}")
        fake_feed.publish(_change(_row(technical, version=4), _row(technical, version=3)))
        await _hears_nothing(again)

    _sync(scenario)


def test_a_demoted_supervisor_stops_seeing_every_queue(supervisor, fake_feed, fake_listing):
    billing = new_case_id()

    async def scenario() -> None:
        client = await _client(supervisor)
        page = await _open(client, f"case={billing}")
        fake_feed.publish(_change(_row(billing, queue="billing", version=2),
                                  _row(billing, queue="billing")))
        assert await page.message() == ("case", "2")

        def demote() -> None:
            supervisor.groups.remove(Group.objects.get(name="Supervisor"))
            supervisor.groups.add(Group.objects.get_or_create(name="Agent")[0])
            Queue.objects.get(slug="technical").agents.add(supervisor)

        await sync_to_async(demote)()
        got = await _until_end(page)
        assert ("case", "") in got and ("case", "3") not in got

    _sync(scenario)


@pytest.mark.parametrize("change", ["logout", "password", "deactivation", "deletion"])
def test_a_session_that_is_no_longer_signed_in_ends_its_streams(agent, fake_feed, change):
    case = new_case_id()

    async def scenario() -> None:
        client = await _client(agent)
        stream = await _open(client, f"case={case}")
        if change == "logout":
            other_tab = AsyncClient()
            other_tab.cookies = client.cookies  # the same browser, another tab
            response = await other_tab.post("/logout/")
            assert response.status_code == 302
        elif change == "password":
            agent.set_password("another-long-passphrase")
            await agent.asave()
        elif change == "deactivation":
            agent.is_active = False
            await agent.asave(update_fields=["is_active"])
        else:
            await agent.adelete()
        got = await _until_end(stream)
        assert got[-1][0] == "signed-out"
        assert got[-1][1] == f"/login/?next=%2Fcases%2F{case}%2F"
        assert all(name != "case" for name, _ in got)

    _sync(scenario)


def test_a_change_that_keeps_access_keeps_the_stream(agent, fake_feed):
    case = new_case_id()

    async def scenario() -> None:
        client = await _client(agent)
        stream = await _open(client, f"case={case}")
        agent.first_name = "Alice"
        await agent.asave()
        await asyncio.sleep(0.5)  # the watcher has seen the bump; the re-check found no change
        fake_feed.publish(_change(_row(case, version=5), _row(case, version=4)))
        assert await stream.message() == ("case", "5")
        await stream.close()

    _sync(scenario)


def test_periodic_rechecks_leave_no_waiting_task_behind(agent, fake_feed, settings):
    """A timed re-check dropped the stream's pending wait for its wake-up without cancelling
    it: one orphaned task per stream per EVENTS_RECHECK_SECONDS, each logged as "Task was
    destroyed but it is pending!" (337 in a 2-minute bench at 500 agents)."""
    settings.EVENTS_RECHECK_SECONDS = 0.05

    async def scenario() -> None:
        client = await _client(agent)
        stream = await _open(client, f"case={new_case_id()}")
        before = len(asyncio.all_tasks())
        await _hears_nothing(stream, 0.6)  # a dozen re-checks, then the stream closes
        waits = [t for t in asyncio.all_tasks() if "Event.wait" in repr(t.get_coro())]
        assert waits == [] and len(asyncio.all_tasks()) <= before

    _sync(scenario)


def test_a_session_deleted_behind_djangos_back_is_caught_by_the_periodic_recheck(
        agent, fake_feed, settings):
    settings.EVENTS_RECHECK_SECONDS = 0.3

    async def scenario() -> None:
        client = await _client(agent)
        stream = await _open(client, f"case={new_case_id()}")
        key = client.cookies[settings.SESSION_COOKIE_NAME].value
        # No signal, no bump: a script or `clearsessions` removed it.
        await Session.objects.filter(session_key=key).adelete()
        from django.core.cache import cache
        await cache.aclear()  # the cached_db copy too
        got = await _until_end(stream)
        assert [name for name, _ in got] == ["signed-out"]

    _sync(scenario)


def test_the_oldest_stream_of_a_session_or_user_makes_way(agent, fake_feed, settings):
    settings.EVENTS_MAX_PER_SESSION = 2
    settings.EVENTS_MAX_PER_USER = 3

    async def scenario() -> None:
        client = await _client(agent)
        first = await _open(client, f"case={new_case_id()}")
        second = await _open(client, f"case={new_case_id()}")
        third = await _open(client, f"case={new_case_id()}")
        assert await _until_end(first) == [("ended", guards.DISPLACED)]
        # Another browser of the same user: the user's limit is 3 in this process.
        laptop = await _client(agent)
        fourth = await _open(laptop, f"case={new_case_id()}")
        fifth = await _open(laptop, f"case={new_case_id()}")
        assert await _until_end(second) == [("ended", guards.DISPLACED)]
        assert guards.OPEN.count("user", agent.pk) == 3
        for stream in (third, fourth, fifth):
            await stream.close()
        await asyncio.sleep(0.1)
        assert guards.OPEN.count("user", agent.pk) == 0

    _sync(scenario)


def test_two_hundred_streams_of_one_session_hold_no_more_than_its_share(agent, fake_feed,
                                                                        settings):
    settings.EVENTS_MAX_PER_SESSION = 8

    async def scenario() -> None:
        client = await _client(agent)
        streams = [await _open(client, f"case={new_case_id()}") for _ in range(200)]
        assert guards.OPEN.count("session", client.cookies[
            settings.SESSION_COOKIE_NAME].value) == 8
        for stream in streams[:192]:
            assert await _until_end(stream) == [("ended", guards.DISPLACED)]
        for stream in streams[192:]:
            await stream.close()

    _sync(scenario)


def test_a_stream_ends_after_its_lifetime(agent, fake_feed, settings):
    settings.EVENTS_MAX_AGE_SECONDS = 0.3

    async def scenario() -> None:
        client = await _client(agent)
        stream = await _open(client, f"case={new_case_id()}")
        started = time.monotonic()
        assert await _until_end(stream) == []  # ends quietly; the browser reconnects
        assert 0.25 < time.monotonic() - started < 1.5

    _sync(scenario)


@contextlib.asynccontextmanager
async def _queries() -> Any:
    """The queries made meanwhile on the thread the request's database hops run on."""
    captured = CaptureQueriesContext(connection)
    await sync_to_async(captured.__enter__)()
    try:
        yield captured
    finally:
        await sync_to_async(captured.__exit__)(None, None, None)


def test_a_request_reads_no_table_before_it_starts_and_a_change_is_seen_at_once(
        agent, fake_feed):
    """The session, the user and the configuration come from the shared store under the
    access versions; a queue change bumps them, so the next request reads it fresh."""

    async def scenario() -> Any:
        client = await _client(agent)
        await client.get(f"/events/?case={new_case_id()}")  # warms the cache
        async with _queries() as warm:
            response = await client.get(f"/events/?case={new_case_id()}")
        stream = Stream(response)
        await stream.next()
        await stream.close()
        queue = await Queue.objects.aget(slug="general")
        await sync_to_async(queue.agents.remove)(agent)
        async with _queries() as changed:
            response = await client.get("/cases/?queue=general")
        return warm, changed, response

    warm, changed, response = _sync(scenario)
    assert [q["sql"] for q in warm.captured_queries] == []
    assert len(changed.captured_queries) >= 2  # the user and configuration, read again
    # general is no longer a queue alice may filter by.
    assert b'value="general"' not in response.content


def test_bumps_land_in_the_store_for_every_kind_of_change(agent, admin_user):
    def version() -> str:
        return access_version.current(agent.pk)[agent.pk]

    seen = [version()]
    queue = Queue.objects.get(slug="billing")
    for change in (lambda: queue.agents.add(agent),
                   lambda: agent.case_queues.remove(queue),
                   lambda: agent.groups.clear(),
                   lambda: Group.objects.get_or_create(name="Supervisor")[0].user_set.add(agent),
                   lambda: Queue.objects.filter(slug="general").delete(),
                   lambda: agent.save()):
        change()
        seen.append(version())
        assert seen[-1] != seen[-2], f"change {len(seen) - 1} did not bump"
    agent.save(update_fields=["last_login"])  # a login changes nobody's access
    assert version() == seen[-1]


def test_the_store_keeps_no_password_hash_and_a_cached_user_saves_without_losing_it(agent):
    """The request path caches the user without their password hash (the session's auth hash
    is what the sign-in check compares); a cached user that is saved keeps its password."""
    from django.conf import settings as django_settings
    from django.contrib.auth import get_user_model
    from django.test import Client

    from cases import store
    from cases.config import reading as config
    from cases.store import wire

    client = Client()
    client.force_login(agent)
    # Any page resolves its user (this one then finds no Temporal here: a 503).
    assert client.get("/cases/").wsgi_request.user.get_username() == "alice"
    version = access_version.current(agent.pk)[agent.pk]
    raw = store.shared().get(config._user_key(agent.pk, version))
    assert raw is not None and "password" not in raw
    assert agent.password not in str(raw)
    key = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    found = config.resolve_session(_session_store()(key))
    assert found.user is not None and found.user.get_deferred_fields() == {"password",
                                                                            "last_login"}
    found.user.first_name = "Alice"
    found.user.save()
    fresh = get_user_model().objects.get(pk=agent.pk)
    assert fresh.first_name == "Alice" and fresh.check_password("correct-horse-battery-staple")
    assert wire.load(config.SIGNED_IN, raw).auth_hash == agent.get_session_auth_hash()


def _session_store() -> Any:
    from importlib import import_module

    from django.conf import settings as django_settings

    return import_module(django_settings.SESSION_ENGINE).SessionStore


def test_with_a_local_store_a_change_made_in_another_process_is_read_within_seconds(
        agent, monkeypatch):
    """`make run` keeps its store in the web process's memory: a change made elsewhere (a
    management command; here an update that sends no signal) bumps nothing there, so what is
    cached lives only LOCAL_CACHE_SECONDS."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from cases.config import reading as config

    monkeypatch.setattr(config, "LOCAL_CACHE_SECONDS", 0.5)
    client = Client()
    client.force_login(agent)
    assert client.get("/cases/").wsgi_request.user.is_authenticated
    get_user_model().objects.filter(pk=agent.pk).update(is_active=False)
    assert client.get("/cases/").wsgi_request.user.is_authenticated  # still cached
    time.sleep(0.6)
    assert not client.get("/cases/").wsgi_request.user.is_authenticated


def test_who_can_see_a_queue_is_read_once_and_again_after_any_access_change(
        agent, other_agent, supervisor):
    """The mention list (every case page, pushed ones included) is kept under the PEOPLE
    version: read from the database once, and read again after each kind of change that
    decides who sees a queue."""
    from cases.config.reading import seeing_queue

    first = seeing_queue("billing")
    assert "sam" in first and "alice" not in first and "bob" not in first
    with CaptureQueriesContext(connection) as again:
        assert seeing_queue("billing") == first
    assert again.captured_queries == []
    billing = Queue.objects.get(slug="billing")
    agents = Group.objects.get(name="Agent")
    for change, holds in (
            (lambda: billing.agents.add(agent), lambda names: "alice" in names),
            (lambda: agent.groups.remove(agents), lambda names: "alice" not in names),
            (lambda: agents.user_set.add(agent), lambda names: "alice" in names),
            (lambda: other_agent.case_queues.add(billing), lambda names: "bob" in names),
            (lambda: _deactivate(supervisor), lambda names: "sam" not in names),
            (lambda: billing.agents.clear(), lambda names: not {"alice", "bob"} & set(names))):
        change()
        assert holds(seeing_queue("billing")), seeing_queue("billing")


def _deactivate(user: Any) -> None:
    user.is_active = False
    user.save()


def test_a_mention_list_entry_ends_with_its_lifetime_when_no_signal_came(
        agent, supervisor, monkeypatch):
    """A change that sends no signal (an update() in a shell) moves no version: the entry
    is read again when its lifetime ends (the cached configuration's, here the local
    store's)."""
    from django.contrib.auth import get_user_model

    from cases import store
    from cases.config import reading as config

    monkeypatch.setattr(config, "LOCAL_CACHE_SECONDS", 0.3)
    monkeypatch.setattr(config, "_CACHE_SECONDS", 0.3)
    assert "sam" in config.seeing_queue("billing")
    get_user_model().objects.filter(pk=supervisor.pk).update(is_active=False)
    assert "sam" in config.seeing_queue("billing")  # still the entry
    time.sleep(0.4)
    assert "sam" not in config.seeing_queue("billing"), store.spans_processes()
