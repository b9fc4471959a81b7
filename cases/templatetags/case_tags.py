from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.template.defaultfilters import linebreaksbr
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import mark_safe

register = template.Library()

STATUS_LABELS = {
    "new": "New",
    "in_progress": "In progress",
    "waiting": "Waiting",
    "resolved": "Resolved",
    "closed": "Closed",
}


@register.filter
def status_label(value: str) -> str:
    return STATUS_LABELS.get(value, value)


@register.filter
def get_item(mapping: dict[Any, Any] | None, key: Any) -> Any:
    return (mapping or {}).get(key, "")


_UNITS = ((365 * 86400, "year"), (30 * 86400, "month"), (7 * 86400, "week"),
          (86400, "day"), (3600, "hour"), (60, "minute"))


def _span(seconds: float) -> str:
    """The largest whole unit, like timesince(depth=1) but cheap enough for every list row."""
    for size, name in _UNITS:
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {name}{'s' if n != 1 else ''}"
    return "0 minutes"


@register.filter
def due_in(value: datetime | None) -> str:
    """Time left until due, or how long ago it fell due."""
    if value is None:
        return ""
    left = (value - timezone.now()).total_seconds()
    return f"in {_span(left)}" if left > 0 else f"overdue {_span(-left)}"


@register.filter
def ago(value: datetime | None) -> str:
    if value is None:
        return ""
    return f"{_span((timezone.now() - value).total_seconds())} ago"


@register.filter
def iso(value: datetime | None) -> str:
    return value.isoformat() if value is not None else ""


@register.simple_tag(takes_context=True)
def query_with(context: template.Context, **changes: Any) -> str:
    """The current query string with some parameters replaced (filters survive paging)."""
    params = context["request"].GET.copy()
    for key, value in changes.items():
        params[key] = value
    return params.urlencode()


@register.simple_tag(takes_context=True)
def query_without(context: template.Context, *keys: str) -> str:
    params = context["request"].GET.copy()
    for key in keys:
        params.pop(key, None)
    return params.urlencode()


@register.filter
def split(value: str) -> list[str]:
    return value.split()


@register.filter
def field(form: Any, name: str) -> Any:
    return form[name]


@register.filter
def mul(value: float, factor: float) -> float:
    return round(float(value) * float(factor), 1)


@register.filter
def percent_of(value: float, whole: float) -> float:
    return round(100.0 * float(value) / float(whole), 1) if whole else 0.0


@register.filter
def attribute(values: dict[str, Any] | None, attr: Any) -> str:
    """A custom attribute's value for a table cell."""
    from cases.custom_fields import display

    return display(attr.type, (values or {}).get(attr.name))


@register.simple_tag
def case_row(row: Any, columns: list[Any] | None = None, oob: bool = False) -> str:
    """One case-list row. Built in Python with format_html (every value escaped) because a
    50-row page rendered through template nodes cost more than the Visibility call behind it."""
    from cases.custom_fields import display
    from workers.model import PRIORITY_LABELS

    closed = row.status in ("resolved", "closed")
    if row.sla_breached:
        due = mark_safe('<span class="breach">breached</span>')
    elif row.due_at is not None and not closed:
        due = due_in(row.due_at)
    else:
        due = ""
    updated = format_html('<time datetime="{}">{}</time>', iso(row.updated_at),
                          ago(row.updated_at)) if row.updated_at else ""
    return format_html(
        '<tr id="row-{id}" class="case-row{breached}"{oob}>'
        '<td class="select"><input type="checkbox" name="case" value="{id}" form="bulk" '
        'aria-label="Select {id}"></td>'
        '<td class="mono"><a href="{url}">{id}</a></td>'
        '<td class="title"><a href="{url}">{title}</a>{tags}{requester}</td>'
        '<td><span class="badge status-{status}">{status_label}</span></td>'
        '<td><span class="prio p{priority}" title="{priority_label}">{priority}</span></td>'
        '<td>{queue}</td><td>{assignee}</td>'
        '<td class="nowrap">{due}</td><td class="nowrap">{updated}</td>{extra}</tr>',
        id=row.case_id, url=row.url, title=row.title,
        breached=" breached" if row.sla_breached else "",
        oob=mark_safe(' hx-swap-oob="true"') if oob else "",
        tags=format_html_join("", '<span class="tag">{}</span>', ((t,) for t in row.tags)),
        requester=format_html('<div class="muted small">{}</div>', row.requester)
        if row.requester else "",
        status=row.status, status_label=status_label(row.status),
        priority=row.priority or "", priority_label=PRIORITY_LABELS.get(row.priority, ""),
        queue=row.queue, assignee=row.assignee or "—", due=due, updated=updated,
        extra=format_html_join("", '<td class="attr">{}</td>', (
            (display(a.type, row.attributes.get(a.name)),) for a in columns or [])),
    )


def _local(value: datetime, fmt: str) -> str:
    return timezone.localtime(value).strftime(fmt)


@register.simple_tag
def case_comments(comments: list[Any]) -> str:
    """The conversation, built with format_html (escaped) for the same reason as case_row:
    a long case would otherwise spend more time in template nodes than in its Query."""
    if not comments:
        return mark_safe('<li class="muted">No comments yet.</li>')
    return format_html_join(
        "",
        '<li class="comment{}"><div class="meta"><strong>{}</strong> · '
        '<time datetime="{}">{}</time>{}</div><div class="body">{}</div></li>',
        ((" internal" if c.internal else "", c.author, c.at.isoformat(),
          _local(c.at, "%b %-d, %H:%M"),
          mark_safe(' · <span class="badge internal">Internal</span>') if c.internal else "",
          linebreaksbr(c.body, autoescape=True))
         for c in comments),
    )


@register.simple_tag
def case_timeline(events: list[Any], limit: int = 0) -> str:
    """Newest first; `limit` keeps the page light on long cases (0: everything)."""
    shown = list(reversed(events))
    if limit:
        shown = shown[:limit]
    return format_html_join(
        "",
        '<li><time datetime="{}">{}</time> <strong>{}</strong> {}{}</li>',
        ((e.at.isoformat(), _local(e.at, "%b %-d, %H:%M:%S"), e.actor, e.kind,
          format_html(' <span class="muted">{}</span>', e.detail) if e.detail else "")
         for e in shown),
    )
