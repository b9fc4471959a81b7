"""CSV export of any case-list filter: streamed page by page, constant memory, no row cap."""

from __future__ import annotations

import csv
from collections.abc import AsyncIterator
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from cases import temporal
from cases.config import custom_fields
from cases.config.custom_fields import Attribute
from cases.config.reading import config_for
from cases.temporal.visibility import InvalidFilter
from cases.web.forms import CaseFilterForm
from workers.model import STATUS_LABELS

EXPORT_PAGE_SIZE = 1000  # Visibility's page size ceiling
BASE_COLUMNS = ["Case", "Title", "Status", "Priority", "Queue", "Assignee", "Tags", "Due",
                "SLA breached", "Requester", "Opened", "Updated"]


class _Line:
    """csv.writer target that hands back each formatted line instead of buffering."""

    def write(self, value: str) -> str:
        return value


def spreadsheet_safe(value: Any) -> str:
    """Neutralise spreadsheet formulas in user text (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def _iso(value: Any) -> str:
    return value.isoformat() if value is not None else ""


def _cells(row: temporal.CaseRow, attributes: list[Attribute]) -> list[str]:
    safe = spreadsheet_safe
    return [
        row.case_id, safe(row.title), STATUS_LABELS.get(row.status, row.status),
        str(row.priority or ""), row.queue, row.assignee or "", safe(" ".join(row.tags)),
        _iso(row.due_at), "yes" if row.sla_breached else "no", safe(row.requester),
        _iso(row.started_at), _iso(row.updated_at),
        *(safe(custom_fields.display(a.type, row.attributes.get(a.name))) for a in attributes),
    ]


async def _lines(query: str, attributes: list[Attribute]) -> AsyncIterator[str]:
    writer = csv.writer(_Line())
    yield writer.writerow([*BASE_COLUMNS, *(a.label for a in attributes)])
    token: str | None = None
    while True:
        try:
            page = await temporal.list_cases(query, EXPORT_PAGE_SIZE, token)
        except temporal.GatewayError as err:
            # Headers are gone already: say so in the file rather than end it silently short.
            yield writer.writerow([f"# export incomplete: {err.message}"])
            return
        for row in page.rows:
            yield writer.writerow(_cells(row, attributes))
        if not page.next_page_token:
            return
        token = page.next_page_token


@require_GET
@login_required
async def export_csv(request: HttpRequest) -> HttpResponse:
    config = await config_for(request)
    access, attributes = config.access, config.attributes
    form = CaseFilterForm(request.GET, queues=config.queues, attributes=attributes)
    if not form.is_valid():
        errors = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
        return HttpResponse(f"Fix the filter: {errors}\n", status=400,
                            content_type="text/plain; charset=utf-8")
    try:
        query = form.case_filter().query(access.username, access.visible_queues)
    except InvalidFilter as err:
        return HttpResponse(f"Fix the filter: {err}\n", status=400,
                            content_type="text/plain; charset=utf-8")
    stamp = timezone.localtime().strftime("%Y%m%d-%H%M")
    response = StreamingHttpResponse(_lines(query, attributes),
                                     content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="cases-{stamp}.csv"'
    return response
