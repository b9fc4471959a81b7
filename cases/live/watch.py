"""What one stream watches (`Watch`), and the one home of "what does this change tell this
page" (`Watch.answer`, under the one access rule). The web reads a stream's request into a
Watch (cases/web/events.py) and hands it what pages are drawn with (`Drawing`): the push
layer sits below the pages and never imports them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse

from cases.config.access import Access
from cases.config.custom_fields import Attribute
from cases.live import feed, listing
from cases.live.sse import message
from cases.temporal.types import CaseRow
from cases.temporal.visibility import ME, CaseFilter


@dataclass(frozen=True)
class Drawing:
    """What the pages give the push layer to draw with: a list row's out-of-band HTML, the
    case as one user may see it (the web's one door: a 404 or Temporal away raises), and
    the case page's shared partial for what that door returned."""

    row: Callable[[CaseRow, list[Attribute]], str]
    read_case: Callable[[Access, str], Awaitable[Any]]
    case_html: Callable[[HttpRequest | None, Any], Awaitable[str]]


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
    drawing: Drawing | None = field(default=None, compare=False)

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
        if visible_now and self.drawing is not None:
            out.append(("row", self.drawing.row(row, list(self.columns))))
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
        (a later page is not pushed, its page re-fetches itself). A case page's pushed HTML
        also differs by the attributes the user may set (its forms offer those)."""
        return (*self.interest, self.list_query, self.asked is None,
                self.access.attributes if self.case_id else None)

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
