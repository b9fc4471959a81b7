from __future__ import annotations

from collections.abc import Awaitable, Callable
from http import HTTPStatus

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils.decorators import sync_and_async_middleware
from django.utils.deprecation import MiddlewareMixin
from whitenoise.middleware import WhiteNoiseMiddleware

from . import gateway


class StaticFiles(WhiteNoiseMiddleware):
    """WhiteNoise, async-capable. WhiteNoise's middleware is sync only, and one sync middleware
    near the top makes Django run the whole chain above it on the single thread that serves
    thread-sensitive sync code, with a hop back to the loop for the rest: every request,
    push streams included, queued for that thread (measured: seconds of latency at 500
    agents). Here only a static file is served on a thread."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[..., object], *args: object, **kwargs: object
                 ) -> None:
        super().__init__(get_response, *args, **kwargs)
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest):  # type: ignore[override]
        if self.async_mode:
            return self.__acall__(request)
        return super().__call__(request)

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        found = (self.find_file(request.path_info) if self.autorefresh
                 else self.files.get(request.path_info))
        if found is not None:
            return await sync_to_async(self.serve, thread_sensitive=False)(found, request)
        return await self.get_response(request)  # type: ignore[misc]


# Headers that tell an API client what to do next; everything else of an HTML error goes.
_KEPT_HEADERS = ("Allow", "Retry-After", "WWW-Authenticate")


def _api_error_json(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """An error answered on /api/ in HTML (URL not found, wrong method, a crash turned into
    handler500's page, a CSRF refusal) becomes `{"error": ...}` with the same status, as the
    README promises; the API's own JSON answers pass through untouched."""
    if (response.status_code < 400 or not request.path.startswith("/api/")
            or response.get("Content-Type", "").startswith("application/json")):
        return response
    status = response.status_code
    if status == 404:
        message = f"Nothing here: {request.path} is not an API endpoint."
    elif status == 405:
        message = f"{request.method} is not allowed here; use {response.get('Allow', '')}."
    elif status >= 500:
        # Django has logged the exception with its traceback; the client gets none of it.
        message = "Internal server error; it has been logged."
    else:
        try:
            message = f"{HTTPStatus(status).phrase}."
        except ValueError:
            message = f"Error {status}."
    converted = JsonResponse({"error": message}, status=status)
    for header in _KEPT_HEADERS:
        if header in response:
            converted[header] = response[header]
    return converted


@sync_and_async_middleware
def api_json_errors(get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]):
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            return _api_error_json(request, await get_response(request))  # type: ignore[misc]

        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponse:
        return _api_error_json(request, get_response(request))  # type: ignore[arg-type]

    return sync_middleware


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

