from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.decorators import sync_and_async_middleware
from django.utils.deprecation import MiddlewareMixin

from . import gateway


@sync_and_async_middleware
def resolve_user(get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]):
    """Load the user before an async view runs.

    Templates read `request.user` synchronously; in an async view that lazy lookup would hit
    the database from the event loop and raise SynchronousOnlyOperation.
    """
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            request.user = await request.auser()
            return await get_response(request)  # type: ignore[misc]

        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponse:
        # Sync chain (WSGI, the test client): evaluate the lazy user here, on the request
        # thread, before an async view runs on another thread.
        request.user.is_authenticated  # noqa: B018
        return get_response(request)  # type: ignore[return-value]

    return sync_middleware


class TemporalErrors(MiddlewareMixin):
    """Any page whose Temporal call failed says so in words, with a 503, never a traceback."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, gateway.TemporalUnavailable | gateway.WorkerUnavailable):
            if request.path.startswith("/api/"):
                response = JsonResponse({"error": exception.message}, status=503)
                response["Retry-After"] = "5"
                return response
            htmx = getattr(request, "htmx", None)
            context = {"reason": exception.message,
                       "retry_url": (htmx.current_url if htmx else None) or request.path}
            if htmx:
                # htmx swaps 503s (see base.html's htmx-config): show the message in place of
                # the page's content, whatever element the request meant to update.
                response = render(request, "503.html#message", context, status=503)
                response["HX-Retarget"] = "main"
                response["HX-Reswap"] = "innerHTML"
            else:
                response = render(request, "503.html", context, status=503)
            response["Retry-After"] = "5"
            return response
        return None

