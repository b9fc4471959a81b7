"""Server push: `GET /events/`, one Server-Sent-Event stream per open list or case page.

The request is read into a `Watch` (cases/live/watch.py), and its stream (cases/live/stream.py)
is the response. The push layer is cases/live/; docs/push.md maps its concepts onto its
modules. What a page is told:

- `event: case-html`, data the case's `#case` partial: the case page's case changed; read once
  and rendered once for every page of its kind, without the person's own parts, and swapped
  in by the browser as a `?since=` answer is, typing kept (cases/live/case_pages.py);
- `event: case`, data the new version: the case changed but could not be pushed (or the page
  resumed past it): the page re-asks with its `?since=<version>` request;
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
- `list` and `case` together (`sse.REREAD`): the page re-reads (the process missed changes,
  or a page resumed from a position this process no longer holds);
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

A stream is a request that never ends, so its access is checked again while it is open
(cases/live/guards.py): when the user's access version moves and every
EVENTS_RECHECK_SECONDS. If what the user may see changed, the stream tells its page to re-read
and ends; the browser reconnects as a fresh request, under the new access. A stream also ends
after EVENTS_MAX_AGE_SECONDS, and the page reconnects the same way. A stream never holds a
request thread: tracerail/asgi.py sends its few synchronous steps (its start, its re-checks)
to threads shared by every stream (cases/web/request_threads.py).

The query string is the list page's own filter parameters, or `case=<id>` for a case page
(both together watch both), and `last=`. The stream ends when the client goes away (Django
cancels the response), and its membership with it."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET

from cases.config import dbconn
from cases.config.reading import config_for
from cases.live import listing, log
from cases.live.guards import Guard
from cases.live.stream import stream
from cases.live.watch import Drawing, Watch
from cases.templatetags.case_tags import case_row
from cases.temporal.ids import is_case_id
from cases.temporal.visibility import InvalidFilter
from cases.web import lookup
from cases.web.forms import CaseFilterForm


async def _shared_case_html(request: HttpRequest | None, seen: lookup.Seen) -> str:
    from cases.web.views import shared_case_html  # the case page's own render

    return await shared_case_html(request, seen)


# What the push layer draws pages with: the pages' own row, door and case render.
DRAWING = Drawing(
    row=lambda row, columns: str(case_row(row, columns, oob=True)),
    read_case=lambda access, case_id: lookup.case_for(access, case_id, refresh=True),
    case_html=_shared_case_html,
)


def _list_params(request: HttpRequest) -> bool:
    """Does this stream watch a list? Yes without `case=`, or with list parameters too."""
    return "case" not in request.GET or any(k not in ("case", "last") for k in request.GET)


async def watch_for(request: HttpRequest) -> Watch | None:
    """What the stream of this request watches; None for a malformed case id."""
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
    return Watch(access, case_id, case_filter, columns, asked, query, request, page_path,
                 drawing=DRAWING)


@require_GET
@login_required
async def events(request: HttpRequest) -> HttpResponse:
    found = await watch_for(request)
    if found is None:
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
        stream(found, guard, log.parse_position(given), resuming),
        content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response
