"""The in-app side of notifications (issue 16): the inbox page, marking read, the badge's
count, and each person's per-kind choices."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cases import temporal
from cases.config.reading import access_of, config_for
from cases.models import Notification, NotificationPreference
from cases.notify.inbox import Reader, notices_of, reader
from cases.notify.inbox import mark_read as mark_notices_read
from cases.temporal.visibility import cases_query
from workers.model import CaseState
from workers.rules import NOTICE_KINDS

logger = logging.getLogger(__name__)

PAGE = 25
# Histories read at once for one page (each is one case's, whatever its notices on the page).
HISTORY_READS = 5
# Why a person was told, as the inbox says it (the keys are workers.rules.NOTICE_KINDS).
REASONS = {"assigned": "assigned to you", "mentioned": "you were mentioned",
           "watching": "a case you watch", "sla_breached": "SLA breached in your queue",
           "sla_at_risk": "at risk of breaching"}
UNAVAILABLE = ("Titles and what was said are unavailable: Temporal is not answering. "
               "The notices are listed by case, reason, who and when.")


def _reader(request: HttpRequest) -> Reader:
    return reader(request.user.pk, access_of(request.user).visible_queues)


def _visible(request: HttpRequest) -> QuerySet[Notification]:
    return notices_of(_reader(request))


@dataclass
class Shown:
    """A notice as the page shows it: its references, and the words Temporal gives now."""

    note: Notification
    reason: str
    title: str | None = None  # None: not known (Temporal away, or the case not listed)
    line: str = ""  # the timeline's line for the change
    said: str = ""  # a comment's text or a resolution
    words: bool = False  # the case's history was read for this notice


def _words(state: CaseState | None, kind: str) -> str:
    if state is None:
        return ""
    if kind in ("comment", "internal note") and state.comments:
        return state.comments[-1].body
    if kind == "resolved":
        return state.resolution
    return ""


async def _history(case_id: str, semaphore: asyncio.Semaphore) -> temporal.Projection | None:
    async with semaphore:
        try:
            return (await temporal.case_history(case_id)).projection
        except temporal.GatewayError as err:
            logger.info("inbox: the history of %s is unavailable: %s", case_id, err)
            return None


async def _read(shown: list[Shown], visible_queues: list[str] | None) -> str:
    """Titles (one Visibility List for the page) and what was said (one history read per
    case on the page, of the cases the reader may see now). Returns what is unavailable,
    in words, or ""."""
    if not shown:
        return ""
    try:
        page = await temporal.list_cases(
            cases_query([s.note.case_id for s in shown], visible_queues), PAGE)
    except temporal.GatewayError as err:
        logger.info("inbox: titles unavailable: %s", err)
        return UNAVAILABLE
    rows = {r.case_id: r for r in page.rows}
    semaphore = asyncio.Semaphore(HISTORY_READS)
    ids = list(dict.fromkeys(s.note.case_id for s in shown if s.note.case_id in rows))
    projections = dict(zip(ids, await asyncio.gather(*(_history(c, semaphore) for c in ids)),
                           strict=True))
    missing = False
    for item in shown:
        row = rows.get(item.note.case_id)
        if row is None:
            continue
        item.title = row.title
        projection = projections.get(item.note.case_id)
        if projection is None:
            missing = True
            continue
        # The entry that made the notice's version (later lines of the same version, such
        # as "notified", keep the state and come after it).
        entry = next((e for e in projection.entries if e.state is not None
                      and str(e.state.version) == item.note.event), None)
        if entry is not None:
            item.line, item.said, item.words = entry.text, _words(entry.state, entry.kind), True
    return "What was said is unavailable for some cases: their history could not be read." \
        if missing else ""


@require_GET
@login_required
async def inbox(request: HttpRequest) -> HttpResponse:
    access = (await config_for(request)).access
    mine = notices_of(reader(request.user.pk, access.visible_queues))
    try:
        number = max(1, int(request.GET.get("page", "1")))
    except ValueError:
        number = 1
    start = (number - 1) * PAGE
    notes = [n async for n in mine[start:start + PAGE + 1]]
    unread = await mine.filter(read_at__isnull=True).acount()
    shown = [Shown(n, REASONS.get(n.kind, n.kind)) for n in notes[:PAGE]]
    unavailable = await _read(shown, access.visible_queues)
    return render(request, "notifications/inbox.html", {
        "items": shown, "unread": unread, "unavailable": unavailable,
        "page": number, "older": len(notes) > PAGE})


@require_GET
@login_required
def badge(request: HttpRequest) -> HttpResponse:
    unread = _visible(request).filter(read_at__isnull=True).count()
    return JsonResponse({"unread": unread})


@require_POST
@login_required
def mark_read(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(_visible(request), pk=pk)
    mark_notices_read(_reader(request), pk=item.pk)
    return redirect("notifications:inbox")


@require_POST
@login_required
def mark_all_read(request: HttpRequest) -> HttpResponse:
    done = mark_notices_read(_reader(request))
    messages.success(request, f"Marked {done} read.")
    return redirect("notifications:inbox")


class PreferencesForm(forms.Form):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        for kind, label in NOTICE_KINDS.items():
            self.fields[kind] = forms.ChoiceField(
                label=label, choices=NotificationPreference.CHANNELS,
                initial=NotificationPreference.BOTH)


@require_http_methods(["GET", "POST"])
@login_required
def preferences(request: HttpRequest) -> HttpResponse:
    saved = {p.kind: p.channel for p in NotificationPreference.objects.filter(user=request.user)}
    if request.method == "POST":
        form = PreferencesForm(request.POST)
        if form.is_valid():
            for kind in NOTICE_KINDS:
                NotificationPreference.objects.update_or_create(
                    user=request.user, kind=kind, defaults={"channel": form.cleaned_data[kind]})
            messages.success(request, "Saved how you are told.")
            return redirect("notifications:settings")
    else:
        form = PreferencesForm(initial={k: saved.get(k, NotificationPreference.BOTH)
                                        for k in NOTICE_KINDS})
    return render(request, "notifications/settings.html", {"form": form})
