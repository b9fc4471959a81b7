"""The intake API: other systems open cases and read them back, as JSON with a bearer token."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import wraps
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.http import Http404, HttpRequest, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from cases import temporal
from cases.config import dbconn, queue_policy
from cases.config.custom_fields import FIELD_PREFIX
from cases.config.reading import RequestConfig, load
from cases.models import ApiToken
from cases.temporal.ids import case_id_for_key, is_case_id, new_case_id
from cases.web.forms import NewCaseForm
from cases.web.lookup import case_for, history_for
from workers.model import CaseState

MAX_BODY = 64 * 1024


def _error(status: int, message: str, **fields: list[str]) -> JsonResponse:
    body: dict[str, Any] = {"error": message}
    if fields:
        body["fields"] = fields
    return JsonResponse(body, status=status)


async def _authenticate(request: HttpRequest) -> AbstractBaseUser | None:
    header = request.headers.get("Authorization", "")
    scheme, _, key = header.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        return None

    def find() -> AbstractBaseUser | None:
        token = ApiToken.objects.select_related("user").filter(
            key_hash=ApiToken.hash(key.strip()), user__is_active=True).first()
        if token is None:
            return None
        ApiToken.objects.filter(pk=token.pk).update(last_used=timezone.now())
        return token.user

    return await dbconn.read(find)


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def case_json(state: CaseState) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(state), default=_json_value))


def _unauthorized() -> JsonResponse:
    response = _error(401, "Send a valid API token: 'Authorization: Bearer <token>'.")
    response["WWW-Authenticate"] = "Bearer"
    return response


TokenView = Callable[..., Awaitable[JsonResponse]]


def token_required(view: TokenView) -> Callable[..., Awaitable[JsonResponse]]:
    """The API's one door (as healthchecks' `authorize`): a caller without a valid bearer
    token gets the 401 and the view never runs; for a caller with one, `request.user` is the
    token's user and the view is handed their configuration, `view(request, config, *args)`."""

    @wraps(view)
    async def checked(request: HttpRequest, *args: Any, **kwargs: Any) -> JsonResponse:
        user = await _authenticate(request)
        if user is None:
            return _unauthorized()
        request.user = user
        config = await dbconn.read(lambda: load(user))
        return await view(request, config, *args, **kwargs)

    return checked


def _case_id_known(view: TokenView) -> TokenView:
    """A case id that cannot be one is a 404 before anything is asked of Temporal."""

    @wraps(view)
    async def checked(request: HttpRequest, config: RequestConfig, case_id: str) -> JsonResponse:
        if not is_case_id(case_id):
            return _error(404, "No such case.")
        return await view(request, config, case_id)

    return checked


@csrf_exempt  # token-authenticated, no cookies: CSRF does not apply
@require_POST
@token_required
async def create_case(request: HttpRequest, config: RequestConfig) -> JsonResponse:
    user = request.user
    if len(request.body) > MAX_BODY:
        return _error(413, f"The body has at most {MAX_BODY // 1024} KiB.")
    try:
        payload = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError):
        return _error(400, "The body must be JSON.")
    except RecursionError:
        # 64 KiB of "[[[[" parses past Python's recursion limit.
        return _error(400, "The body must be JSON that is not this deeply nested.")
    if not isinstance(payload, dict):
        return _error(400, "The body must be a JSON object.")
    data, problems = _form_data(payload)
    if problems:
        return _error(400, "Some fields are invalid.", **problems)
    key = request.headers.get("Idempotency-Key") or payload.get("idempotency_key") or ""
    if not isinstance(key, str) or len(key) > 200:
        return _error(400, "Some fields are invalid.",
                      idempotency_key=["Use a string of at most 200 characters."])
    case_id = case_id_for_key(str(user.pk), key) if key else new_case_id()
    editable = config.access.editable(config.attributes)
    form = NewCaseForm(data={**data, "case_id": case_id}, queues=config.queues,
                       attributes=editable)
    known = {a.name for a in config.attributes}
    given = [k.removeprefix(FIELD_PREFIX) for k in data if k.startswith(FIELD_PREFIX)]
    unknown = sorted(n for n in given if n not in known)
    if unknown:
        return _error(400, "Some fields are invalid.",
                      attributes=[f"Not a registered attribute: {', '.join(unknown)}."])
    # Opening a case follows the case page's rule: agents set only agent-editable ones.
    withheld = sorted(set(given) - {a.name for a in editable})
    if withheld:
        return _error(403, "Some fields are not yours to set.", attributes=[
            f"Only supervisors can set: {', '.join(withheld)}."])
    if not form.is_valid():
        errors = {f.replace(FIELD_PREFIX, "attributes.", 1): [str(e) for e in errs]
                  for f, errs in form.errors.items()}
        return _error(400, "Some fields are invalid.", **errors)
    created = True
    try:
        new = form.new_case()
        await temporal.start_case(case_id, new, user.get_username(),
                                  await queue_policy.policy_of(new.queue))
    except temporal.CaseExists:
        created = False  # a retry with the same key: the case it opened the first time
    return JsonResponse(
        {"id": case_id, "created": created, "url": reverse("api:case", args=[case_id])},
        status=201 if created else 200,
    )


def _form_data(payload: dict[str, Any]) -> tuple[dict[str, str], dict[str, list[str]]]:
    """JSON → the new-case form's fields, so the API validates exactly like the form."""
    problems: dict[str, list[str]] = {}
    data: dict[str, str] = {}
    for name in ("title", "queue", "description"):
        value = payload.get(name, "")
        if not isinstance(value, str):
            problems[name] = ["Must be a string."]
        data[name] = value if isinstance(value, str) else ""
    priority = payload.get("priority", 3)
    if isinstance(priority, bool) or not isinstance(priority, int):
        problems["priority"] = ["Must be an integer from 1 (urgent) to 4 (low)."]
    data["priority"] = str(priority)
    requester = payload.get("requester", {})
    if not isinstance(requester, dict):
        problems["requester"] = ["Must be an object with name and email."]
        requester = {}
    for part in ("name", "email"):
        value = requester.get(part, "")
        if not isinstance(value, str):
            problems[f"requester_{part}"] = ["Must be a string."]
        data[f"requester_{part}"] = value if isinstance(value, str) else ""
    tags = payload.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        problems["tags"] = ["Must be a list of strings."]
        tags = []
    if any("," in t for t in tags):
        problems["tags"] = ["A tag cannot contain a comma."]
    data["tags"] = ",".join(tags)
    attributes = payload.get("attributes", {})
    if not isinstance(attributes, dict):
        problems["attributes"] = ["Must be an object of attribute name to value."]
        attributes = {}
    for name, value in attributes.items():
        # The form validates by each registered attribute's type; unknown names are refused.
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif isinstance(value, list):
            value = ",".join(str(v) for v in value)
        data[f"{FIELD_PREFIX}{name}"] = "" if value is None else str(value)
    return data, problems


@require_GET
@token_required
@_case_id_known
async def get_case(request: HttpRequest, config: RequestConfig, case_id: str) -> JsonResponse:
    try:
        seen = await case_for(config.access, case_id)
    except Http404:
        return _error(404, "No such case.")
    if seen.state is None:
        # Live, but no worker has run it yet: there is no state to give.
        return _error(503, seen.degraded)
    response = JsonResponse(case_json(seen.state))
    # Ended or no worker answering: the state its history ends with, said in a header so
    # the body stays the case itself.
    response["X-Case-Read-From"] = "workflow" if seen.live else "history"
    return response


@require_GET
@token_required
@_case_id_known
async def case_history(request: HttpRequest, config: RequestConfig,
                       case_id: str) -> JsonResponse:
    """The case's timeline from its event history: audit for other systems."""
    try:
        projection = (await history_for(config.access, case_id)).projection
    except Http404:
        return _error(404, "No such case.")
    return JsonResponse({
        "id": case_id,
        "runs": projection.run_ids,
        "ended": projection.ended,
        "events": [{
            "seq": e.seq, "at": e.at.isoformat(), "actor": e.actor, "kind": e.kind,
            "text": e.text, "detail": e.detail, "run_id": e.run_id, "event_id": e.event_id,
            "version": e.state.version if e.state is not None else None,
        } for e in projection.entries],
    })
