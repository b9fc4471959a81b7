from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest


def tracerail(request: HttpRequest) -> dict[str, Any]:
    # Resolved with the user by the middleware (cases.config.reading.resolve): no extra query.
    config = getattr(request, "_tracerail_config", None)
    return {
        "is_supervisor": bool(config is not None and config.access.is_supervisor),
        "temporal_ui_url": settings.TEMPORAL_UI_URL.rstrip("/"),
        "temporal_namespace": settings.TEMPORAL_NAMESPACE,
    }
