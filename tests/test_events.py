"""The server-push stream (`GET /events/`, cases/live/) against a fake feed: what each
page is told, under the one access rule, with rows rendered once for every stream."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync
from django.test import AsyncClient

from cases import temporal as gateway
from cases.live import audience, feed, listing, sse
from cases.temporal.ids import new_case_id
from cases.web import events as web_events
from workers.model import STATUSES

READ_TIMEOUT = 5.0


class FakeFeed:
    """`feed.follow`, `feed.ensure_running` and `feed.position` as the streams use them;
    `publish` hands an event to every follower the way the real listener does
    (feed._hand_out): the audiences and their answers are the real ones."""

    def __init__(self) -> None:
        self.followers: list[Any] = []
        self.started = 0

    def ensure_running(self) -> None:
        self.started += 1

    def follow(self, take: Any) -> Any:
        sub = feed._Subscriber(asyncio.get_running_loop(), take)
        self.followers.append(sub)
        return lambda: self.followers.remove(sub)

    def position(self) -> Any:
        return None

    def publish(self, event: Any) -> None:
        feed._hand_out(list(self.followers), [event])


class FakeListing:
    """`listing.results` as the pushed renders ask it: the rows it is given, tallied, and
    every question it was asked (each one would be a shared-answer lookup)."""

    def __init__(self) -> None:
        self.rows: list[Any] = []
        self.asked: list[str] = []

    async def results(self, asked: listing.Questions, page_token: str | None = None) -> Any:
        self.asked.append(asked.listing[0])
        counts = {s: sum(1 for r in self.rows if r.status == s) for s in STATUSES}
        return listing.Results(gateway.CasePage(list(self.rows)), counts)


# The fake_feed and fake_listing fixtures (tests/conftest.py) install the two fakes above.


def _row(case_id: str, *, queue: str = "technical", assignee: str | None = None,
         version: int = 2, status: str = "new", title: str = "Printer on fire") -> Any:
    now = datetime.now(UTC)
    return gateway.CaseRow(
        case_id=case_id, title=title, status=status, priority=3, queue=queue,
        assignee=assignee, tags=[], due_at=None, updated_at=now, sla_breached=False,
        started_at=now, execution_status="running", version=version)


_seq = itertools.count(1)


def _change(row: Any, before: Any = None, seq: int | None = None) -> feed.Change:
    """A change at the next position of the feed, as the poller publishes them."""
    return feed.Change(seq=next(_seq) if seq is None else seq, case_id=row.case_id, row=row,
                       before=before)


class Stream:
    """One open /events/ response, read message by message."""

    def __init__(self, response: Any) -> None:
        assert response.status_code == 200, response.status_code
        self.response = response
        self.chunks = aiter(response.streaming_content)
        self.buffer = ""
        self.last_id = ""  # the position the browser would resume from

    async def next(self) -> tuple[str, str]:
        """The next message as (event, data); comments come back as ("", text)."""
        while True:
            while "\n\n" not in self.buffer:
                chunk = await asyncio.wait_for(anext(self.chunks), READ_TIMEOUT)
                self.buffer += chunk.decode()
            block, self.buffer = self.buffer.split("\n\n", 1)
            if not block.startswith("id: "):
                break
            self.last_id = block.removeprefix("id: ")  # a position only: nothing dispatched
        # An id sent right after the message counts as received with it.
        while self.buffer.startswith("id: ") and "\n\n" in self.buffer:
            marked, self.buffer = self.buffer.split("\n\n", 1)
            self.last_id = marked.removeprefix("id: ")
        name, data, comment = "", [], []
        for line in block.split("\n"):
            if line.startswith(":"):
                comment.append(line[1:].strip())
            elif line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data:"):
                data.append(line.removeprefix("data:").removeprefix(" "))
        return (name, "\n".join(data)) if name else ("", " ".join(comment))

    async def message(self) -> tuple[str, str]:
        """The next real message (keepalives and the opening comment skipped)."""
        while True:
            name, data = await self.next()
            if name:
                return name, data

    async def close(self) -> None:
        """Go away as a browser does: Django cancels the response while it waits."""
        reading = asyncio.ensure_future(anext(self.chunks))
        await asyncio.sleep(0.05)
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reading


async def _open(user: Any, query: str) -> Stream:
    client = AsyncClient()
    await client.aforce_login(user)
    stream = Stream(await client.get(f"/events/?{query}"))
    assert await stream.next() == ("", "connected")
    return stream


def _sync(coro_fn: Any) -> Any:
    return async_to_sync(coro_fn)()


def test_headers_and_login(client, agent, fake_feed):
    assert client.get("/events/").status_code == 302  # login required

    async def scenario() -> None:
        stream = await _open(agent, "")
        response = stream.response
        assert response["Content-Type"] == "text/event-stream"
        assert response["Cache-Control"] == "no-cache"
        assert response["X-Accel-Buffering"] == "no"
        assert fake_feed.started == 1 and len(fake_feed.followers) == 1
        await stream.close()
        # The client went away: the subscription is gone with it.
        assert fake_feed.followers == []

    _sync(scenario)


def test_an_agents_stream_never_carries_a_billing_case(agent, fake_feed, fake_listing):
    """alice works technical and general: nothing about a billing case reaches her, not
    even on a page that names it; a case that moved to billing only makes her list re-read."""
    billing, moved, mine = new_case_id(), new_case_id(), new_case_id()

    async def scenario() -> None:
        listing = await _open(agent, "")
        page = await _open(agent, f"case={billing}")
        fake_feed.publish(_change(_row(billing, queue="billing"),
                                  _row(billing, queue="billing", version=1)))
        fake_feed.publish(_change(_row(moved, queue="billing", version=3),
                                  _row(moved, queue="technical")))
        fake_feed.publish(_change(_row(mine, assignee="alice"), _row(mine)))
        got = [await listing.message() for _ in range(2)]
        assert got[0][0] == "row" and f'id="row-{mine}"' in got[0][1]
        # Moved away: the list's results again, told nothing of its new state.
        assert got[1][0] == "results" and got[1][1].startswith('<section id="results"')
        fake_feed.publish(feed.Resync("test"))
        resync = [await listing.message() for _ in range(2)]
        assert sorted(resync) == [("case", ""), ("list", "")]
        got += resync
        # The billing case's own page hears only the resync.
        assert sorted([await page.message(), await page.message()]) == [("case", ""),
                                                                        ("list", "")]
        for _name, data in got:
            assert billing not in data and moved not in data
        await listing.close()
        await page.close()

    _sync(scenario)


def test_a_list_stream_carries_rows_and_membership_changes(agent, fake_feed, fake_listing):
    unassigned, claimed, elsewhere = new_case_id(), new_case_id(), new_case_id()

    async def scenario() -> None:
        stream = await _open(agent, "assignee=none&queue=technical")
        # Still listed (priority changed): the row, no re-fetch.
        fake_feed.publish(_change(_row(unassigned, version=3, title="Toner <low>"),
                                  _row(unassigned)))
        name, data = await stream.message()
        assert name == "row"
        assert data.startswith(f'<tr id="row-{unassigned}" class="case-row" hx-swap-oob="true">')
        assert "Toner &lt;low&gt;" in data
        # A case the filter never showed and does not show: nothing (the next message is
        # about the case after it).
        fake_feed.publish(_change(_row(elsewhere, assignee="bob"),
                                  _row(elsewhere, assignee="bob", version=1)))
        # Claimed: it leaves the "unassigned" list: its row, then the list's new results,
        # counts and pager included, rendered from the shared answers.
        fake_listing.rows = [_row(unassigned, version=3, title="Toner <low>")]
        fake_feed.publish(_change(_row(claimed, assignee="alice"), _row(claimed)))
        name, data = await stream.message()
        assert name == "row" and f'id="row-{claimed}"' in data and "alice" in data
        name, data = await stream.message()
        assert name == "results"
        assert f'id="row-{unassigned}"' in data and f'id="row-{claimed}"' not in data
        assert "Toner &lt;low&gt;" in data
        assert '<span class="count" id="count-new" hx-swap-oob="true">1</span>' in data
        # The section re-fetches (the poll fallback, a catch-up) from the list's own address.
        assert 'hx-get="/cases/?assignee=none&amp;queue=technical"' in data
        # A new case (version 1) that matches comes into the list.
        fresh = new_case_id()
        fake_listing.rows.insert(0, _row(fresh, version=1))
        fake_feed.publish(_change(_row(fresh, version=1)))
        assert (await stream.message())[0] == "row"
        name, data = await stream.message()
        assert name == "results" and f'id="row-{fresh}"' in data
        await stream.close()

    _sync(scenario)


def test_a_status_change_in_place_pushes_the_chips(agent, fake_feed, fake_listing):
    """The queue list shows every status: a case changing status stays listed (its row),
    but two chips change number (the counts, out of band)."""
    case, elsewhere = new_case_id(), new_case_id()

    async def scenario() -> None:
        stream = await _open(agent, "queue=technical")
        fake_listing.rows = [_row(case, status="waiting", version=3)]
        fake_feed.publish(_change(_row(case, status="waiting", version=3),
                                  _row(case, status="new")))
        assert (await stream.message())[0] == "row"
        name, data = await stream.message()
        assert name == "counts"
        assert '<span class="count" id="count-waiting" hx-swap-oob="true">1</span>' in data
        assert '<span class="count" id="count-new" hx-swap-oob="true">0</span>' in data
        # A comment (same status) changes the row only; a case of another queue, nothing.
        fake_feed.publish(_change(_row(case, status="waiting", version=4),
                                  _row(case, status="waiting", version=3)))
        fake_feed.publish(_change(_row(elsewhere, queue="general", status="waiting"),
                                  _row(elsewhere, queue="general")))
        fake_feed.publish(_change(_row(case, status="waiting", version=5),
                                  _row(case, status="waiting", version=4)))
        assert [(await stream.message())[0] for _ in range(2)] == ["row", "row"]
        await stream.close()

    _sync(scenario)


def test_a_changed_list_is_rendered_once_for_every_stream_of_it(agent, other_agent,
                                                                 supervisor, fake_feed,
                                                                 fake_listing):
    """Six tabs of one queue list and a supervisor's: one change, two renders (one per list
    as its viewer may see it), each sent to all of its tabs."""
    case = new_case_id()

    async def scenario() -> None:
        same = [await _open(agent, "queue=technical&assignee=none") for _ in range(6)]
        boss = await _open(supervisor, "queue=technical&assignee=none")
        fake_listing.rows = [_row(new_case_id())]
        fake_feed.publish(_change(_row(case, assignee="bob"), _row(case)))
        got = []
        for s in [*same, boss]:
            assert (await s.message())[0] == "row"
            got.append(await s.message())
        assert {name for name, _ in got} == {"results"}
        assert len({data for _, data in got[:6]}) == 1
        for s in [*same, boss]:
            await s.close()

    _sync(scenario)
    assert audience.AUDIENCES.rendered == 2  # one per audience, not one per tab
    assert len(fake_listing.asked) == 2 and len(set(fake_listing.asked)) == 2

    _sync(scenario)


def test_a_case_stream_hears_its_case_only(agent, fake_feed):
    case, other = new_case_id(), new_case_id()

    async def scenario() -> None:
        stream = await _open(agent, f"case={case}")
        fake_feed.publish(_change(_row(other, version=7), _row(other)))
        fake_feed.publish(_change(_row(case, version=4), _row(case, version=3)))
        assert await stream.message() == ("case", "4")
        await stream.close()

    _sync(scenario)


def test_rows_are_rendered_once_per_audience_not_per_stream(agent, other_agent, fake_feed,
                                                            monkeypatch):
    renders: list[str] = []
    real = web_events.case_row  # the pages' row, which the push layer draws with

    def counting(row: Any, *args: Any, **kwargs: Any) -> Any:
        renders.append(row.case_id)
        return real(row, *args, **kwargs)

    monkeypatch.setattr(web_events, "case_row", counting)
    case = new_case_id()

    async def scenario() -> None:
        streams = [await _open(agent if n % 2 else other_agent, "queue=technical")
                   for n in range(6)]
        fake_feed.publish(_change(_row(case, version=5), _row(case, version=4)))
        rows = [await s.message() for s in streams]
        assert len({data for _, data in rows}) == 1 and rows[0][0] == "row"
        assert len(fake_feed.followers) == 2
        for s in streams:
            await s.close()

    _sync(scenario)
    # alice and bob see different queues: two audiences of three tabs, each works the change
    # out and renders its row once.
    assert audience.AUDIENCES.answered == 2
    assert renders == [case, case]


def test_alike_streams_share_one_answer_but_my_cases_stay_each_users_own(agent, fake_feed):
    """Streams alike in role, queues and filter get one evaluation per change, whoever
    holds them; 'assigned to me' differs per person, so it is worked out per person."""
    from .conftest import _persona

    carol = _persona("carol", "Agent", queues=("technical", "general"))  # alice's queues
    mine, others = new_case_id(), new_case_id()

    async def scenario() -> None:
        queue = [await _open(user, "queue=technical") for user in (agent, carol, agent)]
        fake_feed.publish(_change(_row(mine, version=3), _row(mine)))
        assert audience.AUDIENCES.answered == 1
        for s in queue:
            assert (await s.message())[0] == "row"
            await s.close()
        audience.AUDIENCES.answered = 0
        alice_mine, carol_mine = [await _open(user, "assignee=me") for user in (agent, carol)]
        fake_feed.publish(_change(_row(mine, assignee="alice", version=4),
                                  _row(mine, version=3)))
        fake_feed.publish(_change(_row(others, assignee="carol", version=2),
                                  _row(others, version=1)))
        assert audience.AUDIENCES.answered == 4  # two people, two changes
        assert f'id="row-{mine}"' in (await alice_mine.message())[1]
        assert f'id="row-{others}"' in (await carol_mine.message())[1]
        for s in (alice_mine, carol_mine):
            await s.close()

    _sync(scenario)


def test_list_changes_are_debounced_and_idle_streams_kept_alive(agent, fake_feed, settings,
                                                                fake_listing):
    settings.EVENTS_LIST_DEBOUNCE_SECONDS = 0.5
    settings.EVENTS_KEEPALIVE_SECONDS = 0.2
    ids = [new_case_id() for _ in range(4)]

    async def scenario() -> None:
        stream = await _open(agent, "assignee=none")
        loop = asyncio.get_running_loop()
        first = loop.time()
        for case in ids:  # four cases claimed at once: their rows now, one list push after
            fake_feed.publish(_change(_row(case, assignee="alice"), _row(case)))
        got = [await stream.message() for _ in range(5)]
        assert [name for name, _ in got] == ["row", "row", "row", "row", "results"]
        assert loop.time() - first <= 0.5 + 0.3  # at the next tick of the grid
        assert await stream.next() == ("", "keepalive")
        assert await stream.next() == ("", "keepalive")
        await stream.close()

    _sync(scenario)
    assert audience.AUDIENCES.rendered == 1


def test_a_list_that_cannot_be_rendered_is_re_read_by_its_page(agent, fake_feed,
                                                                monkeypatch):
    async def down(asked: Any, page_token: Any = None) -> Any:
        raise gateway.TemporalUnavailable("Temporal is not answering.")

    monkeypatch.setattr(listing, "results", down)
    case = new_case_id()

    async def scenario() -> None:
        stream = await _open(agent, "assignee=none")
        later = await _open(agent, "assignee=none&page=abc")
        fake_feed.publish(_change(_row(case, assignee="alice"), _row(case)))
        for s in (stream, later):
            assert (await s.message())[0] == "row"
            assert await s.message() == ("list", case)
            await s.close()

    _sync(scenario)


def test_multi_line_data_becomes_several_data_lines():
    assert sse.message("row", "<tr>\n<td>a</td>\r\n</tr>") == (
        b"event: row\ndata: <tr>\ndata: <td>a</td>\ndata: </tr>\n\n")
    assert sse.message("list", "") == b"event: list\ndata: \n\n"


def test_a_bad_case_id_is_refused_and_wsgi_gets_no_stream(agent_client, fake_feed):
    assert agent_client.get("/events/?case=nope").status_code == 400
    # The synchronous test client is WSGI: an endless stream would be buffered whole there.
    assert agent_client.get("/events/").status_code == 204
    assert fake_feed.started == 0


def test_what_one_feed_read_brings_a_page_is_sent_in_one_write(agent, fake_feed):
    """Three changes of the page's queue in one feed read: one wake-up, one write with the
    three rows; a change of a queue it cannot see adds nothing."""
    ids = [new_case_id() for _ in range(3)]

    async def scenario() -> None:
        stream = await _open(agent, "queue=technical")
        changes = [_change(_row(c, version=3), _row(c)) for c in ids]
        hidden = _change(_row(new_case_id(), queue="billing", version=3),
                         _row(new_case_id(), queue="billing"))
        feed._hand_out(list(fake_feed.followers), [*changes, hidden])
        chunk = (await asyncio.wait_for(anext(stream.chunks), READ_TIMEOUT)).decode()
        assert chunk.count("event: row") == 3
        assert all(f'id="row-{c}"' in chunk for c in ids)
        await stream.close()

    _sync(scenario)
