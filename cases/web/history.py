"""The History tab, its downloads, and the search of archived cases.

All of it is read from the event history (workers/projection.py rebuilds each state with the
workflow's own rules), so it works for live and ended cases alike, with no worker running.
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
from cases.config import custom_fields
from cases.config.reading import config_for
from cases.temporal.ids import is_case_id
from cases.temporal.visibility import InvalidFilter, archived_queries
from cases.web.export import spreadsheet_safe
from cases.web.lookup import history_for
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
    history = await history_for(config.access, case_id, run_id)
    projection = history.projection
    chosen = _chosen(projection, request.GET.get("at", ""))
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


@require_GET
@login_required
async def case_history_json(request: HttpRequest, case_id: str) -> HttpResponse:
    """The raw event history of every run, in Temporal's own JSON form."""
    access = (await config_for(request)).access
    history = await history_for(access, case_id, request.GET.get("run"), raw=True)
    body = json.dumps({"caseId": case_id, "runs": history.raw}, indent=1)
    return _download(body, "application/json", f"{case_id}-history.json")


CSV_COLUMNS = ["#", "Time", "Actor", "Event", "Detail", "Version", "Run", "Event id"]


@require_GET
@login_required
async def case_history_csv(request: HttpRequest, case_id: str) -> HttpResponse:
    """The timeline in business words, for people and spreadsheets."""
    access = (await config_for(request)).access
    history = await history_for(access, case_id, request.GET.get("run"))
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    safe = spreadsheet_safe
    for e in history.projection.entries:
        writer.writerow([
            e.seq, e.at.isoformat(), safe(e.actor), safe(e.text), safe(e.detail),
            e.state.version if e.state is not None else "", e.run_id, e.event_id])
    return _download(out.getvalue(), "text/csv; charset=utf-8", f"{case_id}-history.csv")


# --- archived cases ------------------------------------------------------------------------------


class ArchivedSearchForm(forms.Form):
    case_id = forms.CharField(required=False, max_length=40, label="Case id",
                              widget=forms.TextInput(attrs={"placeholder": "case-…"}))
    closed_from = forms.DateField(required=False, label="Closed from",
                                  widget=forms.DateInput(attrs={"type": "date"}))
    closed_to = forms.DateField(required=False, label="Closed to",
                                widget=forms.DateInput(attrs={"type": "date"}))

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
        if not (data.get("case_id") or start or end):
            raise forms.ValidationError("Give a case id or a close-time range.")
        return data


@require_GET
@login_required
async def archived(request: HttpRequest) -> HttpResponse:
    """Find completed cases in the visibility archive (ListArchivedWorkflowExecutions)."""
    access = (await config_for(request)).access
    status = await temporal.archival_status()
    form = ArchivedSearchForm(request.GET or None)
    context: dict[str, Any] = {"form": form, "status": status, "page": None}
    if status.visibility and form.is_valid():
        data = form.cleaned_data
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
            page.rows = [r for r in page.rows if access.can_see(r.queue)]
            context["page"] = page
    return render(request, "cases/archived.html", context)
