"""A changed case is pushed to its open pages (issue 26): read once and rendered once per kind
of page, whatever the number of tabs, under the one access rule. Real streams (the ASGI
view) against the real feed and the real dev server."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from cases import temporal as gateway
from cases.live import case_pages, feed
from cases.web import lookup
from workers.model import AddComment, Claim

from .conftest import _persona, run
from .test_events import Stream, _open, _sync
from .test_feed import quick_feed  # noqa: F401  (the fixture)


def _known(case_id: str, version: int) -> None:
    """Until this process's feed has seen the case at `version`."""
    deadline = time.monotonic() + 20
    while (feed.current().listener.known_version(case_id) or 0) < version:
        assert time.monotonic() < deadline, "the feed did not see the case"
        time.sleep(0.05)


def _forms(html: str) -> set[str]:
    return set(re.findall(r'class="action action-([a-z_]+)', html))


async def _case_message(stream: Stream) -> tuple[str, str]:
    while True:
        name, data = await stream.message()
        if name in ("case", "case-html"):
            return name, data


def _seq(position: str) -> int:
    return int(position.rsplit("-", 1)[1])


def test_one_change_seen_by_twenty_tabs_costs_one_query_and_one_render_per_audience(
        quick_feed, open_case, agent, other_agent, supervisor, settings,  # noqa: F811
        monkeypatch):
    settings.EVENTS_KEEPALIVE_SECONDS = 0.5  # carries the position to streams told nothing
    dave = _persona("dave", "Agent", queues=("technical", "general"))  # alice's access
    carol = _persona("carol", "Agent", queues=("billing",))
    case_id = open_case(title="Watched by twenty", queue="technical")
    held = run(gateway.act(case_id, Claim(actor="alice")))
    _known(case_id, held.version)

    queries: list[str] = []
    real_get_case = gateway.get_case

    async def counting(case: str, *args: Any, **kwargs: Any) -> Any:
        queries.append(case)
        return await real_get_case(case, *args, **kwargs)

    monkeypatch.setattr(gateway, "get_case", counting)
    monkeypatch.setattr(case_pages, "COUNTS", case_pages.Counts())
    tabs = [(agent, 5), (dave, 4), (other_agent, 5), (supervisor, 4), (carol, 2)]
    assert sum(n for _, n in tabs) == 20

    async def scenario() -> dict[str, list[tuple[str, str]]]:
        streams = [(user.username, await _open(user, f"case={case_id}"))
                   for user, n in tabs for _ in range(n)]
        before = lookup.STATES.queries
        queries.clear()
        changed = await asyncio.to_thread(
            run, gateway.act(case_id, AddComment(actor="sam", body="For all twenty")))
        got: dict[str, list[tuple[str, str]]] = {}
        position = ""
        for name, stream in streams:
            if name == "carol":
                continue
            got.setdefault(name, []).append(await asyncio.wait_for(_case_message(stream), 20))
            position = stream.last_id
        # carol may not see the case: her streams are told the position past the change
        # (by a keepalive) and nothing of it.
        for name, stream in streams:
            if name != "carol":
                continue
            while not stream.last_id or _seq(stream.last_id) < _seq(position):
                said = await stream.next()
                got.setdefault("carol", []).append(said)
        assert lookup.STATES.queries - before == 1
        assert all(f'data-version="{changed.version}"' in data
                   for person, messages in got.items() if person not in ("carol", "sam")
                   for _, data in messages)
        for _, stream in streams:
            await stream.close()
        return got

    got = _sync(scenario)
    # One Query for the change, whatever the number of tabs.
    assert queries == [case_id]
    # Kinds of page: alice (holds it), dave (alice's access, does not), bob. sam made the
    # change: the tab that made it shows it already, so sam's tabs are told its version
    # (another tab of theirs re-asks) and nothing is rendered for them.
    assert case_pages.COUNTS.renders == 3
    assert {name for name, _ in got["alice"] + got["dave"] + got["bob"]} == {"case-html"}
    assert got["sam"] == [("case", str(held.version + 1))] * 4
    for person in ("alice", "dave", "bob"):
        assert len({data for _, data in got[person]}) == 1, person  # one render per kind
    assert not any(name in ("case", "case-html") for name, _ in got["carol"])
    holder, others = got["alice"][0][1], [got[p][0][1] for p in ("dave", "bob")]
    assert all(html != holder for html in others)  # never the holder's page
    assert _forms(holder) > _forms(got["dave"][0][1])  # the holder may work the case
    for html in [holder, *others]:
        assert "For all twenty" in html
        assert "csrfmiddlewaretoken" not in html  # the person's own parts are not shared
        assert 'class="action macro-apply"' not in html


def test_a_render_that_fails_tells_its_pages_to_re_ask_counted_and_logged_with_its_cause(
        quick_feed, open_case, agent, monkeypatch, caplog):  # noqa: F811
    import logging

    from cases.web import views

    case_id = open_case(title="Cannot be drawn", queue="technical")
    _known(case_id, 1)

    async def broken(request: Any, seen: Any) -> str:
        raise RuntimeError("the template exploded")

    monkeypatch.setattr(views, "shared_case_html", broken)
    monkeypatch.setattr(case_pages, "COUNTS", case_pages.Counts())

    async def scenario() -> tuple[Any, tuple[str, str]]:
        stream = await _open(agent, f"case={case_id}")
        changed = await asyncio.to_thread(
            run, gateway.act(case_id, AddComment(actor="sam", body="Drawn or not")))
        got = await asyncio.wait_for(_case_message(stream), 20)
        await stream.close()
        return changed, got

    with caplog.at_level(logging.INFO, logger="cases.live.case_pages"):
        changed, got = _sync(scenario)
    assert got == ("case", str(changed.version))  # the page asks for it itself
    assert case_pages.COUNTS.fallbacks == {"render": 1}
    said = [r for r in caplog.records if f"{case_id} not pushed (render)" in r.getMessage()]
    assert len(said) == 1 and said[0].exc_info is not None
    assert "the template exploded" in str(said[0].exc_info[1])
