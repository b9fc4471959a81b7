from __future__ import annotations

from django import template

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
