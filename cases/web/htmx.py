"""Page or partial, decided once (the `for_htmx` pattern)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def render_for(request: HttpRequest, template: str, partial: str, context: dict[str, Any],
               *, status: int = 200) -> HttpResponse:
    """The whole page, or for an HTMX request only its `partial`. HTMX answers are 200 so
    htmx swaps them whatever the outcome: the outcome is in the markup."""
    if getattr(request, "htmx", False):
        return render(request, f"{template}#{partial}", context)
    return render(request, template, context, status=status)
