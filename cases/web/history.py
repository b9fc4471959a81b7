"""The History tab, its downloads, and the search of ended cases.

All of it is read from the event history (workers/projection.py rebuilds each state with the
workflow's own rules), so it works for live and ended cases alike, with no worker running.
Once a case's execution is gone (past retention, deleted) the case export's timeline stands
in (cases/analytics/ended.py): the same timeline and CSV, without time travel or raw JSON.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from cases import temporal
from cases.analytics import ended as exported
from cases.config import custom_fields
from cases.config.reading import config_for
from cases.temporal.ids import is_case_id
from cases.temporal.visibility import InvalidFilter, archived_queries
from cases.web.export import spreadsheet_safe
from cases.web.lookup import history_or_export
from workers.model import PRIORITY_LABELS

ARCHIVE_PAGE_SIZE = 50


def _chosen(projection: temporal.Projection, at: str) -> temporal.Entry | None:
    """`at` is an event id in the latest run, or `<run id>.<event id>` for an earlier one."""
    if not at:
        return None
    run_id, _, event = at.rpartition(".")
    run_id = run_id or projection.run_ids[-1]
    if not event.isdigit():
        raise Http404("No such event.")
    entry = projection.state_after(run_id, int(event))
    if entry is None:
        raise Http404("No such point in this case's history.")
    return entry


@require_GET
@login_required
async def case_history(request: HttpRequest, case_id: str) -> HttpResponse:
    """The timeline; with `?at=`, the case exactly as it was right after that event."""
    config = await config_for(request)
    run_id = request.GET.get("run") or ""
    at = request.GET.get("at", "")
    history = await history_or_export(config.access, case_id, run_id)
    if isinstance(history, exported.ExportedCase):
        # Only the final state was exported: no point in time to travel to (said on the page).
        return render(request, "cases/history.html", {
            "exported": history,
            "entries": [(e, "") for e in reversed(history.entries)],
            "chosen": None,
            "at_refused": bool(at),
            "case": history.state,
            "run_id": run_id,
            "run_query": f"run={run_id}&" if run_id else "",
        })
    projection = history.projection
    chosen = _chosen(projection, at)
    last_run = projection.run_ids[-1]
    entries = [(e, str(e.event_id) if e.run_id == last_run else f"{e.run_id}.{e.event_id}")
               for e in reversed(projection.entries)]
    shown = chosen.state if chosen is not None else projection.state
    return render(request, "cases/history.html", {
        "projection": projection,
        "entries": entries,
        "chosen": chosen,
        "case": shown,
        "attribute_rows": custom_fields.attribute_rows(shown, config.attributes)
        if shown is not None else [],
        "priority_labels": PRIORITY_LABELS,
        "run_id": run_id,
        "run_query": f"run={run_id}&" if run_id else "",
    })


def _download(content: str | bytes, content_type: str, filename: str) -> HttpResponse:
    response = HttpResponse(content, content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


RAW_GONE = ("The raw event history of {case_id} is gone: Temporal no longer has its "
            "execution (past the namespace's retention, or deleted). The case export keeps "
            "its timeline; download it as CSV from the History tab.\n")


@require_GET
@login_required
async def case_history_json(request: HttpRequest, case_id: str) -> HttpResponse:
    """The raw event history of every run, in Temporal's own JSON form."""
    access = (await config_for(request)).access
    history = await history_or_export(access, case_id, request.GET.get("run"), raw=True)
    if isinstance(history, exported.ExportedCase):
        # The export keeps the timeline in business words, not Temporal's events.
        return HttpResponse(RAW_GONE.format(case_id=case_id), status=404,
                            content_type="text/plain; charset=utf-8")
    body = json.dumps({"caseId": case_id, "runs": history.raw}, indent=1)
    return _download(body, "application/json", f"{case_id}-history.json")


CSV_COLUMNS = ["#", "Time", "Actor", "Event", "Detail", "Version", "Run", "Event id"]


@require_GET
@login_required
async def case_history_csv(request: HttpRequest, case_id: str) -> HttpResponse:
    """The timeline in business words, for people and spreadsheets."""
    access = (await config_for(request)).access
    history = await history_or_export(access, case_id, request.GET.get("run"))
    if isinstance(history, exported.ExportedCase):
        versions = history.versions
        rows = [(e, versions.get(e.seq) or "") for e in history.entries]
    else:
        rows = [(e, e.state.version if e.state is not None else "")
                for e in history.projection.entries]
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    safe = spreadsheet_safe
    for e, version in rows:
        writer.writerow([
            e.seq, e.at.isoformat(), safe(e.actor), safe(e.text), safe(e.detail),
            version, e.run_id, e.event_id])
    return _download(out.getvalue(), "text/csv; charset=utf-8", f"{case_id}-history.csv")


# --- ended cases: the case export, and the archive where the cluster keeps one --------------


class ArchivedSearchForm(forms.Form):
    case_id = forms.CharField(required=False, max_length=40, label="Case id",
                              widget=forms.TextInput(attrs={"placeholder": "case-…"}))
    closed_from = forms.DateField(required=False, label="Closed from",
                                  widget=forms.DateInput(attrs={"type": "date"}))
    closed_to = forms.DateField(required=False, label="Closed to",
                                widget=forms.DateInput(attrs={"type": "date"}))
    # The case export only: the archive's query language has no requester.
    queue = forms.SlugField(required=False, max_length=100, label="Queue")
    requester = forms.EmailField(required=False, label="Requester email")

    def clean_case_id(self) -> str:
        value = (self.cleaned_data.get("case_id") or "").strip()
        if value and not is_case_id(value):
            raise forms.ValidationError("A case id looks like case-7K2M9QXA.")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        start, end = data.get("closed_from"), data.get("closed_to")
        if start and end and start > end:
            raise forms.ValidationError("“Closed from” is after “Closed to”.")
        return data


ARCHIVE_NEEDS = "To search the archive: Give a case id or a close-time range."


def _page_number(value: str | None) -> int:
    return int(value) if value and value.isdigit() and 0 < int(value) < 100_000 else 1


@require_GET
@login_required
async def archived(request: HttpRequest) -> HttpResponse:
    """Ended cases: always searched in the case export (which outlives retention on every
    cluster), and in the visibility archive too (ListArchivedWorkflowExecutions) where the
    namespace has one."""
    access = (await config_for(request)).access
    form = ArchivedSearchForm(request.GET or None)
    context: dict[str, Any] = {"form": form, "status": None, "page": None, "ended": None}
    valid = form.is_valid() if form.is_bound else True
    data: dict[str, Any] = form.cleaned_data if form.is_bound and valid else {}
    if valid:
        # The access rule in the query: only the viewer's queues are read.
        context["ended"] = await asyncio.to_thread(
            exported.search_ended, access.visible_queues, case_id=data.get("case_id", ""),
            closed_from=data.get("closed_from"), closed_to=data.get("closed_to"),
            queue=data.get("queue") or "", requester=data.get("requester") or "",
            page=_page_number(request.GET.get("p")))
    try:
        status = context["status"] = await temporal.archival_status()
    except temporal.GatewayError as err:
        # The export needs no Temporal: its results stand; the archive cannot be asked.
        context["status_error"] = err.message
        return render(request, "cases/archived.html", context)
    if not (status.visibility and form.is_bound and valid):
        return render(request, "cases/archived.html", context)
    if not (data["case_id"] or data["closed_from"] or data["closed_to"]):
        context["archive_needs"] = ARCHIVE_NEEDS
        return render(request, "cases/archived.html", context)
    try:
        queries = archived_queries(status.visibility_uri, data["case_id"],
                                   data["closed_from"], data["closed_to"])
        if len(queries) == 1:
            page = await temporal.list_archived(queries[0], ARCHIVE_PAGE_SIZE,
                                               request.GET.get("page") or None)
        else:
            # S3 and GCS archives answer per day; the first page of each day is plenty
            # for a search by case id or a short range.
            pages = await asyncio.gather(*(
                temporal.list_archived(q, ARCHIVE_PAGE_SIZE) for q in queries))
            page = temporal.CasePage([r for p in pages for r in p.rows])
    except InvalidFilter as err:
        form.add_error(None, str(err))
    except temporal.ArchivalNotConfigured as err:
        context["refused"] = err.message
    except temporal.ArchiveQueryRefused as err:
        form.add_error(None, err.message)
    else:
        # Archived records carry the case's search attributes; the queue decides access.
        page.rows = [r for r in page.rows if access.can_see(r.queue)
                     and (not data["queue"] or r.queue == data["queue"])]
        context["page"] = page
    return render(request, "cases/archived.html", context)
