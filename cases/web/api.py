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
from cases.analytics.ended import ExportedCase
from cases.config import case_types, dbconn, queue_policy
from cases.config.custom_fields import FIELD_PREFIX
from cases.config.reading import RequestConfig, load
from cases.files import uploads
from cases.files.store import FileRefused
from cases.models import ApiToken
from cases.temporal import ids
from cases.temporal.ids import case_id_for_key, is_case_id, new_case_id
from cases.web import attachments
from cases.web.forms import NewCaseForm
from cases.web.lookup import EXPORT, HISTORY, case_for, history_or_export, visible
from workers import rules
from workers.model import Attach, Attachment, CaseState

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


def attachment_json(case_id: str, a: Attachment) -> dict[str, Any]:
    return {"id": a.id, "name": a.file.name, "size": a.file.size, "type": a.file.content_type,
            "sha256": a.file.sha256, "by": a.by, "at": a.at.isoformat(), "comment": a.comment,
            "url": reverse("api:attachment", args=[case_id, a.id])}


def case_json(state: CaseState) -> dict[str, Any]:
    data = json.loads(json.dumps(dataclasses.asdict(state), default=_json_value))
    # Files by what a client needs (the storage key is the store's business).
    data["attachments"] = [attachment_json(state.case_id, a) for a in state.attachments]
    return data


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
    files: list[Any] = []
    if request.content_type == "multipart/form-data":
        # With files (issue 23): the case's JSON in the field `case`, the files in `files`.
        body = request.POST.get("case", "").encode()
        files = request.FILES.getlist("files")
        if uploads.too_large(request):
            return _error(413, uploads.too_large(request))
        if len(files) > rules.MAX_FILES_PER_COMMAND:
            return _error(400, "Some fields are invalid.", files=[
                f"At most {rules.MAX_FILES_PER_COMMAND} files at a time."])
    else:
        body = request.body
    if len(body) > MAX_BODY:
        return _error(413, f"The body has at most {MAX_BODY // 1024} KiB.")
    try:
        payload = json.loads(body or b"null")
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
    types, defaults = await dbconn.read(
        lambda: (case_types.types_by_queue(), case_types.defaults_by_queue()))
    # No type named: the queue's default type (issue 25); "" names none.
    data.setdefault("case_type", defaults.get(data["queue"], ""))
    form = NewCaseForm(data={**data, "case_id": case_id}, queues=config.queues,
                       attributes=editable, case_types=types)
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
    try:
        kept = await uploads.keep_all({"files": files})
    except FileRefused as err:
        return _error(err.status, str(err), files=[str(err)])
    created = True
    try:
        new = form.new_case()
        new.files = kept.get("files", [])
        await temporal.start_case(case_id, new, user.get_username(),
                                  await queue_policy.policy_of(new.queue))
    except temporal.CaseExists:
        created = False  # a retry with the same key: the case it opened the first time
        await uploads.give_back(kept)  # which holds the files it was opened with
    except BaseException:
        await uploads.give_back(kept)
        raise
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
    if "case_type" in payload:
        case_type = payload["case_type"]
        if not isinstance(case_type, str):
            problems["case_type"] = ["Must be the name of one of the queue's case types."]
        data["case_type"] = case_type if isinstance(case_type, str) else ""
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
    response["X-Case-Read-From"] = "workflow" if seen.live else seen.source
    return response


@require_GET
@token_required
@_case_id_known
async def case_history(request: HttpRequest, config: RequestConfig,
                       case_id: str) -> JsonResponse:
    """The case's timeline from its event history: audit for other systems. Once Temporal
    no longer has the execution, from the case export (issue 24), which keeps the timeline
    and the version after each entry but no state per entry; `X-Case-Read-From` says which."""
    try:
        found = await history_or_export(config.access, case_id)
    except Http404:
        return _error(404, "No such case.")
    if isinstance(found, ExportedCase):
        runs, entries = found.run_ids, found.entries
        # As the history read says it: "" for a case that ended by its rules.
        ended = "" if found.execution == "completed" else found.ended
        versions = [found.versions.get(e.seq) for e in entries]
    else:
        projection = found.projection
        runs, ended, entries = projection.run_ids, projection.ended, projection.entries
        versions = [e.state.version if e.state is not None else None for e in entries]
    response = JsonResponse({
        "id": case_id,
        "runs": runs,
        "ended": ended,
        "events": [{
            "seq": e.seq, "at": e.at.isoformat(), "actor": e.actor, "kind": e.kind,
            "text": e.text, "detail": e.detail, "run_id": e.run_id, "event_id": e.event_id,
            "version": version,
        } for e, version in zip(entries, versions, strict=True)],
    })
    response["X-Case-Read-From"] = EXPORT if isinstance(found, ExportedCase) else HISTORY
    return response


@csrf_exempt  # token-authenticated, no cookies: CSRF does not apply
@require_POST
@token_required
@_case_id_known
async def attach(request: HttpRequest, config: RequestConfig, case_id: str) -> JsonResponse:
    """Files added to a case (multipart, field `files`): the attach command as the token's
    user. 201 with the attachments it added; 413/415 with nothing kept."""
    if request.content_type != "multipart/form-data":
        return _error(400, "Send the files as multipart/form-data, field 'files'.")
    files = request.FILES.getlist("files")
    if uploads.too_large(request):
        return _error(413, uploads.too_large(request))
    if not files or len(files) > rules.MAX_FILES_PER_COMMAND:
        return _error(400, "Some fields are invalid.", files=[
            f"Send 1 to {rules.MAX_FILES_PER_COMMAND} files."])
    key = request.headers.get("Idempotency-Key") or ""
    if len(key) > 200:
        return _error(400, "Some fields are invalid.",
                      idempotency_key=["Use a string of at most 200 characters."])
    access = config.access
    try:
        kept = await uploads.keep_all({"files": files})
    except FileRefused as err:
        return _error(err.status, str(err), files=[str(err)])
    command = Attach(actor=access.username, files=kept["files"], authority=access.authority)
    update_id = ids.update_id(access.username, case_id, "attach", key) if key else None
    try:
        state = await temporal.act(case_id, command, update_id)
    except temporal.WorkerUnavailable as err:
        return _error(503, err.message)  # may yet be applied: its files stay kept
    except temporal.CaseNotFound:
        await uploads.give_back(kept)
        return _error(404, "No such case.")
    except temporal.CaseBusy as err:
        await uploads.give_back(kept)
        return _error(429, err.message)
    except temporal.ActionRefused as err:
        await uploads.give_back(kept)
        return _error(409, err.message, **({err.field: [err.message]} if err.field else {}))
    try:
        visible(access, state)
    except Http404:
        return _error(404, "No such case.")
    added = state.attachments[-len(kept["files"]):]
    return JsonResponse({"id": case_id, "version": state.version,
                         "attachments": [attachment_json(case_id, a) for a in added]},
                        status=201)


@require_GET
@token_required
async def attachment(request: HttpRequest, config: RequestConfig, case_id: str,
                     attachment_id: str) -> Any:
    """A case's file for API clients, by the same rule and headers as the page's download."""
    if not is_case_id(case_id):
        return _error(404, "No such file.")
    try:
        return await attachments.serve(config.access, case_id, attachment_id)
    except Http404:
        return _error(404, "No such file.")
