from __future__ import annotations

import html
from datetime import datetime
from functools import cache
from typing import Any

from django import template
from django.template.defaultfilters import linebreaksbr
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe

from workers.model import STATUS_LABELS

register = template.Library()



@register.filter
def status_label(value: str) -> str:
    return STATUS_LABELS.get(value, value)


@register.filter
def get_item(mapping: dict[Any, Any] | None, key: Any) -> Any:
    return (mapping or {}).get(key, "")


_UNITS = ((365 * 86400, "year"), (30 * 86400, "month"), (7 * 86400, "week"),
          (86400, "day"), (3600, "hour"), (60, "minute"))


# A list row's units: its "due" and "updated" columns give their width to the title (issue 26).
_SHORT = {"year": "y", "month": "mo", "week": "wk", "day": "d", "hour": "h", "minute": "min"}


def _span(seconds: float, short: bool = False) -> str:
    """The largest whole unit, like timesince(depth=1) but cheap enough for every list row."""
    for size, name in _UNITS:
        if seconds >= size:
            n = int(seconds // size)
            return f"{n} {_SHORT[name]}" if short else f"{n} {name}{'s' if n != 1 else ''}"
    return "0 min" if short else "0 minutes"


@register.filter
def due_in(value: datetime | None, short: bool = False) -> str:
    """Time left until due, or how long ago it fell due."""
    if value is None:
        return ""
    left = (value - timezone.now()).total_seconds()
    return f"in {_span(left, short)}" if left > 0 else f"overdue {_span(-left, short)}"


@register.filter
def ago(value: datetime | None, short: bool = False) -> str:
    if value is None:
        return ""
    return f"{_span((timezone.now() - value).total_seconds(), short)} ago"


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
    from cases.config.custom_fields import display

    return display(attr.type, (values or {}).get(attr.name))


@cache
def _case_url_prefix() -> str:
    return reverse("cases:detail", args=["case-00000000"]).removesuffix("case-00000000/")


def case_url(case_id: str) -> str:
    """The case page's path, without reversing a URL per row of a 50-row page."""
    return f"{_case_url_prefix()}{case_id}/"


@register.simple_tag
def case_row(row: Any, columns: list[Any] | None = None, oob: bool = False) -> str:
    """One case-list row, built as a string with every value escaped.

    A 50-row page rendered through template nodes (or even format_html) cost more than the
    Visibility call behind it, so this is the one place markup is assembled by hand: each
    interpolated value below goes through `e` (html.escape)."""
    from cases.config.custom_fields import display
    from workers.model import PRIORITY_LABELS

    e = _escape
    case_id, url = e(row.case_id), e(case_url(row.case_id))
    if row.closed_at is not None:
        due = (f'<span class="muted">ended <time datetime="{e(iso(row.closed_at))}" '
               f'title="{e(ago(row.closed_at))}">{e(ago(row.closed_at, True))}</time></span>')
    elif row.sla_breached:
        due = '<span class="breach">breached</span>'
    elif row.due_at is not None and row.status not in ("resolved", "closed"):
        due = f'<span title="{e(due_in(row.due_at))}">{e(due_in(row.due_at, True))}</span>'
    else:
        due = ""
    updated = (f'<time datetime="{e(iso(row.updated_at))}" title="{e(ago(row.updated_at))}">'
               f'{e(ago(row.updated_at, True))}</time>' if row.updated_at else "")
    tags = "".join(f'<span class="tag">{e(t)}</span>' for t in row.tags)
    tags = f'<span class="tags">{tags}</span>' if tags else ""
    requester = f'<span class="requester">{e(row.requester)}</span>' if row.requester else ""
    # Written by another Temporal client in a shape this app cannot read: say so, rather
    # than pass the defaults shown for those fields off as the case's values.
    unreadable = (f' <span class="badge warn" title="Not readable: '
                  f'{e(", ".join(row.unreadable))}">unreadable fields</span>'
                  if row.unreadable else "")
    extra = "".join(f'<td class="attr">{e(display(a.type, row.attributes.get(a.name)))}</td>'
                    for a in columns or [])
    priority, title = e(row.priority or ""), e(row.title)
    # Any Temporal client may start a case without a title: a link with no text is one a
    # screen reader cannot name (axe link-name).
    label = title if row.title.strip() else '<span class="muted">(no title)</span>'
    breached = " breached" if row.sla_breached else ""
    swap = ' hx-swap-oob="true"' if oob else ""
    # A workflow stopped outside the case's rules (terminated in Temporal, say).
    stopped = (f' <span class="badge warn">{e(row.execution_status.replace("_", " "))}</span>'
               if row.execution_status not in ("running", "completed") else "")
    # The id is no column of its own (issue 26: the title gets the width): it follows the
    # title in the same cell, its "case-" prefix kept in the text (find in page, copy) but
    # shown only where there is room, and the row has one link, the title's.
    prefix, _, code = row.case_id.partition("-")
    shown_id = (f'<span class="id-prefix">{e(prefix)}-</span>{e(code)}' if code else case_id)
    return mark_safe(
        f'<tr id="row-{case_id}" class="case-row{breached}"{swap}>'
        f'<td class="select"><input type="checkbox" name="case" value="{case_id}" form="bulk" '
        f'aria-label="Select {case_id}"></td>'
        # One line: the title (full text in the link and in `title`), then the quieter rest.
        f'<td class="title"><div class="title-cell"><div class="title-line">'
        f'<a href="{url}" title="{title}">{label}</a>'
        f'{unreadable}{tags}{requester}</div><span class="case-id">{shown_id}</span></div></td>'
        f'<td class="col-status"><span class="badge status-{e(row.status)}">'
        f'{e(status_label(row.status))}</span>{stopped}</td>'
        f'<td class="col-prio"><span class="prio p{priority}" '
        f'title="{e(PRIORITY_LABELS.get(row.priority, ""))}">{priority}</span></td>'
        f'<td class="col-queue">{e(row.queue)}</td>'
        f'<td class="col-assignee">{e(row.assignee or "—")}</td>'
        f'<td class="col-due">{due}</td><td class="col-updated">{updated}</td>{extra}</tr>'
    )


def _escape(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _local(value: datetime, fmt: str) -> str:
    return timezone.localtime(value).strftime(fmt)


def attachment_url(case_id: str, attachment_id: str, preview: bool = False) -> str:
    return f"{case_url(case_id)}attachments/{attachment_id}/{'preview/' if preview else ''}"


def _size(n: int) -> str:
    for unit, size in (("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def attachment_item(case_id: str, a: Any, *, who: bool = False) -> str:
    """One file as a list item: its name (the download), size and type (and `who` added it,
    when), and a thumbnail when the store previews it (raster images only)."""
    from cases.files.store import PREVIEWABLE

    e = _escape
    url, f = e(attachment_url(case_id, a.id)), a.file
    thumb = (f'<img class="thumb" src="{e(attachment_url(case_id, a.id, preview=True))}" '
             f'alt="" loading="lazy" width="96" height="72">'
             if f.content_type in PREVIEWABLE else "")
    by = (f' · {e(a.by)}, <time datetime="{e(a.at.isoformat())}">'
          f'{e(_local(a.at, "%b %-d, %H:%M"))}</time>'
          f'{" · with a comment" if a.comment is not None else ""}' if who else "")
    anchor = f' id="attachment-{e(a.id)}"' if who else ""  # once per page: the Files card
    return (f'<li class="attachment"{anchor}>{thumb}'
            f'<a href="{url}" download>{e(f.name)}</a> '
            f'<span class="muted small">{e(_size(f.size))} · {e(f.content_type)}{by}</span></li>')


@register.simple_tag
def case_attachments(case: Any) -> str:
    """The case's files: one list, thumbnails for raster images."""
    if not getattr(case, "attachments", None):
        return mark_safe('<p class="muted">No files yet.</p>')
    items = "".join(attachment_item(case.case_id, a, who=True) for a in case.attachments)
    return mark_safe(f'<ul class="attachments">{items}</ul>')


@register.simple_tag
def case_comments(comments: list[Any], case_id: str = "",
                  attachments: list[Any] | None = None) -> str:
    """The conversation, assembled like case_row (every value escaped) for the same reason: a
    long case would otherwise spend more time in template nodes than in its Query. A mail
    received says so and links the message as it came; a public comment the requester was
    emailed says to whom (`Comment.mailed_to`, marked from the delivery's answer)."""
    if not comments:
        return mark_safe('<li class="muted">No comments yet.</li>')
    e = _escape
    files = {a.id: a for a in attachments or ()}
    badge = ' · <span class="badge internal">Internal</span>'
    out = []
    for c in comments:
        received = sent = attached = ""
        if c.via == "email":
            original = (f' · <a href="{e(attachment_url(case_id, c.original))}" download>'
                        'Full message</a>' if c.original and c.original in files else "")
            received = (f'<p class="mail-line received">Received by email from '
                        f'{e(c.sender or c.author)}{original}</p>')
        if not c.internal and c.mailed_to:
            sent = f'<p class="mail-line sent">Sent to {e(", ".join(c.mailed_to))}</p>'
        came = [files[i] for i in c.attachments if i in files and i != c.original]
        if came:
            attached = ('<ul class="attachments">'
                        + "".join(attachment_item(case_id, a) for a in came) + "</ul>")
        classes = "comment" + (" internal" if c.internal else "") + \
            (" via-email" if c.via == "email" else "")
        out.append(
            f'<li class="{classes}"><div class="meta">'
            f'<strong>{e(c.author)}</strong> · <time datetime="{e(c.at.isoformat())}">'
            f'{e(_local(c.at, "%b %-d, %H:%M"))}</time>{badge if c.internal else ""}</div>'
            f'{received}<div class="body">{linebreaksbr(c.body, autoescape=True)}</div>'
            f'{attached}{sent}</li>')
    return mark_safe("".join(out))
