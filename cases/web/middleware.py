from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.auth.models import AnonymousUser
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware import common
from django.shortcuts import render
from django.utils.decorators import sync_and_async_middleware
from django.utils.deprecation import MiddlewareMixin
from whitenoise.middleware import WhiteNoiseMiddleware

from cases import temporal
from cases.config import reading as config
from cases.temporal import timing

logger = logging.getLogger(__name__)


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


# --- Django's own middleware, on the event loop ------------------------------------------------


class _OnTheLoop:
    """Django's MiddlewareMixin sends every process_request and process_response of its
    middleware to a thread (sync_to_async): a dozen hops per request, and under load each
    one waits for the GIL while the loop serves the push streams (measured at 500 agents:
    the hops were most of a case refresh's 260 ms). These hooks touch only the request and
    the response, so they run on the loop; a hook that would reach the database says so in
    `_needs_thread` and keeps its hop. Any database access on the loop would raise
    SynchronousOnlyOperation, never pass silently."""

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)  # type: ignore[attr-defined]
        if hasattr(self, "process_response"):
            if self._needs_thread(request):
                response = await sync_to_async(self.process_response)(request, response)
            else:
                response = self.process_response(request, response)
        return response

    def _needs_thread(self, request: HttpRequest) -> bool:
        return False


class CommonMiddleware(_OnTheLoop, common.CommonMiddleware):
    pass


class AuthenticationMiddleware(_OnTheLoop, auth.AuthenticationMiddleware):
    pass  # request.user stays lazy; resolve_user loads it with one hop


class SessionMiddleware(_OnTheLoop, sessions.SessionMiddleware):
    def _needs_thread(self, request: HttpRequest) -> bool:
        session = getattr(request, "session", None)
        return session is not None and (session.modified or settings.SESSION_SAVE_EVERY_REQUEST)


class MessageMiddleware(_OnTheLoop, messages.MessageMiddleware):
    def _needs_thread(self, request: HttpRequest) -> bool:
        # Storing messages may fall back to the session, which may need loading.
        storage = getattr(request, "_messages", None)
        return storage is not None and (storage.used or storage.added_new)


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
def server_timing(get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]):
    """Where an answer's time went (the browser's devtools show it; bench/agents.py reports
    it beside the round trip): `app`, the request in Django; `temporal`, its calls to
    Temporal (cases/temporal/timing.py). What the client waited beyond `app` is the queue
    in front of Django: the event loop, the connection. Not on event streams: their
    headers leave before any of it."""

    def header(response: HttpResponse, start: float, spent: timing.Spent) -> HttpResponse:
        if not getattr(response, "streaming", False):
            app = (time.perf_counter() - start) * 1000
            response["Server-Timing"] = (f"app;dur={app:.1f}, temporal;dur={spent.ms:.1f};"
                                         f'desc="{spent.calls} calls"')
        return response

    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            start, spent = time.perf_counter(), timing.measure()
            return header(await get_response(request), start, spent)  # type: ignore[misc]

        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponse:
        start, spent = time.perf_counter(), timing.measure()
        return header(get_response(request), start, spent)  # type: ignore[arg-type]

    return sync_middleware


@sync_and_async_middleware
def api_json_errors(get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]):
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            return _api_error_json(request, await get_response(request))  # type: ignore[misc]

        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponse:
        return _api_error_json(request, get_response(request))  # type: ignore[arg-type]

    return sync_middleware


def _unavailable(request: HttpRequest, template: str, error: str,
                 context: dict[str, str] | None = None) -> HttpResponse:
    """A 503 that says what is down: JSON for the API; for htmx the message in place of the
    page's content (base.html's htmx-config swaps 503s), whatever it meant to update."""
    if request.path.startswith("/api/"):
        response: HttpResponse = JsonResponse({"error": error}, status=503)
    else:
        # Read from the headers: the database page is made before django_htmx's middleware.
        htmx = request.headers.get("HX-Request") == "true"
        context = {**(context or {}), "retry_url": (
            request.headers.get("HX-Current-URL") if htmx else None) or request.get_full_path()}
        if htmx:
            response = render(request, f"{template}#message", context, status=503)
            response["HX-Retarget"] = "main"
            response["HX-Reswap"] = "innerHTML"
        else:
            response = render(request, template, context, status=503)
    response["Retry-After"] = "5"
    return response


def _database_unavailable(request: HttpRequest, err: Exception) -> HttpResponse:
    # Unreachable, or its pool busy beyond DB_POOL_TIMEOUT: said as Temporal's outage is.
    logger.warning("database unavailable for %s: %s", request.path, err)
    request.user = AnonymousUser()  # the page must not ask the database who is reading it
    return _unavailable(request, "db_unavailable.html",
                        "The database is not answering; try again shortly.")


@sync_and_async_middleware
def resolve_user(get_response: Callable[[HttpRequest], HttpResponse | Awaitable[HttpResponse]]):
    """Load the user before an async view runs.

    Templates read `request.user` synchronously; in an async view that lazy lookup would hit
    the database from the event loop and raise SynchronousOnlyOperation.
    """
    if iscoroutinefunction(get_response):

        async def middleware(request: HttpRequest) -> HttpResponse:
            try:
                await config.aresolve(request)
            except OperationalError as err:
                return _database_unavailable(request, err)
            return await get_response(request)  # type: ignore[misc]

        return middleware

    def sync_middleware(request: HttpRequest) -> HttpResponse:
        # Sync chain (WSGI, the test client): the same resolution, on the request thread,
        # before an async view runs on another thread.
        try:
            config.resolve(request)
        except OperationalError as err:
            return _database_unavailable(request, err)
        return get_response(request)  # type: ignore[return-value]

    return sync_middleware


class Outages(MiddlewareMixin):
    """Any page whose Temporal call or database read failed says so in words, with a 503,
    never a traceback."""

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, OperationalError):
            # A view's own read (an API token, a saved view) found the database gone.
            return _database_unavailable(request, exception)
        if isinstance(exception, temporal.TemporalUnavailable | temporal.WorkerUnavailable):
            return _unavailable(request, "503.html", exception.message,
                                {"reason": exception.message})
        return None

