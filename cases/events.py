"""Server push: one Server-Sent-Event stream per open list or case page (`GET /events/`).

A stream subscribes to this process's change feed (cases/feed.py) and tells its page only what
concerns it, under the one access rule (a case outside the user's queues is never described):

- `event: case`, data the new version: the case page's case changed (the page re-asks with
  its `?since=<version>` request, which is how typing stays safe);
- `event: row`, data the list row's HTML as an out-of-band swap (`<tr id="row-…"
  hx-swap-oob="true">`): a case the list shows, or might show, changed. Rendered once per
  change and column set for the whole process (`ROWS`), however many streams carry it;
- `event: list`, data the case id: the list's membership may have changed (a case came into
  or left the filter, or only the index can tell); the page re-fetches its results, at most
  once per `EVENTS_LIST_DEBOUNCE_SECONDS` per stream;
- after a `Resync` (the process missed changes): `list` and `case`, so the page re-reads;
- `: keepalive` every `EVENTS_KEEPALIVE_SECONDS` (15 s) so proxies keep the stream open.

The query string is the list page's own filter parameters, or `case=<id>` for a case page
(both together watch both). The stream ends when the client goes away (Django cancels the
response), and its subscription with it.
"""

from __future__ import annotations

import asyncio
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.views.decorators.http import require_GET

from . import feed, gateway
from .access import Access
from .config import config_for
from .custom_fields import Attribute
from .forms import CaseFilterForm
from .ids import is_case_id
from .templatetags.case_tags import case_row
from .visibility import CaseFilter, InvalidFilter

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

    def html(self, row: gateway.CaseRow, columns: Sequence[Attribute]) -> str:
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


# --- what one stream watches --------------------------------------------------------------------


@dataclass(frozen=True)
class Watch:
    access: Access
    case_id: str = ""  # the case page's case, or ""
    case_filter: CaseFilter | None = None  # the list page's filter, or None
    columns: tuple[Attribute, ...] = ()

    def answer(self, event: feed.Change | feed.Resync) -> list[tuple[str, str]]:
        """The messages this stream's page gets for one feed event."""
        if isinstance(event, feed.Resync):
            return [("list", ""), ("case", "")]
        row, before, access = event.row, event.before, self.access
        visible_now = access.can_see(row.queue)
        out: list[tuple[str, str]] = []
        if self.case_id and event.case_id == self.case_id and visible_now:
            out.append(("case", str(row.version or "")))
        if self.case_filter is None:
            return out
        me, queues = access.username, access.visible_queues
        listed_now = self.case_filter.matches(row, me, queues) if visible_now else False
        listed_before: bool | None
        if (before is None and not visible_now) or (
                before is not None and not access.can_see(before.queue)):
            listed_before = False  # nothing of it was on this user's screens
        else:
            listed_before = event.listed_before(
                lambda r: self.case_filter.matches(r, me, queues))  # type: ignore[union-attr]
        if listed_now is False and listed_before is False:
            return out
        if visible_now:
            out.append(("row", ROWS.html(row, self.columns)))
        if listed_now is None or listed_before is None or listed_now != listed_before:
            # It left the user's queues: the list re-reads (and drops it), told nothing new.
            out.append(("list", event.case_id if visible_now else ""))
        return out


def _list_params(request: HttpRequest) -> bool:
    """Does this stream watch a list? Yes without `case=`, or with list parameters too."""
    return "case" not in request.GET or any(k != "case" for k in request.GET)


async def _watch(request: HttpRequest) -> Watch | None:
    config = await config_for(request)
    access = config.access
    case_id = request.GET.get("case", "")
    if case_id and not is_case_id(case_id):
        return None
    case_filter, columns = None, ()
    if _list_params(request):
        form = CaseFilterForm(request.GET, queues=config.queues, attributes=config.attributes)
        if form.is_valid():
            case_filter = form.case_filter()
            try:
                case_filter.query(access.username, access.visible_queues)
            except InvalidFilter:
                case_filter = None  # the page says "Fix the filter"; nothing to push
            columns = tuple(form.columns)
    return Watch(access, case_id, case_filter, columns)


async def stream(watch: Watch) -> AsyncIterator[bytes]:
    feed.ensure_running()
    loop = asyncio.get_running_loop()
    keepalive = settings.EVENTS_KEEPALIVE_SECONDS
    debounce = settings.EVENTS_LIST_DEBOUNCE_SECONDS
    last_sent = last_list = loop.time() - debounce
    pending_list: str | None = None  # a `list` message waiting out the debounce
    async with feed.subscribe() as events:
        yield OPENING  # subscribed: from here on nothing is missed
        iterator = aiter(events)
        # The next event is awaited across timeouts (never cancelled and re-asked), so the
        # feed's own queue stays the only buffer: a stream that falls behind gets a Resync.
        upcoming: asyncio.Future[Any] = asyncio.ensure_future(anext(iterator))
        try:
            while True:
                deadline = last_sent + keepalive
                if pending_list is not None:
                    deadline = min(deadline, last_list + debounce)
                done, _ = await asyncio.wait({upcoming}, timeout=max(0.0, deadline - loop.time()))
                chunks: list[bytes] = []
                if done:
                    try:
                        event = upcoming.result()
                    except StopAsyncIteration:
                        return
                    upcoming = asyncio.ensure_future(anext(iterator))
                    for name, data in watch.answer(event):
                        if name == "list":
                            pending_list = pending_list or data
                        else:
                            chunks.append(message(name, data))
                now = loop.time()
                if pending_list is not None and now - last_list >= debounce:
                    chunks.append(message("list", pending_list))
                    pending_list, last_list = None, now
                if not chunks and now - last_sent >= keepalive:
                    chunks.append(KEEPALIVE)
                if chunks:
                    last_sent = now
                    yield b"".join(chunks)
        finally:
            # The client went away (Django cancels the response) or the feed ended.
            upcoming.cancel()


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
    response = StreamingHttpResponse(stream(watch), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
