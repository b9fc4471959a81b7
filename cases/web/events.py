"""Server push: one Server-Sent-Event stream per open list or case page (`GET /events/`).

Streams that watch alike (same access, filter, columns and page: `Watch.audience`) form one
`Audience`, which follows this process's change feed (cases/live/feed.py) and works each
change out once for all of them, under the one access rule (a case outside the user's queues
is never described). What a page is told:

- `event: case`, data the new version: the case page's case changed (the page re-asks with
  its `?since=<version>` request, which is how typing stays safe);
- `event: row`, data the list row's HTML as an out-of-band swap (`<tr id="row-…"
  hx-swap-oob="true">`): a case the list shows, or might show, changed;
- `event: results`, data the list's results section (rows, pager and the status counts, out
  of band): the list's membership may have changed (a case came into or left the filter, or
  only the index can tell). Rendered once per audience, at most once per
  `EVENTS_LIST_DEBOUNCE_SECONDS`, from the shared, feed-checked answers;
- `event: counts`, data the status counts as out-of-band spans: a listed case changed status
  in place, so the chips changed though the rows did not;
- `event: list`: the page re-fetches its results itself: for a later page (its cursor cannot
  be kept fresh), when the render failed (the page then shows the outage its own way), or
  after a resumed page missed a change of its list;
- `list` and `case` together: the page re-reads (the process missed changes, or a page
  resumed from a position this process no longer holds);
- `id: <epoch>-<seq>` lines: the change-log position the page has been told up to. The
  browser sends it back as Last-Event-ID when it reconnects (a page opening a stream sends
  `last=`, from when it was rendered), and the stream first sends what was missed since;
- `event: inbox`, data the user's unread notification count: the nav bar's badge
  (cases/live/wakeups.py: counted again only for a user whose notices changed);
- `: keepalive` every `EVENTS_KEEPALIVE_SECONDS` (15 s) so proxies keep the stream open;
- `event: signed-out`, data the login page's URL, and the stream ends: the session is no longer
  signed in (logged out elsewhere, password changed, user deactivated or deleted);
- `event: ended`, data a sentence for the page, and the stream ends: a newer stream of the same
  session or user displaced it (EVENTS_MAX_PER_SESSION, EVENTS_MAX_PER_USER); the page stops
  listening and says so.

A stream is a request that never ends, so its access is checked again while it is open: when
the user's access version moves (cases/live/wakeups.py watches it) and every
EVENTS_RECHECK_SECONDS. If what the user may see changed, the stream tells its page to re-read
(`list`, `case`) and ends; the browser reconnects as a fresh request, under the new access. A
stream also ends after EVENTS_MAX_AGE_SECONDS, and the page reconnects the same way. A stream
never holds a request thread: tracerail/asgi.py sends its few synchronous steps (its start, its
re-checks) to threads shared by every stream (cases/web/request_threads.py).

The query string is the list page's own filter parameters, or `case=<id>` for a case page
(both together watch both), and `last=`. The stream ends when the client goes away (Django
cancels the response), and its membership with it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import threading
import weakref
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from cases.config import dbconn
from cases.config.access import Access
from cases.config.custom_fields import Attribute
from cases.config.reading import config_for, resolve_session
from cases.live import feed, listing, log, wakeups
from cases.templatetags.case_tags import case_row
from cases.temporal.ids import is_case_id
from cases.temporal.visibility import ME, CaseFilter, InvalidFilter
from cases.web.forms import CaseFilterForm

logger = logging.getLogger(__name__)

KEEPALIVE = b": keepalive\n\n"
# Sent at once, so the browser sees the stream open (and proxies flush headers).
OPENING = b": connected\n\n"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the three line ends SSE knows


def message(event: str, data: str) -> bytes:
    """One SSE message; every line of `data` becomes its own `data:` line (the browser joins
    them back with newlines)."""
    lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    return f"event: {event}\n{lines}\n".encode()


# --- what one stream watches --------------------------------------------------------------------


@dataclass(frozen=True)
class Watch:
    access: Access
    case_id: str = ""  # the case page's case, or ""
    case_filter: CaseFilter | None = None  # the list page's filter, or None
    columns: tuple[Attribute, ...] = ()
    asked: listing.Questions | None = None  # the list's questions (None: a later page)
    list_query: str = ""  # the list page's own query string
    request: HttpRequest | None = field(default=None, compare=False)  # for rendering
    page_path: str = ""  # the page the stream serves (where to come back after signing in)

    @cached_property
    def interest(self) -> tuple[Any, ...]:
        """What `answer` depends on: streams alike in it get the same answers, so the feed
        works each change out once for all of them. The user's name only where the filter
        names them ("assigned to me"); the rest of the access rule is role and queues."""
        access, case_filter = self.access, self.case_filter
        me = access.username if case_filter is not None and case_filter.assignee == ME \
            else ""
        return (access.role, access.queues, me, self.case_id, repr(case_filter),
                tuple((a.name, a.type) for a in self.columns))

    def answer(self, event: feed.Change | feed.Resync) -> list[tuple[str, str]]:
        """The messages this stream's page gets for one feed event: `row` and `case` as
        they are sent; `list` (membership) and `counts` are flushed by the stream."""
        if isinstance(event, feed.Resync):
            return [("list", ""), ("case", "")]
        row, access = event.row, self.access
        visible_now = access.can_see(row.queue)
        out: list[tuple[str, str]] = []
        if self.case_id and event.case_id == self.case_id and visible_now:
            out.append(("case", str(row.version or "")))
        if self.case_filter is None:
            return out
        listed_now, listed_before = self._listed(event, self.case_filter)
        if listed_now is False and listed_before is False:
            if self._counts_changed(event):
                out.append(("counts", ""))
            return out
        if visible_now:
            out.append(("row", str(case_row(row, list(self.columns), oob=True))))
        if listed_now is None or listed_before is None or listed_now != listed_before:
            # It left the user's queues: the list re-reads (and drops it), told nothing new.
            out.append(("list", event.case_id if visible_now else ""))
        elif self._counts_changed(event):
            out.append(("counts", ""))
        return out

    def _listed(self, event: feed.Change, case_filter: CaseFilter
                ) -> tuple[bool | None, bool | None]:
        """Does `case_filter` list the case now, and did it before the change?"""
        row, before, access = event.row, event.before, self.access
        matches = partial(case_filter.matches, me=access.username,
                          visible_queues=access.visible_queues)
        visible_now = access.can_see(row.queue)
        listed_now = matches(row) if visible_now else False
        if (before is None and not visible_now) or (
                before is not None and not access.can_see(before.queue)):
            return listed_now, False  # nothing of it was on this user's screens
        return listed_now, event.listed_before(matches)

    def _counts_changed(self, event: feed.Change) -> bool:
        """Did a status chip's number change? (They count the filter without its statuses.)"""
        assert self.case_filter is not None
        now, before = self._listed(event, self.case_filter.without_statuses())
        if now is False and before is False:
            return False
        if now is None or before is None or now != before:
            return True
        return event.before is None or event.before.status != event.row.status

    @cached_property
    def audience(self) -> tuple[Any, ...]:
        """Streams alike in this get the same messages: the interest, and the same list page
        (a later page is not pushed, its page re-fetches itself)."""
        return (*self.interest, self.list_query, self.asked is None)

    async def results_html(self) -> str:
        assert self.asked is not None
        found = await listing.results(self.asked)
        return render_to_string("cases/list.html#results", {
            "page": found.page, "counts": found.counts, "columns": list(self.columns),
            "first_page": False, "oob_counts": True, "request": self.request,
            "results_url": reverse("cases:list") + (f"?{self.list_query}" if self.list_query
                                                    else ""),
            "refresh_seconds": settings.LIST_REFRESH_SECONDS,
        }).strip()

    async def counts_html(self) -> str:
        assert self.asked is not None
        found = await listing.results(self.asked)
        return render_to_string("cases/list.html#counts", {"counts": found.counts}).strip()

    async def render(self, what: str, fallback: str) -> bytes:
        """The pushed results (`what` = "results") or counts; when the list cannot be
        rendered here (a later page, Temporal away) the page re-fetches it itself."""
        if self.asked is None:
            return message("list", fallback)
        try:
            html = await (self.results_html() if what == "results" else self.counts_html())
        except Exception:  # the page's own re-fetch shows the outage the page's way
            return message("list", fallback)
        return message(what, html)


# --- whose stream it is, and how many they hold --------------------------------------------


DISPLACED = ("Live updates stopped in this tab: newer tabs of yours took them over. "
             "Reload the page to resume them here.")


class Guard:
    """A stream's claim to its session: who it serves, the access version it was checked at,
    and an Event set when that may no longer hold (the version moved, or a newer stream
    displaced this one)."""

    def __init__(self, session_key: str, user_id: int, version: str) -> None:
        self.session_key, self.user_id, self.version = session_key, user_id, version
        self.loop = asyncio.get_running_loop()
        self.wake = asyncio.Event()
        self.displaced = False

    def watch(self, version: str) -> None:
        """Wake when the user's access version is no longer `version`."""
        self.version = version
        wakeups.WATCHER.watch_access(self.user_id, version, self.wake)

    def unwatch(self) -> None:
        wakeups.WATCHER.unwatch(self.user_id, self.wake)

    def displace(self) -> None:
        self.displaced = True
        self.loop.call_soon_threadsafe(self.wake.set)


class OpenStreams:
    """This process's open streams by session and by user: a new one over either limit
    displaces the oldest. Per process because a stream's cost (memory, a slot on the loop) is
    the process's; a deployment's limit is this times its web processes."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.by: dict[tuple[str, Any], OrderedDict[Guard, None]] = {}

    def open(self, guard: Guard) -> None:
        limits = ((("session", guard.session_key), settings.EVENTS_MAX_PER_SESSION),
                  (("user", guard.user_id), settings.EVENTS_MAX_PER_USER))
        with self.lock:
            for key, limit in limits:
                held = self.by.setdefault(key, OrderedDict())
                held[guard] = None
                while len(held) > limit:
                    oldest, _ = held.popitem(last=False)
                    oldest.displace()

    def close(self, guard: Guard) -> None:
        with self.lock:
            for key in (("session", guard.session_key), ("user", guard.user_id)):
                held = self.by.get(key)
                if held is not None:
                    held.pop(guard, None)
                    if not held:
                        del self.by[key]

    def count(self, kind: str, who: Any) -> int:
        with self.lock:
            return len(self.by.get((kind, who), ()))


OPEN = OpenStreams()


def _session_store() -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore


def _list_params(request: HttpRequest) -> bool:
    """Does this stream watch a list? Yes without `case=`, or with list parameters too."""
    return "case" not in request.GET or any(k not in ("case", "last") for k in request.GET)


async def _watch(request: HttpRequest) -> Watch | None:
    config = await config_for(request)
    access = config.access
    case_id = request.GET.get("case", "")
    if case_id and not is_case_id(case_id):
        return None
    case_filter, columns, asked = None, (), None
    if _list_params(request):
        form = CaseFilterForm(request.GET, queues=config.queues, attributes=config.attributes)
        if form.is_valid():
            case_filter = form.case_filter()
            try:
                asked = listing.questions(case_filter, access)
            except InvalidFilter:
                case_filter = None  # the page says "Fix the filter"; nothing to push
            columns = tuple(form.columns)
            if request.GET.get("page"):
                asked = None  # a later page re-fetches itself: its cursor is not kept fresh
    list_query = request.GET.copy()
    list_query.pop("case", None)
    list_query.pop("last", None)
    query = list_query.urlencode()
    page_path = reverse("cases:detail", args=[case_id]) if case_id else \
        reverse("cases:list") + (f"?{query}" if query else "")
    return Watch(access, case_id, case_filter, columns, asked, query, request, page_path)


class _Ended(Exception):
    """The stream must end, after sending `last`."""

    def __init__(self, last: bytes = b"") -> None:
        self.last = last


async def _recheck(watch: Watch, guard: Guard) -> None:
    """The session and access again, as a fresh request would read them. Raises _Ended when
    the stream must not go on: signed out, or the access it serves changed (the page then
    re-reads and reconnects under the new access)."""
    if guard.displaced:
        raise _Ended(message("ended", DISPLACED))
    store_class = _session_store()
    found = await dbconn.read(lambda: resolve_session(store_class(guard.session_key)))
    if found.user is None or found.config is None or found.user.pk != guard.user_id:
        login = reverse("login") + "?" + urlencode({"next": watch.page_path})
        raise _Ended(message("signed-out", login))
    if found.config.access != watch.access:
        logger.info("events: %s's access changed; their stream ends",
                    watch.access.username)
        raise _Ended(message("list", "") + message("case", ""))
    guard.watch(found.version)


def mark(position: log.Position | None) -> bytes:
    """An id-only frame: the browser's EventSource takes it as its last event id (sent back
    as Last-Event-ID when it reconnects) without dispatching anything to the page."""
    return f"id: {log.position_id(position)}\n\n".encode() if position is not None else b""


class Audience:
    """The open streams of this process that watch alike: the same interest (what `answer`
    depends on), the same list page. The one home of "does this change touch this list":
    each change is answered once for all of them, its row rendered once, and a changed list
    rendered once, at the audience's tick (EVENTS_LIST_DEBOUNCE_SECONDS after the first
    change waiting for it), from the shared, feed-checked answers. Each stream only sends
    what it is handed, with the position its page has now been told up to (`told`). That
    position never passes a change the page has not had: a list change waiting for the
    tick holds it just before that change until the list is sent."""

    def __init__(self, key: tuple[Any, ...], watch: Watch, owner: Audiences) -> None:
        self.key, self.watch, self.owner = key, watch, owner
        self.loop = asyncio.get_running_loop()
        self.members: set[Member] = set()
        self.pending: dict[str, str] = {}  # "list" / "counts" waiting for the tick -> case id
        self.resync = False
        self.latest: tuple[int, float] = (0, 0.0)  # newest change: (seq, when the feed saw it)
        self.at: log.Position | None = None  # handed out up to here
        self.held: log.Position | None = None  # told up to here while a list change waits
        self.tick: asyncio.TimerHandle | None = None
        self.flushing: asyncio.Task[None] | None = None
        self.unsubscribe: Callable[[], None] | None = None

    @property
    def told(self) -> log.Position | None:
        return self.held if self.held is not None else self.at

    def take(self, events: list[feed.Change | feed.Resync], position: log.Position | None
             ) -> None:
        """A feed read's events, on this loop: answered once, sent to every member."""
        chunks: list[bytes] = []
        last = 0
        for event in events:
            if isinstance(event, feed.Resync):
                # Missed changes: every page re-reads; the id moves on once it is told to.
                self.resync = True
                self.pending.setdefault("list", "")
                if self.held is None:
                    self.held = self.at
                self._schedule(0.0)
                continue
            self.owner.answered += 1
            epoch = position[0] if position is not None else None
            for name, data in self.watch.answer(event):
                if name in ("list", "counts"):
                    if not self.pending:
                        self._schedule(settings.EVENTS_LIST_DEBOUNCE_SECONDS)
                    if self.held is None:
                        self.held = (epoch, event.seq - 1)
                    self.pending.setdefault(name, data)
                else:
                    chunks.append(message(name, data))
            self.latest, last = (event.seq, event.seen_at), event.seq
        if position is not None:
            self.at = position
        self._send(chunks, last)

    def _schedule(self, delay: float) -> None:
        if self.tick is not None and delay > 0:
            return
        if self.tick is not None:
            self.tick.cancel()
        self.tick = self.loop.call_later(delay, self._start_flush)

    def _start_flush(self) -> None:
        self.tick = None
        if self.flushing is None or self.flushing.done():
            self.flushing = self.loop.create_task(self._flush())
        else:  # one render at a time: the next tick follows this one
            self._schedule(settings.EVENTS_LIST_DEBOUNCE_SECONDS)

    async def _flush(self) -> None:
        pending, resync, self.pending, self.resync = self.pending, self.resync, {}, False
        if not pending:
            return
        if resync:
            chunk = message("list", "") + message("case", "")
        else:
            what = "results" if "list" in pending else "counts"
            chunk = await self.watch.render(what, pending.get("list", ""))
            self.owner.rendered += 1
        if not self.pending:
            self.held = None
        self._send([chunk], 0)

    def _send(self, chunks: list[bytes], upto: int) -> None:
        told = self.told
        for member in list(self.members):
            member.put(chunks, told, upto)

    def close(self) -> None:
        if self.tick is not None:
            self.tick.cancel()
        if self.flushing is not None:
            self.flushing.cancel()
        if self.unsubscribe is not None:
            self.unsubscribe()


class Member:
    """One stream's place in its audience: what it is handed, waiting to be sent, and the
    position its page is told with the next write (a change that concerns nobody here
    moves it without waking the stream: the next keepalive carries it)."""

    def __init__(self, audience: Audience, replayed: int = 0) -> None:
        self.audience = audience
        self.replayed = replayed  # the last change sent from this stream's own replay
        self.told = audience.told
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=1000)

    def put(self, chunks: list[bytes], told: log.Position | None, upto: int) -> None:
        self.told = told
        if upto and upto <= self.replayed:
            return  # sent already, with the replay
        data = b"".join(chunks)
        if not data:
            return
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            # A page this far behind re-reads instead.
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(message("list", "") + message("case", ""))


class Audiences:
    """This process's audiences, by loop and key; an audience lives while it has members."""

    def __init__(self) -> None:
        # By loop (weakly: a loop that closed takes its audiences along), then by key.
        self.by: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop,
                                           dict[tuple[Any, ...], Audience]] = (
            weakref.WeakKeyDictionary())
        self.answered = 0  # changes answered, once per audience
        self.rendered = 0  # lists rendered, once per audience

    @contextlib.asynccontextmanager
    async def join(self, watch: Watch, replayed: int = 0) -> AsyncIterator[Member]:
        audiences = self.by.setdefault(asyncio.get_running_loop(), {})
        key = watch.audience
        audience = audiences.get(key)
        if audience is None:
            audience = audiences[key] = Audience(key, watch, self)
            audience.unsubscribe = feed.follow(audience.take)
            audience.at = feed.position()
        member = Member(audience, replayed)
        audience.members.add(member)
        try:
            yield member
        finally:
            audience.members.discard(member)
            if not audience.members and audiences.get(key) is audience:
                del audiences[key]
                audience.close()


AUDIENCES = Audiences()


# --- one stream ----------------------------------------------------------------------------------


def _replay(watch: Watch, missed: list[feed.Change]) -> bytes:
    """What a resuming page missed, answered for it alone (once per reconnect): rows and
    its case as they are; a list that changed is re-read by the page itself."""
    chunks, reread = [], False
    for change in missed:
        for name, data in watch.answer(change):
            if name in ("list", "counts"):
                reread = True
            else:
                chunks.append(message(name, data))
    if reread:
        chunks.append(message("list", ""))
    return b"".join(chunks)


async def stream(watch: Watch, guard: Guard | None = None,
                 resume: log.Position | None = None, resuming: bool = False
                 ) -> AsyncIterator[bytes]:
    """`resume` is the page's position (its last event id, or the feed's position when the page
    was rendered): what changed since is sent first, or, when this process no longer holds
    it, one re-read. `resuming` with no readable position is a re-read too."""
    feed.ensure_running()
    loop = asyncio.get_running_loop()
    keepalive = settings.EVENTS_KEEPALIVE_SECONDS
    recheck_every = settings.EVENTS_RECHECK_SECONDS
    started = last_sent = loop.time()
    ends_at = started + settings.EVENTS_MAX_AGE_SECONDS * (1 + random.uniform(0, 0.1))
    recheck_at = started + recheck_every
    if guard is not None:
        guard.watch(guard.version)
        OPEN.open(guard)
    # Joined first, then what was missed: nothing falls between the two, and a change in
    # both is sent once (the member skips what the replay sent).
    async with AUDIENCES.join(watch) as member:
        if guard is not None:
            # The nav bar's unread count rides along (`event: inbox`), from one watcher a
            # second for every open stream of this process.
            def hand(count: int, queue: asyncio.Queue[bytes] = member.queue) -> None:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(message("inbox", str(count)))

            wakeups.WATCHER.watch_inbox(guard.user_id, guard, hand,
                                          watch.access.visible_queues)
        missed = feed.since(resume)
        opening = [OPENING]
        if missed is None and (resuming or resume is not None):
            opening.append(message("list", "") + message("case", ""))
        elif missed:
            opening.append(_replay(watch, missed))
            member.replayed = missed[-1].seq
        told = member.told
        opening.append(mark(told))
        yield b"".join(opening)
        upcoming: asyncio.Future[Any] = asyncio.ensure_future(member.queue.get())
        woken: asyncio.Future[Any] | None = None
        try:
            while True:
                deadline = min(last_sent + keepalive, ends_at)
                waiting: set[asyncio.Future[Any]] = {upcoming}
                if guard is not None:
                    deadline = min(deadline, recheck_at)
                    if woken is None:
                        woken = asyncio.ensure_future(guard.wake.wait())
                    waiting.add(woken)
                done, _ = await asyncio.wait(waiting, timeout=max(0.0, deadline - loop.time()),
                                             return_when=asyncio.FIRST_COMPLETED)
                if loop.time() >= ends_at:
                    return  # the page reconnects as a fresh request
                if guard is not None and (woken in done or loop.time() >= recheck_at):
                    # Before anything more is sent: it may be for access that is gone.
                    if woken in done:
                        woken = None  # a timed re-check keeps waiting on the same wake-up
                    recheck_at = loop.time() + recheck_every
                    guard.wake.clear()
                    try:
                        await _recheck(watch, guard)
                    except _Ended as end:
                        if end.last:
                            yield end.last
                        return
                handed: list[bytes] = []
                if upcoming in done:  # and everything handed out meanwhile: one write
                    handed.append(upcoming.result())
                    while not member.queue.empty():
                        handed.append(member.queue.get_nowait())
                    upcoming = asyncio.ensure_future(member.queue.get())
                body = b"".join(handed)
                now = loop.time()
                if not body and now - last_sent >= keepalive:
                    body = KEEPALIVE
                if body and member.told is not None and member.told != told:
                    told = member.told  # all that was handed out is in this write
                    body += mark(told)
                if body:
                    last_sent = now
                    yield body
        finally:
            # The client went away (Django cancels the response) or the stream ended.
            upcoming.cancel()
            if woken is not None:
                woken.cancel()
            if guard is not None:
                guard.unwatch()
                wakeups.WATCHER.unwatch(guard.user_id, guard)
                OPEN.close(guard)


@require_GET
@login_required
async def events(request: HttpRequest) -> HttpResponse:
    watch = await _watch(request)
    if watch is None:
        return HttpResponseBadRequest("A case id looks like case-7K2M9QXA.\n",
                                      content_type="text/plain")
    if not isinstance(request, ASGIRequest):
        # Under WSGI Django would buffer an endless stream whole: 204 tells the browser not
        # to reconnect, and the page keeps polling.
        return HttpResponse(status=204)
    # A stream stays open for hours and reads the database only at its re-checks: the
    # connection its start used goes back to the pool now (PostgreSQL; on SQLite the shared
    # streams thread keeps its own).
    await sync_to_async(dbconn.release)()
    guard = Guard(request.session.session_key or "", request.user.pk,
                  getattr(request, "_tracerail_access_version", ""))
    # The browser's own reconnect sends the last id it was given; a page opening its stream
    # (or the htmx extension opening a new one) says where it is as `last`.
    given = request.headers.get("Last-Event-ID") or request.GET.get("last")
    resuming = "Last-Event-ID" in request.headers or "last" in request.GET
    response = StreamingHttpResponse(
        stream(watch, guard, log.parse_position(given), resuming),
        content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
