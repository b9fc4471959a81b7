"""List and Count answers shared by every web process and kept fresh by the change feed.

An answer lives in Django's cache (Redis in production), keyed by its query text, which
already carries the user's access clause. With it are stored the feed position it was asked at
and a matcher: the same filter read in Python (`CaseFilter.matches`). Before an answer is used,
the changes the feed published since are read against it, in memory:

- a change that cannot touch it (the row matched neither before nor after) costs nothing;
- a Count whose case moved in or out is left as it is when the change was indexed before the
  Count was asked, corrected by one when it certainly came after the answer (made after it
  came, or seen long after it was asked), and asked again only in between;
- a list row that changed in place is replaced; a case that left a page with no next page is
  removed; a live case that came in is placed by its start time (Visibility's order for live
  cases) or, past the last row of a page with more, left to a later page; anything else (an
  ended case, a tie, a page grown by PAGE_SLACK) is asked again, and so is whatever a matcher
  cannot tell (title words, relative times).

So a list nobody changed costs no Visibility call however many people look at it. Without a
healthy feed, answers are shared for VISIBILITY_CACHE_SECONDS only, as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from django.conf import settings

from cases import store, temporal
from cases.live import feed
from cases.live.single_flight import SingleFlight
from cases.store import wire
from cases.temporal import codecs

Matcher = Callable[[temporal.CaseRow], "bool | None"]
# A change seen this long after an answer was asked cannot be in it, whatever the clocks say
# (the poller looks once a second).
MARGIN_SECONDS = 2.0
# How far the clocks of Temporal's server (a case's CaseUpdatedAt) and the web may disagree.
CLOCK_SKEW_SECONDS = 0.5
# A first page that took in this many new entrants is asked again (it only grows meanwhile).
PAGE_SLACK = 10

# How long a process waits for another's answer to the same question before asking itself.
ASK_WAIT_SECONDS = 2.0

logger = logging.getLogger(__name__)

_ASKING: SingleFlight[Any] = SingleFlight()


@dataclass
class _Answer:
    value: Any  # CasePage or int
    epoch: str | None
    seq: int | None  # feed position when it was asked (None: not feed-checked)
    asked_at: float  # wall time the call started
    expires: float
    answered_at: float = 0.0  # wall time the answer came


def _dump_answer_value(value: Any) -> dict[str, Any]:
    if type(value) is int:
        return {"count": value}
    return {"page": codecs.PAGE.dump(value)}


def _load_answer_value(data: Any) -> Any:
    if type(data) is dict and data.keys() == {"count"}:
        return wire.INT.load(data["count"])
    if type(data) is dict and data.keys() == {"page"}:
        return codecs.PAGE.load(data["page"])
    raise wire.Malformed("not a count or a page")


ANSWER = wire.record("answer", lambda: _Answer, {
    # A Count's number or a List's page.
    "value": wire.Kind("answer value", _dump_answer_value, _load_answer_value),
    "epoch": wire.optional(wire.STR),
    "seq": wire.optional(wire.INT),
    "asked_at": wire.SECONDS,
    "expires": wire.SECONDS,
    "answered_at": wire.SECONDS,
})


def _store() -> Any:
    return store.shared()


def _key(kind: str, *parts: object) -> str:
    digest = hashlib.sha256("\x00".join(str(p) for p in parts).encode()).hexdigest()
    return f"vis:{kind}:{digest}"


def _counted(answer: _Answer, change: feed.Change) -> bool | None:
    """Does a Count answer already hold this change? None when only the index knows."""
    if not change.seen_at:
        return False  # not from a poller (nothing to compare)
    if change.seen_at < answer.asked_at:
        return True  # indexed before the Count was asked
    updated = change.row.updated_at
    if updated is not None and \
            updated.timestamp() > (answer.answered_at or answer.asked_at) + CLOCK_SKEW_SECONDS:
        return False  # made after the answer came: it cannot be indexed in it
    if change.seen_at >= answer.asked_at + MARGIN_SECONDS:
        return False
    return None


def _catch_up_count(answer: _Answer, changes: list[feed.Change], matches: Matcher
                    ) -> int | None:
    value: int = answer.value
    for change in changes:
        before, after = change.listed_before(matches), matches(change.row)
        if before is None or after is None:
            return None
        if before == after:
            continue
        counted = _counted(answer, change)
        if counted is None:
            return None
        if not counted:
            value += 1 if after else -1
    return value


def _place(rows: list[temporal.CaseRow], row: temporal.CaseRow) -> int | None:
    """Where Visibility's order puts a case that came into a page: live cases newest start
    first (what SQL visibility and Elasticsearch both do for running executions). None when
    only the index can tell (an ended case, or a start time equal to a listed one's)."""
    if row.execution_status != "running" or row.started_at is None:
        return None
    for i, listed in enumerate(rows):
        if listed.execution_status != "running" or listed.started_at is None or \
                listed.started_at == row.started_at:
            return None
        if row.started_at > listed.started_at:
            return i
    return len(rows)


def _catch_up_page(answer: _Answer, changes: list[feed.Change], matches: Matcher,
                   page_size: int) -> temporal.CasePage | None:
    page: temporal.CasePage = answer.value
    rows = list(page.rows)
    for change in changes:
        before, after = change.listed_before(matches), matches(change.row)
        index = next((i for i, r in enumerate(rows) if r.case_id == change.case_id), None)
        if before is False and after is False and index is None:
            continue
        if before is True and after is True and index is None and page.next_page_token \
                and change.before is not None \
                and change.before.execution_status == change.row.execution_status:
            continue  # a case further down the order changed; its place did not
        if after is True and index is not None and \
                rows[index].started_at == change.row.started_at:
            rows[index] = change.row  # the same place in the order, the new content
            continue
        if after is False and index is not None and not page.next_page_token:
            del rows[index]
            continue
        if after is True and index is None and (
                change.before is None or change.before.started_at == change.row.started_at):
            # A newcomer (or one from further down): its start time places it. Past the
            # last row of a page with more after it, it is on a later page; this one grows
            # by it otherwise, so the next page's cursor still follows the same last row.
            at = _place(rows, change.row)
            if at is not None and len(rows) < page_size + PAGE_SLACK:
                if at < len(rows) or not page.next_page_token:
                    rows.insert(at, change.row)
                continue
        return None
    return replace(page, rows=rows)


async def _answer(kind: str, key: str, call: Callable[[], Any], matches: Matcher | None,
                  ttl: float | None, page_size: int = 0) -> Any:
    short = settings.VISIBILITY_CACHE_SECONDS if ttl is None else ttl
    running = feed.current() if matches is not None else None
    if short <= 0 and not (kind == "count" and running is not None
                           and running.listener.healthy()):
        # No time-based sharing: ask. A Count is the exception while this process's feed
        # is healthy: kept under the feed position like a list page is, it costs nothing
        # until a change touches it, where asking it again would cost a scan of every
        # match per load (issue 26: the list grew 2.2 times from 1k to 10k cases on its
        # Counts). A page's rows keep "ask every time": one page of rows does not grow.
        return await call()
    listener = running.listener if running is not None and running.listener.healthy() \
        else None
    if matches is not None and running is None:
        feed.ensure_running()  # from the next request on, answers are feed-checked
    store = _store()
    now = time.time()
    # Unreadable (another schema, not ours) is missing: asked again, and overwritten.
    answer: _Answer | None = wire.load(ANSWER, await store.aget(key))
    if answer is not None and answer.expires > now:
        if answer.seq is None:
            if short > 0:
                return answer.value
        else:
            changes = listener.since((answer.epoch, answer.seq)) if listener is not None \
                else None
            if changes is not None and matches is not None:
                if not changes:
                    return answer.value
                caught = (_catch_up_count(answer, changes, matches) if kind == "count" else
                          _catch_up_page(answer, changes, matches, page_size))
                if caught is not None:
                    answer = replace(answer, value=caught, seq=changes[-1].seq)
                    await store.aset(key, wire.dump(ANSWER, answer),
                                     timeout=max(1, int(answer.expires - now)))
                    return caught
    # Ask Visibility: once per process for identical concurrent questions.
    async def ask() -> Any:
        epoch, seq = (listener.position() or (None, None)) if listener is not None \
            else (None, None)
        if seq is not None:
            found = await _asked_elsewhere(store, key, epoch, seq)
            if found is not None:
                return found.value
        asked = time.time()
        value = await call()
        long = settings.VISIBILITY_FEED_TTL_SECONDS
        lifetime = long if seq is not None else short
        fresh = _Answer(value, epoch, seq, asked, asked + lifetime, time.time())
        await store.aset(key, wire.dump(ANSWER, fresh), timeout=max(1, int(lifetime)))
        return value

    return await _ASKING.run(key, ask)


async def _asked_elsewhere(store: Any, key: str, epoch: str | None, seq: int
                           ) -> _Answer | None:
    """The same question at the same feed position is asked once for the whole deployment:
    the first process to claim it asks, the others wait up to ASK_WAIT_SECONDS for its answer
    (then ask themselves, so a process that died asking costs a moment, not an answer). A
    filter the feed cannot keep fresh (title words) is so re-asked once per change, not once
    per web process."""
    claim = f"{key}:asking:{epoch}:{seq}"
    try:
        if await store.aadd(claim, 1, timeout=max(1, int(ASK_WAIT_SECONDS) + 1)):
            return None  # ours to ask
        deadline = time.monotonic() + ASK_WAIT_SECONDS
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            found = wire.load(ANSWER, await store.aget(key))
            if found is not None and found.epoch == epoch and found.seq is not None \
                    and found.seq >= seq:
                return found
    except Exception as err:  # the store away: ask, as every process did before
        logger.warning("answers: could not share a question: %s", err)
    return None


async def list_cases(query: str, page_size: int, page_token: str | None = None, *,
                     matches: Matcher | None = None) -> temporal.CasePage:
    """A page of cases; `matches` (the filter read in Python) lets the feed keep it fresh.
    Only first pages are feed-checked: a later page's cursor cannot be corrected."""
    key = _key("list", query, page_size, page_token or "")
    return await _answer("list", key,
                         lambda: temporal.list_cases(query, page_size, page_token),
                         matches if not page_token else None, None, page_size)


async def count_cases(query: str, ttl: float | None = None, *,
                      matches: Matcher | None = None) -> int:
    return await _answer("count", _key("count", query),
                         lambda: temporal.count_cases(query), matches, ttl)


async def count_many(queries: dict[str, str], ttl: float | None = None, *,
                     matchers: dict[str, Matcher] | None = None) -> dict[str, int]:
    """Several Counts at once (SQL visibility has no GROUP BY on custom attributes)."""
    matchers = matchers or {}
    values = await asyncio.gather(*(count_cases(q, ttl, matches=matchers.get(name))
                                    for name, q in queries.items()))
    return dict(zip(queries.keys(), values, strict=True))


def forget() -> None:
    """Drop every shared answer (tests; after registering attributes, say)."""
    _store().clear()
