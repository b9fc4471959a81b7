"""The supervisors' dashboard: counts from the Count API, drawn as server-side SVG bars."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from functools import partial

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, QueryDict
from django.urls import reverse
from django.views.decorators.http import require_GET

from cases.config import presence
from cases.config.access import Access, supervisors_of
from cases.config.custom_fields import Attribute
from cases.config.reading import config_for
from cases.live import answers
from cases.temporal.visibility import UNASSIGNED, CaseFilter, InvalidFilter
from cases.web.forms import STATUS_CHOICES, CaseFilterForm
from cases.web.htmx import render_for
from cases.web.saved_views import clean_query
from workers.model import OPEN_STATUSES, PRIORITY_LABELS, STATUSES


@dataclass
class Bar:
    label: str
    count: int
    href: str
    css: str = ""


@dataclass
class Chart:
    title: str
    bars: list[Bar] = field(default_factory=list)
    note: str = ""

    @property
    def peak(self) -> int:
        return max([b.count for b in self.bars] + [1])

    @property
    def height(self) -> int:
        return 28 * len(self.bars) + 4


@dataclass
class QueueRow:
    """One queue's line (issue 17): open cases at risk and breached, its agents by
    availability (as they set it on their availability page), and its supervisors (who are
    told of its breaches)."""

    name: str
    at_risk: int
    at_risk_href: str
    breached: int
    breached_href: str
    available: list[str]
    away: list[str]
    supervisors: list[str] = field(default_factory=list)


def _href(base: QueryDict, **changes: object) -> str:
    """The case list URL for the dashboard's filter plus one bar's slice."""
    params = base.copy()
    params.pop("page", None)
    for key, value in changes.items():
        values = value if isinstance(value, list) else [value]
        params.setlist(key, [str(v) for v in values])
    return f"{reverse('cases:list')}?{params.urlencode()}"


@require_GET
@login_required
async def dashboard(request: HttpRequest) -> HttpResponse:
    config = await config_for(request, holders=True)
    access = config.access
    if not access.is_supervisor:
        raise PermissionDenied("The dashboard is for supervisors and admins.")
    queues, attributes = config.queues, config.attributes
    form = CaseFilterForm(request.GET, queues=queues, attributes=attributes)
    charts: list[Chart] = []
    totals: dict[str, int] = {}
    per_queue: list[QueueRow] = []
    if form.is_valid():
        try:
            charts, totals, per_queue = await _charts(
                form.case_filter(), access, request.GET, queues, attributes, config.holders)
        except InvalidFilter as err:
            form.add_error(None, str(err))
    context = {"form": form, "charts": charts, "totals": totals, "per_queue": per_queue,
               "refresh_seconds": settings.DASHBOARD_REFRESH_SECONDS,
               "list_url": f"{reverse('cases:list')}?{clean_query(request.GET)}"}
    return render_for(request, "cases/dashboard.html", "panels", context)


async def _charts(
    f: CaseFilter, access: Access, query: QueryDict, queues: list[tuple[str, str]],
    attributes: list[Attribute], assignees: list[str],
) -> tuple[list[Chart], dict[str, int], list[QueueRow]]:
    me, visible = access.username, access.visible_queues
    # "Open" slices honour a status filter: open statuses that the filter also allows.
    open_statuses = [s for s in OPEN_STATUSES if not f.statuses or s in f.statuses]
    open_f = replace(f, statuses=open_statuses)
    base = f.without_statuses()
    fs: dict[str, CaseFilter] = {}
    for status in STATUSES:
        fs[f"status:{status}"] = replace(base, statuses=[status])
    for p in PRIORITY_LABELS:
        fs[f"priority:{p}"] = replace(open_f, priorities=[p])
    for slug, _ in queues:
        fs[f"queue:{slug}"] = replace(open_f, queues=[slug])
        fs[f"queue_at_risk:{slug}"] = replace(open_f, queues=[slug], at_risk=True)
        fs[f"queue_breached:{slug}"] = replace(open_f, queues=[slug], breached=True)
    for name in assignees:
        fs[f"assignee:{name}"] = replace(open_f, assignee=name)
    fs["assignee:"] = replace(open_f, assignee=UNASSIGNED)
    fs["breached"] = replace(open_f, breached=True)
    fs["at_risk"] = replace(open_f, at_risk=True)
    fs["due_soon"] = replace(open_f, breached=False,
                             due_within_hours=settings.DASHBOARD_AT_RISK_HOURS)
    for days in settings.DASHBOARD_AGING_DAYS:
        fs[f"aging:{days}"] = replace(open_f, older_than_days=days)
    # Keyword attributes with a fixed set of values get a breakdown (Visibility cannot list
    # the distinct values of a free-text Keyword).
    breakdowns = [a for a in attributes if a.type == "Keyword" and a.choices]
    for attr in breakdowns:
        for choice in attr.choices:
            sliced = replace(open_f, attributes={**f.attributes, attr.name: ("Keyword", choice)})
            fs[f"attr:{attr.name}:{choice}"] = sliced
    if not open_statuses:
        # The filter asks for closed or resolved cases only: every "open" slice is empty.
        fs = {k: v for k, v in fs.items() if k.startswith("status:")}
    q = {k: v.query(me, visible) for k, v in fs.items()}
    # The filters read in Python let the change feed keep the counts fresh (answers.py).
    matchers = {k: partial(v.matches, me=me, visible_queues=visible) for k, v in fs.items()}
    counts = await answers.count_many(q, ttl=settings.DASHBOARD_CACHE_SECONDS,
                                      matchers=matchers)
    counts = defaultdict(int, counts)
    charts = [
        Chart("By status", [Bar(label, counts[f"status:{value}"], _href(query, status=value),
                                f"status-{value}") for value, label in STATUS_CHOICES]),
        Chart("Open by priority", [
            Bar(f"{p} · {label}", counts[f"priority:{p}"],
                _href(query, priority=p, status=open_statuses), f"p{p}")
            for p, label in PRIORITY_LABELS.items()]),
        Chart("Open by queue", [Bar(name, counts[f"queue:{slug}"],
                                    _href(query, queue=slug, status=open_statuses))
                                for slug, name in queues]),
    ]
    top = sorted(assignees, key=lambda n: -counts[f"assignee:{n}"])
    top = [n for n in top if counts[f"assignee:{n}"]][: settings.DASHBOARD_TOP_ASSIGNEES]
    charts.append(Chart(
        "Open by assignee",
        [Bar(n, counts[f"assignee:{n}"], _href(query, assignee=n, status=open_statuses))
         for n in top]
        + [Bar("Unassigned", counts["assignee:"],
               _href(query, assignee="none", status=open_statuses), "unassigned")],
        note=(f"The {settings.DASHBOARD_TOP_ASSIGNEES} busiest of {len(assignees)} people."
              if len(assignees) > settings.DASHBOARD_TOP_ASSIGNEES else ""),
    ))
    charts.append(Chart("SLA", [
        Bar("Breached", counts["breached"],
            _href(query, breached="yes", status=open_statuses), "bad"),
        Bar("At risk", counts["at_risk"], _href(query, at_risk="yes", status=open_statuses),
            "warn"),
        Bar(f"Due within {settings.DASHBOARD_AT_RISK_HOURS} h", counts["due_soon"],
            _href(query, breached="no", due_within=settings.DASHBOARD_AT_RISK_HOURS,
                  status=open_statuses), "warn"),
    ]))
    charts.append(Chart("Aging (open longer than)", [
        Bar(f"{d} day{'s' if d != 1 else ''}", counts[f"aging:{d}"],
            _href(query, older_than=d, status=open_statuses))
        for d in settings.DASHBOARD_AGING_DAYS]))
    for attr in breakdowns:
        charts.append(Chart(f"Open by {attr.label}", [
            Bar(choice, counts[f"attr:{attr.name}:{choice}"],
                _href(query, **{attr.filter_name: choice, "status": open_statuses}))
            for choice in attr.choices]))
    present = await presence.by_queue_async([slug for slug, _ in queues])
    supervising = await sync_to_async(supervisors_of)(*(slug for slug, _ in queues))
    per_queue = [QueueRow(
        name, counts[f"queue_at_risk:{slug}"],
        _href(query, queue=slug, at_risk="yes", status=open_statuses),
        counts[f"queue_breached:{slug}"],
        _href(query, queue=slug, breached="yes", status=open_statuses),
        present[slug].available, present[slug].away, supervising[slug])
        for slug, name in queues]
    totals = {
        "open": sum(counts[f"status:{s}"] for s in OPEN_STATUSES),
        "breached": counts["breached"],
        "at_risk": counts["at_risk"],
        "unassigned": counts["assignee:"],
    }
    return charts, totals, per_queue
