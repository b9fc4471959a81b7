"""Server push: one Server-Sent-Event stream per open list or case page (`GET /events/`).

A stream subscribes to this process's change feed (cases/live/feed.py) and tells its page only what
concerns it, under the one access rule (a case outside the user's queues is never described):

- `event: case`, data the new version: the case page's case changed (the page re-asks with
  its `?since=<version>` request, which is how typing stays safe);
- `event: row`, data the list row's HTML as an out-of-band swap (`<tr id="row-…"
  hx-swap-oob="true">`): a case the list shows, or might show, changed. Rendered once per
  change and column set for the whole process (`ROWS`), however many streams carry it;
- `event: results`, data the list's results section (rows, pager and the status counts, out
  of band): the list's membership may have changed (a case came into or left the filter, or
  only the index can tell). Rendered once per change for every stream of the process that
  shows the same list (`RENDERS`), at most once per `EVENTS_LIST_DEBOUNCE_SECONDS`;
- `event: counts`, data the status counts as out-of-band spans: a listed case changed status
  in place, so the chips changed though the rows did not (shared the same way);
- `event: list`: the page re-fetches its results itself: after a `Resync`, for a later page
  (its cursor cannot be kept fresh) or when the shared render failed (the page then shows
  the outage its own way);
- after a `Resync` (the process missed changes): `list` and `case`, so the page re-reads;
- `: keepalive` every `EVENTS_KEEPALIVE_SECONDS` (15 s) so proxies keep the stream open;
- `event: signed-out`, data the login page's URL, and the stream ends: the session is no longer
  signed in (logged out elsewhere, password changed, user deactivated or deleted);
- `event: ended`, data a sentence for the page, and the stream ends: a newer stream of the same
  session or user displaced it (EVENTS_MAX_PER_SESSION, EVENTS_MAX_PER_USER); the page stops
  listening and says so.

A stream is a request that never ends, so its access is checked again while it is open: when
the user's access version moves (cases/config/access_version.py) and every EVENTS_RECHECK_SECONDS.
If what the user may see changed, the stream tells its page to re-read (`list`, `case`) and
ends; the browser reconnects as a fresh request, under the new access. A stream also ends after
EVENTS_MAX_AGE_SECONDS, and the page reconnects the same way.

The query string is the list page's own filter parameters, or `case=<id>` for a case page
(both together watch both). The stream ends when the client goes away (Django cancels the
response), and its subscription with it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, partial
from importlib import import_module
from typing import Any

from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET

from cases import temporal
from cases.config import access_version, dbconn
from cases.config.access import Access
from cases.config.custom_fields import Attribute
from cases.config.reading import config_for, resolve_session
from cases.live import feed, listing, log
from cases.templatetags.case_tags import case_row
from cases.temporal.ids import is_case_id
from cases.temporal.visibility import ME, CaseFilter, InvalidFilter
from cases.web import request_threads
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


# --- rendered rows, shared by every stream of the process ---------------------------------------


class RowCache:
    """List-row HTML by (case, what the row shows, columns): one render per change however
    many streams carry it. Small and in memory: a row is only wanted while its change is
    being handed out."""

    def __init__(self, size: int = 512) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[Any, ...], str] = OrderedDict()
        self.hits = 0
        self.renders = 0

    def html(self, row: temporal.CaseRow, columns: Sequence[Attribute]) -> str:
        key = (row.case_id, row.run_id, row.version, row.execution_status, row.updated_at,
               row.closed_at, row.sla_breached, tuple((a.name, a.type) for a in columns))
        found = self.entries.get(key)
        if found is not None:
            self.entries.move_to_end(key)
            self.hits += 1
            return found
        self.renders += 1
        html = str(case_row(row, list(columns), oob=True))
        self.entries[key] = html
        if len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return html


ROWS = RowCache()


class SharedRenders:
    """A list's pushed results or counts, rendered once per (list, feed position) for every
    stream of the process that shows that list: 60 agents watching one queue cost one render
    and no Visibility call (the answers are the shared, feed-checked ones)."""

    def __init__(self, size: int = 256) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[Any, ...], asyncio.Future[bytes]] = OrderedDict()
        self.renders = 0
        self.shared = 0

    async def get(self, key: tuple[Any, ...], make: Callable[[], Awaitable[bytes]]) -> bytes:
        loop = asyncio.get_running_loop()
        key = (id(loop), *key)
        task = self.entries.get(key)
        if task is None:
            self.renders += 1
            task = self.entries[key] = loop.create_task(make())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)
        else:
            self.shared += 1
        return await asyncio.shield(task)


RENDERS = SharedRenders()


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
            out.append(("row", ROWS.html(row, self.columns)))
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

    @property
    def group(self) -> tuple[Any, ...]:
        """Streams showing the same list (same answers, same markup) share one render."""
        assert self.asked is not None
        return (*self.asked.key, self.list_query, tuple(a.name for a in self.columns))

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

    async def flush(self, what: str, mark: tuple[int, float], fallback: str) -> bytes:
        """The pushed results (`what` = "results") or counts, shared by the group; when the
        list cannot be rendered here (a later page, Temporal away) the page re-fetches."""
        if self.asked is None:
            return message("list", fallback)
        html = self.results_html if what == "results" else self.counts_html

        async def make() -> bytes:  # encoded once too: a results section is tens of kB
            return message(what, await html())

        try:
            return await RENDERS.get((what, mark, *self.group), make)
        except Exception:  # the page's own re-fetch shows the outage the page's way
            return message("list", fallback)


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
        access_version.WATCHER.watch(self.user_id, version, self.wake)

    def unwatch(self) -> None:
        access_version.WATCHER.unwatch(self.user_id, self.wake)

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


class _Cursor:
    """How far this stream's page has been told: the id it resumes from. It never passes a
    change the page has not had: a list change waiting for its tick caps it just before that
    change until it is sent, and batches still queued count only once taken."""

    def __init__(self, position: log.Position | None) -> None:
        self.at = position
        self.cap: log.Position | None = None

    def reached(self, position: log.Position | None) -> None:
        if position is None:
            return
        if self.at is None or position[0] != self.at[0] or position[1] > self.at[1]:
            self.at = position

    def waiting(self, before: log.Position | None) -> None:
        if self.cap is None:
            self.cap = before

    def sent(self) -> None:
        self.cap = None

    @property
    def id(self) -> log.Position | None:
        return self.cap if self.cap is not None else self.at


# Every open stream's later synchronous work (re-checks, the store) runs on this one thread:
# a stream gives its request's own thread back once its database work is done.
_STREAMS_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tracerail-streams")


class _OnStreamsThread(Executor):
    """What a stream's request runs on after giving its thread back. Its request's end shuts
    down what it ran on (asgiref): here that shuts nothing down."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        return _STREAMS_THREAD.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        return None


_ON_STREAMS_THREAD = _OnStreamsThread()


def _give_back_request_thread() -> None:
    """asgiref keeps a request's thread for its thread-sensitive calls until the request
    ends; a stream does not end, so each held a thread for its life."""
    context = SyncToAsync.thread_sensitive_context.get(None)
    if context is None:
        return
    own = SyncToAsync.context_to_thread_executor.get(context)
    SyncToAsync.context_to_thread_executor[context] = _ON_STREAMS_THREAD
    if own is not None and own is not _ON_STREAMS_THREAD:
        request_threads.give_back(own)


async def stream(watch: Watch, guard: Guard | None = None,
                 resume: log.Position | None = None, resuming: bool = False
                 ) -> AsyncIterator[bytes]:
    """`resume` is the page's position (its last event id, or the feed's position when the page
    was rendered): what changed since is sent first, or, when this process no longer holds
    it, one re-read. `resuming` with no readable position is a re-read too."""
    feed.ensure_running()
    loop = asyncio.get_running_loop()
    keepalive = settings.EVENTS_KEEPALIVE_SECONDS
    debounce = settings.EVENTS_LIST_DEBOUNCE_SECONDS
    recheck_every = settings.EVENTS_RECHECK_SECONDS
    started = last_sent = loop.time()
    ends_at = started + settings.EVENTS_MAX_AGE_SECONDS * (1 + random.uniform(0, 0.1))
    recheck_at = started + recheck_every
    # A changed list is pushed at the next tick of a grid `debounce` apart, the same ticks
    # for every stream of the process, so the streams of one list flush together, at the
    # same feed position, and share one render.
    pending: dict[str, str] = {}  # "list" / "counts" waiting for the tick -> case id
    latest: tuple[int, float] = (0, 0.0)  # the latest change seen: (seq, when the feed saw it)
    flush_at, resync = 0.0, False
    if guard is not None:
        guard.watch(guard.version)
        OPEN.open(guard)
    _give_back_request_thread()
    async with feed.subscribe(watch.answer, watch.interest) as events:
        cursor = _Cursor(events.caught_up())
        epoch = cursor.at[0] if cursor.at is not None else None
        chunks: list[bytes] = [OPENING]

        def take(change: feed.Change, answered: list[tuple[str, str]]) -> None:
            nonlocal latest, flush_at
            latest = (change.seq, change.seen_at)
            for name, data in answered:
                if name not in ("list", "counts"):
                    chunks.append(message(name, data))
                    continue
                if not pending:
                    flush_at = _tick(loop.time(), debounce)
                cursor.waiting((epoch, change.seq - 1))
                pending.setdefault(name, data)
            cursor.reached((epoch, change.seq))

        # Subscribed first, then what was missed: nothing falls between the two, and a change
        # in both is sent once (`replayed`: the last seq the replay sent).
        missed = feed.since(resume)
        replayed = 0
        if missed is None and (resuming or resume is not None):
            chunks.append(message("list", "") + message("case", ""))
        elif missed:
            for change in missed:
                take(change, watch.answer(change))
            replayed = missed[-1].seq
            flush_at = loop.time()  # the page is behind already: no need to wait for a tick
        told = cursor.id
        chunks.append(mark(told))
        yield b"".join(chunks)
        iterator = aiter(events)
        # The next event is awaited across timeouts (never cancelled and re-asked), so the
        # feed's own queue stays the only buffer: a stream that falls behind gets a Resync.
        upcoming: asyncio.Future[Any] = asyncio.ensure_future(anext(iterator))
        woken: asyncio.Future[Any] | None = None
        try:
            while True:
                deadline = min(last_sent + keepalive, ends_at)
                if pending:
                    deadline = min(deadline, flush_at)
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
                    woken, recheck_at = None, loop.time() + recheck_every
                    guard.wake.clear()
                    try:
                        await _recheck(watch, guard)
                    except _Ended as end:
                        if end.last:
                            yield end.last
                        return
                chunks = []
                if upcoming in done:
                    try:
                        batch = upcoming.result()  # what one feed read brought this page
                    except StopAsyncIteration:
                        return
                    upcoming = asyncio.ensure_future(anext(iterator))
                    for event, answered in batch:
                        if isinstance(event, feed.Resync):
                            # Missed changes: the page re-reads; its id moves to the new
                            # position once it has been told to.
                            resync, replayed, flush_at = True, 0, loop.time()
                            cursor.waiting(cursor.id)
                            pending.setdefault("list", "")
                            if event.position is not None:
                                epoch = event.position[0]
                                cursor.reached(event.position)
                        elif event.seq > replayed:
                            take(event, answered)
                if pending and loop.time() >= flush_at:
                    if resync:
                        chunks.append(message("list", "") + message("case", ""))
                    elif "list" in pending:
                        chunks.append(await watch.flush("results", latest, pending["list"]))
                    else:
                        chunks.append(await watch.flush("counts", latest, ""))
                    pending, resync = {}, False
                    cursor.sent()
                if not pending:
                    cursor.reached(events.caught_up())
                now = loop.time()
                if not chunks and now - last_sent >= keepalive:
                    chunks.append(KEEPALIVE)
                if cursor.id != told:
                    told = cursor.id
                    chunks.append(mark(told))
                if chunks:
                    last_sent = now
                    yield b"".join(chunks)
        finally:
            # The client went away (Django cancels the response) or the stream ended.
            upcoming.cancel()
            if woken is not None:
                woken.cancel()
            if guard is not None:
                guard.unwatch()
                OPEN.close(guard)


def _tick(now: float, every: float) -> float:
    """The next tick of the process's debounce grid after `now`."""
    if every <= 0:
        return now
    return (now // every + 1) * every


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
    # A stream stays open for hours and reads nothing more from the database: its thread
    # gives its connection back now (a PostgreSQL allows a hundred or so in all, and a
    # contact centre keeps a stream or two open per agent).
    await sync_to_async(connections.close_all)()
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
