from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def tracerail(request: HttpRequest) -> dict[str, Any]:
    return {
        "temporal_ui_url": settings.TEMPORAL_UI_URL.rstrip("/"),
        "temporal_namespace": settings.TEMPORAL_NAMESPACE,
    }
