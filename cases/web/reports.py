"""Reports over time (issue 24): figures from the case export, drawn as server-side SVG with
the table beside each chart, every bar opening the cases behind it, and every table as CSV
or Parquet. The figures are cases.analytics.reports' (one home); this module only asks and
draws. Supervisors and admins only, counted inside the queues they may see."""

from __future__ import annotations

import csv
import io
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pyarrow as pa
import pyarrow.parquet as pq
from asgiref.sync import sync_to_async
from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from cases.analytics import reports
from cases.analytics.reports import Report, ReportSpec
from cases.config.calendars import valid_time_zone
from cases.config.custom_fields import Attribute
from cases.config.reading import RequestConfig, config_for
from cases.models import Queue
from cases.web.export import spreadsheet_safe
from workers.model import PRIORITY_LABELS

DEFAULT_DAYS = 30
MAX_DAYS = 366
METRICS = ("opened", "resolved", "backlog", "breached", "met", "reopened")
DRILLDOWN_LIMIT = 500
TABLES = ("days", "groups", "agents")
PARQUET = "application/vnd.apache.parquet"
NONE = "(none)"  # reports.build's group for no assignee / no attribute value


# --- the form ---------------------------------------------------------------------------------


class ReportForm(forms.Form):
    first = forms.DateField(label="First day", widget=forms.DateInput(attrs={"type": "date"}))
    last = forms.DateField(label="Last day", widget=forms.DateInput(attrs={"type": "date"}))
    by = forms.ChoiceField(label="Group by")
    tz = forms.CharField(label="Time zone", max_length=64,
                         help_text="Days start and end at midnight here (yours, by default).")

    def __init__(self, data: QueryDict, *, attributes: list[Attribute]) -> None:
        # Every field has a default, so /reports/ alone is a report: the last 30 days in the
        # viewer's time zone (the page's script adds it; the server's until then).
        data = data.copy()
        tz = data.get("tz") or settings.TIME_ZONE
        data["tz"] = tz
        today = datetime.now(ZoneInfo(tz) if tz in _zones() else UTC).date()
        if not data.get("last"):
            data["last"] = today.isoformat()
        if not data.get("first"):
            data["first"] = (today - timedelta(days=DEFAULT_DAYS - 1)).isoformat()
        data.setdefault("by", "queue")
        super().__init__(data)
        keywords = [a for a in attributes if a.type == "Keyword"]
        self.fields["by"].choices = [
            ("queue", "Queue"), ("agent", "Agent"), ("priority", "Priority"),
            *((f"attr:{a.name}", a.label) for a in keywords)]

    def clean_tz(self) -> str:
        tz: str = self.cleaned_data["tz"].strip()
        if tz not in _zones() or not valid_time_zone(tz):
            raise forms.ValidationError("Choose a time zone such as Europe/Paris.")
        return tz

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        first, last = data.get("first"), data.get("last")
        if first and last:
            if last < first:
                self.add_error("last", "The last day is before the first.")
            elif (last - first).days + 1 > MAX_DAYS:
                self.add_error("last", f"A report covers at most {MAX_DAYS} days.")
        return data

    def spec(self, queues: list[str] | None) -> ReportSpec:
        d = self.cleaned_data
        return ReportSpec(first=d["first"], last=d["last"], time_zone=d["tz"], by=d["by"],
                          queues=queues)

    def params(self) -> dict[str, str]:
        """The report's own parameters, for the links from it."""
        d = self.cleaned_data
        return {"first": d["first"].isoformat(), "last": d["last"].isoformat(),
                "by": d["by"], "tz": d["tz"]}


@lru_cache(maxsize=1)
def _zones() -> frozenset[str]:
    # Only names of the IANA database: ZoneInfo alone would also read a path-like key.
    import zoneinfo

    return frozenset(zoneinfo.available_timezones() | {"UTC"})


# --- what the page shows ----------------------------------------------------------------------


class Labels:
    """A group's words for people: queue names, priority labels, attribute values as they are."""

    def __init__(self, by: str, queues: dict[str, str]) -> None:
        self.by, self.queues = by, queues

    def __call__(self, group: str) -> str:
        if self.by == "queue":
            return self.queues.get(group, group)
        if self.by == "priority":
            try:
                return f"{int(group)} · {PRIORITY_LABELS[int(group)]}"
            except (KeyError, ValueError):
                return group
        if self.by == "agent":
            return "Unassigned" if group in ("", NONE) else group
        return group or NONE


# The chart's drawing box (viewBox units); the page scales it to its width.
W, H, LEFT, RIGHT, TOP, BOTTOM = 640, 220, 40, 10, 12, 26


@dataclass
class Mark:
    """One drawn figure of a day: a bar (opened, resolved) or a point (backlog)."""

    metric: str
    value: int
    href: str
    x: float
    y: float
    width: float = 0.0
    height: float = 0.0


@dataclass
class DayLine:
    day: date
    opened: Mark
    resolved: Mark
    backlog: Mark

    @property
    def figures(self) -> tuple[Mark, Mark, Mark]:
        return self.opened, self.resolved, self.backlog


@dataclass
class Chart:
    group: str
    label: str
    slug: str
    peak: int
    days: list[DayLine] = field(default_factory=list)
    backlog_points: str = ""
    ticks: list[tuple[float, float, str]] = field(default_factory=list)  # (y, text y, value)
    day_ticks: list[tuple[float, str]] = field(default_factory=list)  # (x, day)
    width: int = W
    height: int = H
    label_y: int = H - 8


def drilldown_href(params: dict[str, str], metric: str, day: date | None = None,
                   group: str | None = None, **override: str) -> str:
    query = {"metric": metric, **params, **override}
    if day is not None:
        query["day"] = day.isoformat()
    if group is not None:
        query["group"] = group
    return f"{reverse('reports:cases')}?{urlencode(query)}"


def charts_of(report: Report, params: dict[str, str], label: Labels) -> list[Chart]:
    by_group: dict[str, list[Any]] = {}
    for row in report.days:
        by_group.setdefault(row.group, []).append(row)
    return [_chart(f"g{n}", group, sorted(rows, key=lambda r: r.day), params, label)
            for n, (group, rows) in enumerate(by_group.items())]


def _chart(slug: str, group: str, rows: list[Any], params: dict[str, str],
           label: Labels) -> Chart:
    peak = max([max(r.opened, r.resolved, r.backlog) for r in rows] + [1])
    plot_w, plot_h = W - LEFT - RIGHT, H - TOP - BOTTOM
    slot = plot_w / len(rows)
    bar = round(max(slot * 0.38, 0.6), 2)

    def y(value: int) -> float:
        return round(TOP + plot_h - value / peak * plot_h, 2)

    def mark(metric: str, day: date, value: int, x: float, width: float = 0.0) -> Mark:
        return Mark(metric, value, drilldown_href(params, metric, day, group), round(x, 2),
                    y(value), width, round(value / peak * plot_h, 2) if width else 0.0)

    chart = Chart(group, label(group), slug, peak)
    points = []
    for i, r in enumerate(rows):
        x = LEFT + i * slot
        chart.days.append(DayLine(
            r.day, mark("opened", r.day, r.opened, x + slot * 0.12, bar),
            mark("resolved", r.day, r.resolved, x + slot * 0.12 + bar, bar),
            mark("backlog", r.day, r.backlog, x + slot / 2)))
        points.append(f"{round(x + slot / 2, 2)},{y(r.backlog)}")
    chart.backlog_points = " ".join(points)
    chart.ticks = [(y(v), y(v) + 4, str(v)) for v in sorted({0, peak // 2, peak})]
    step = max(1, len(rows) // 6)
    chart.day_ticks = [(round(LEFT + (i + 0.5) * slot, 2), rows[i].day.strftime("%b %-d"))
                       for i in range(0, len(rows), step)]
    return chart


@dataclass
class GroupLine:
    row: Any
    label: str
    opened_href: str
    resolved_href: str
    met_href: str
    breached_href: str
    reopened_href: str
    working_hours: bool


def _calendar_queues() -> set[str]:
    return set(Queue.objects.filter(calendar__isnull=False).values_list("slug", flat=True))


def _is_empty(report: Report) -> bool:
    return not report.groups and not report.agents and not any(
        d.opened or d.resolved or d.backlog for d in report.days)


# --- downloads ----------------------------------------------------------------------------


def _rows(report: Report, table: str) -> list[dict[str, Any]]:
    return [asdict(r) for r in getattr(report, table)]


def download(report: Report, table: str, fmt: str) -> HttpResponse:
    rows = _rows(report, table)
    spec = report.spec
    name = f"report-{table}-{spec.first:%Y%m%d}-{spec.last:%Y%m%d}"
    if fmt == "parquet":
        schemas = {"days": reports.DayRow, "groups": reports.GroupRow,
                   "agents": reports.AgentRow}
        names = list(schemas[table].__dataclass_fields__)
        sink = io.BytesIO()
        table_ = pa.Table.from_pylist(rows) if rows else pa.table({n: [] for n in names})
        pq.write_table(table_, sink)
        response = HttpResponse(sink.getvalue(), content_type=PARQUET)
        response["Content-Disposition"] = f'attachment; filename="{name}.parquet"'
        return response
    out = io.StringIO()
    writer = csv.writer(out)
    if rows:
        writer.writerow(list(rows[0]))
    for row in rows:
        # Groups and agent names are people's text: never a formula in a spreadsheet.
        writer.writerow([spreadsheet_safe(v) if isinstance(v, str) else
                         ("" if v is None else v) for v in row.values()])
    response = HttpResponse(out.getvalue(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
    return response


# --- views --------------------------------------------------------------------------------


async def _supervisor_config(request: HttpRequest) -> RequestConfig:
    config = await config_for(request)
    if not config.access.is_supervisor:
        raise PermissionDenied("Reports are for supervisors and admins.")
    return config


def _freshness(report: Report) -> dict[str, Any]:
    if report.fresh_at is None:
        return {"never": True}
    minutes = max(0, int((datetime.now(UTC) - report.fresh_at).total_seconds() // 60))
    return {"at": report.fresh_at, "minutes": minutes}


def _summary(report: Report, params: dict[str, str], label: Labels,
             calendars: set[str]) -> list[GroupLine]:
    def href(metric: str, group: str) -> str:
        return drilldown_href(params, metric, None, group)

    return [GroupLine(g, label(g.group), href("opened", g.group), href("resolved", g.group),
                      href("met", g.group), href("breached", g.group),
                      href("reopened", g.group),
                      report.spec.by == "queue" and g.group in calendars)
            for g in report.groups]


@require_GET
@login_required
async def report_page(request: HttpRequest) -> HttpResponse:
    config = await _supervisor_config(request)
    form = ReportForm(request.GET, attributes=config.attributes)
    context: dict[str, Any] = {"form": form, "report": None}
    if not form.is_valid():
        if "download" in request.GET:
            errors = "; ".join(f"{k}: {' '.join(v)}" for k, v in form.errors.items())
            return HttpResponse(f"Fix the report's form: {errors}\n", status=400,
                                content_type="text/plain; charset=utf-8")
        return render(request, "reports/report.html", context, status=400)
    spec = form.spec(config.access.visible_queues)
    report = await sync_to_async(reports.build, thread_sensitive=False)(spec)
    table, fmt = request.GET.get("download"), request.GET.get("format", "csv")
    if table is not None:
        if table not in TABLES or fmt not in ("csv", "parquet"):
            return HttpResponse("download is days, groups or agents; format is csv or "
                                "parquet.\n", status=400,
                                content_type="text/plain; charset=utf-8")
        return download(report, table, fmt)
    params = form.params()
    label = Labels(spec.by, dict(config.queues))
    calendars = await sync_to_async(_calendar_queues)()
    query = urlencode(params)
    context.update({
        "report": report,
        "empty": _is_empty(report),
        "fresh": _freshness(report),
        "charts": charts_of(report, params, label),
        "summary": _summary(report, params, label, calendars),
        "agents": [(Labels("agent", {})(a.agent), a,
                    drilldown_href(params, "resolved", None, a.agent, by="agent"))
                   for a in report.agents],
        "by_label": dict(form.fields["by"].choices).get(spec.by, spec.by),
        "calendar_queues": sorted(dict(config.queues).get(q, q) for q in calendars),
        "downloads": {t: {f: f"?{query}&{urlencode({'download': t, 'format': f})}"
                          for f in ("csv", "parquet")} for t in TABLES},
        "export_seconds": int(settings.ANALYTICS_EXPORT_SECONDS),
    })
    with timezone.override(ZoneInfo(spec.time_zone)):  # every time shown in the viewer's
        return render(request, "reports/report.html", context)


class DrilldownForm(forms.Form):
    metric = forms.ChoiceField(choices=[(m, m) for m in METRICS])
    day = forms.DateField(required=False)


METRIC_WORDS = {"opened": "Opened", "resolved": "Resolved", "backlog": "Open at the end of",
                "breached": "SLA breached", "met": "SLA met", "reopened": "Reopened"}


@require_GET
@login_required
async def drilldown(request: HttpRequest) -> HttpResponse:
    config = await _supervisor_config(request)
    form = ReportForm(request.GET, attributes=config.attributes)
    which = DrilldownForm(request.GET)
    context: dict[str, Any] = {"form": form, "which": which, "rows": None}
    if not (form.is_valid() and which.is_valid()):
        return render(request, "reports/cases.html", context, status=400)
    spec = form.spec(config.access.visible_queues)
    metric, day = which.cleaned_data["metric"], which.cleaned_data["day"]
    group = request.GET.get("group")  # absent: every group; "" is a group (unassigned)
    rows = await sync_to_async(reports.matching_cases, thread_sensitive=False)(
        spec, metric, day, group, DRILLDOWN_LIMIT)
    tz = ZoneInfo(spec.time_zone)
    label = Labels(spec.by, dict(config.queues))
    context.update({
        "rows": rows, "metric_words": METRIC_WORDS[metric], "day": day,
        "group_label": None if group is None else label(group),
        "by_label": dict(form.fields["by"].choices).get(spec.by, spec.by),
        "limited": len(rows) >= DRILLDOWN_LIMIT, "limit": DRILLDOWN_LIMIT,
        "back": f"{reverse('reports:page')}?{urlencode(form.params())}",
        "queue_names": dict(config.queues),
    })
    with timezone.override(tz):
        return render(request, "reports/cases.html", context)
