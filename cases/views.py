from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from workers.model import PRIORITY_LABELS, STATUSES, CaseState, SetAttributes

from . import custom_fields, gateway, saved_views
from .access import Access
from .config import config_for
from .custom_fields import Attribute
from .forms import (
    ACTION_FORMS,
    ActionForm,
    AssignForm,
    AttributesForm,
    CaseFilterForm,
    NewCaseForm,
)
from .history import history_for_user
from .ids import is_case_id
from .visibility import CaseFilter, InvalidFilter


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "404.html", status=404)


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "403.html", {"reason": str(exception or "")}, status=403)


async def _get_case_for_user(access: Access, case_id: str) -> CaseState:
    """The live case, or 404 for ids that are malformed, unknown or outside the user's queues."""
    if not is_case_id(case_id):
        raise Http404("No such case.")
    try:
        state = await gateway.get_case(case_id)
    except gateway.CaseNotFound as err:
        raise Http404("No such case.") from err
    if not access.can_see(state.queue):
        raise Http404("No such case.")
    return state


# --- list --------------------------------------------------------------------------------------


@require_GET
@login_required
async def case_list(request: HtmxHttpRequest) -> HttpResponse:
    user = await request.auser()
    if not request.GET:
        # The bare list opens the user's group default view, if a supervisor set one.
        default = await saved_views.default_view_url(user)
        if default:
            return redirect(default)
    full_page = not request.htmx
    config = await config_for(request, views=full_page, usernames=full_page)
    access, queues, attributes = config.access, config.queues, config.attributes
    form = CaseFilterForm(request.GET, queues=queues, attributes=attributes)
    filter_query = saved_views.clean_query(request.GET)
    active_view = request.GET.get("view")
    context: dict[str, Any] = {
        "form": form,
        "counts": {},
        "page": None,
        "priority_labels": PRIORITY_LABELS,
        "refresh_seconds": settings.LIST_REFRESH_SECONDS,
        "filter_query": filter_query,
    }
    # Everything that waits on Temporal runs at once: the page, the status counts, and the
    # saved views' counts; the page costs about as much as its slowest call.
    waits: dict[str, Awaitable[Any]] = {}
    if form.is_valid():
        try:
            query, count_queries = _list_queries(form.case_filter(), access)
        except InvalidFilter as err:
            form.add_error(None, str(err))
        else:
            waits["results"] = asyncio.gather(
                gateway.list_cases(query, settings.CASE_PAGE_SIZE,
                                   request.GET.get("page") or None),
                gateway.count_many(count_queries))
    if full_page:
        waits["views"] = saved_views.view_links(config.views, user, access, queues, attributes)
    done = dict(zip(waits, await asyncio.gather(*waits.values()), strict=True))
    if "results" in done:
        page, counts = done["results"]
        context.update(page=page, counts=counts, first_page=bool(request.GET.get("page")),
                       columns=form.columns)
    if not full_page:
        return render(request, "cases/list.html#results", context)
    context.update(
        views=done["views"],
        active_view=int(active_view) if active_view and active_view.isdigit() else None,
        save_form=saved_views.SaveViewForm(
            groups=config.groups, may_share_globally=access.role == "admin",
            initial={"query": filter_query}),
        my_groups=config.groups,
        is_supervisor=access.is_supervisor,
        bulk_key=uuid.uuid4().hex,
        assignee_options=config.usernames if access.is_supervisor else [access.username],
    )
    return render(request, "cases/list.html", context)


def _list_queries(case_filter: CaseFilter, access: Access) -> tuple[str, dict[str, str]]:
    """The page's List query and one Count query per status (SQL visibility cannot GROUP BY
    a custom attribute). Counts ignore the status filter so every chip shows its number."""
    me, visible = access.username, access.visible_queues
    base = case_filter.without_statuses()
    return (case_filter.query(me, visible),
            {s: base.status_query(s, me, visible) for s in STATUSES})


# --- create ------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
async def case_new(request: HtmxHttpRequest) -> HttpResponse:
    config = await config_for(request)
    access = config.access
    form = NewCaseForm(request.POST or None, queues=config.queues, attributes=config.attributes)
    if request.method == "POST" and form.is_valid():
        case_id = form.cleaned_data["case_id"]
        try:
            await gateway.start_case(case_id, form.new_case(), access.username)
            messages.success(request, f"Opened {case_id}.")
        except gateway.CaseExists:
            # The same form posted twice: the first POST already opened this case.
            pass
        return redirect("cases:detail", case_id=case_id)
    status = 400 if request.method == "POST" else 200
    return render(request, "cases/new.html", {"form": form}, status=status)


# --- detail and actions ------------------------------------------------------------------------


def _editable(attributes: list[Attribute], access: Access) -> list[Attribute]:
    return [a for a in attributes if access.attributes is None or a.name in access.attributes]


def _action_forms(state: CaseState, access: Access,
                  attributes: list[Attribute]) -> dict[str, ActionForm]:
    """Unbound forms for the actions this user may take on the case as it is now."""
    names: list[str] = []
    if state.is_open:
        if not state.assignee:
            names.append("claim")
        names.append("assign")
        if state.assignee:
            names.append("unassign")
        names += ["status", "priority", "due", "add_tag", "resolve"]
    if state.status == "resolved":
        names.append("reopen")
    if state.status != "closed":
        names += ["comment", "close"]
    initial = {"version": state.version, "priority": state.priority, "status": state.status}
    forms: dict[str, ActionForm] = {}
    for name in names:
        form_class = ACTION_FORMS[name]
        target: object = ...
        if name == "unassign":
            target = None
        if access.may(state, form_class.command_class, target):
            forms[name] = form_class(initial=initial, prefix=name)
    editable = _editable(attributes, access)
    if editable and state.status != "closed" and access.may(
            state, SetAttributes, sorted(a.name for a in editable)):
        forms["attributes"] = AttributesForm(
            initial=initial, prefix="attributes", attributes=editable,
            values={k: v.value for k, v in state.attributes.items()})
    return forms


async def _detail_context(
    request: HttpRequest, state: CaseState, *, bound: ActionForm | None = None,
    action: str | None = None, read_only: bool = False, **extra: Any,
) -> dict[str, Any]:
    config = await config_for(request, usernames=True)
    access, attributes = config.access, config.attributes
    forms = {} if read_only else _action_forms(state, access, attributes)
    if bound is not None and action in forms:
        forms[action] = bound
    elif bound is not None and bound.errors:
        # The action no longer applies to the case as it is now: say why at the top.
        extra["refusal"] = " ".join(str(e) for errs in bound.errors.values() for e in errs)
    return {
        "case": state,
        "forms": forms,
        "row": gateway.CaseRow.from_state(state),
        "priority_labels": PRIORITY_LABELS,
        "refresh_seconds": settings.CASE_REFRESH_SECONDS,
        "assignee_options": config.usernames if "assign" in forms else [],
        "can_remove_tags": not read_only and access.may(
            state, ACTION_FORMS["remove_tag"].command_class),
        "read_only": read_only,
        "attribute_rows": custom_fields.attribute_rows(state, attributes),
        **extra,
    }


@require_GET
@login_required
async def case_detail(request: HtmxHttpRequest, case_id: str) -> HttpResponse:
    # Read once, with what rendering the case's forms needs too.
    access = (await config_for(request, usernames=True)).access
    run_id = request.GET.get("run")
    if run_id:
        # One particular run (an archived one, say): only its history can tell.
        return await _ended(request, access, case_id, run_id)
    try:
        state = await _get_case_for_user(access, case_id)
    except gateway.CaseCompleted:
        return await _ended(request, access, case_id)
    except gateway.WorkerUnavailable as err:
        return await _degraded(request, access, case_id, err.message)
    if request.htmx:
        since = request.GET.get("since")
        if since and since == str(state.version):
            # A live refresh with nothing new: htmx leaves the page (and any typing) alone.
            return HttpResponse(status=204)
        return render(request, "cases/detail.html#case", await _detail_context(request, state))
    return render(request, "cases/detail.html", await _detail_context(request, state))


@require_POST
@login_required
async def case_action(request: HtmxHttpRequest, case_id: str, action: str) -> HttpResponse:
    form_class = ACTION_FORMS.get(action)
    if form_class is None or not is_case_id(case_id):
        raise Http404("No such action.")
    # Read once, with what re-rendering the case will need too.
    config = await config_for(request, usernames=True)
    access = config.access
    if form_class is AttributesForm:
        editable = _editable(config.attributes, access)
        form: ActionForm = AttributesForm(request.POST, prefix=action, attributes=editable)
    else:
        form = form_class(request.POST, prefix=action)
    if form.is_valid() and isinstance(form, AssignForm):
        User = get_user_model()
        if not await User.objects.filter(username=form.cleaned_data["assignee"],
                                         is_active=True).aexists():
            form.add_error("assignee", "No such user.")
    if not form.is_valid():
        return await _rerender(request, access, case_id, action, form, status=400)
    command = form.command(access.username)
    command.authority = access.authority
    try:
        state = await gateway.act(case_id, command, form.update_id(action))
    except gateway.CaseNotFound as err:
        raise Http404("No such case.") from err
    except gateway.WorkerUnavailable as err:
        # Say so on the case itself and hand back what the user typed: nothing is lost.
        return await _degraded(request, access, case_id, err.message, unsent=_unsent(form),
                               status=200 if request.htmx else 503)
    except gateway.ActionRefused as err:
        if err.stale:
            # Said once, at the top, above the fresh state; the form keeps the user's input.
            return await _rerender(request, access, case_id, action, form, status=409,
                                   stale=err.message)
        form.add_error(err.field if err.field in form.fields else None, err.message)
        return await _rerender(request, access, case_id, action, form, status=409)
    if not request.htmx:
        messages.success(request, f"{form.label}: done.")
        return redirect("cases:detail", case_id=case_id)
    # The Update returned the new state: render from it, no second read.
    context = await _detail_context(request, state, flash=f"{form.label}: done.", oob_row=True)
    return render(request, "cases/detail.html#case", context)


async def _from_history(access: Access, case_id: str, run_id: str | None = None
                        ) -> tuple[CaseState, dict[str, Any]]:
    """An ended case (or one run by id) as its history ends, with what the read-only page
    says about it."""
    projection = (await history_for_user(access, case_id, run_id)).projection
    state = projection.state
    assert state is not None  # history_for_user answers 404 otherwise
    # A run asked for by id may be one the case continued from, or even the live one.
    live_elsewhere = bool(run_id) and state.status != "closed" and not projection.ended
    ended = projection.ended or ("This is the case as far as this run records it"
                                 if live_elsewhere else "This case has ended")
    return state, {"read_only": True, "ended": ended, "run_id": run_id or "",
                   "live_elsewhere": live_elsewhere}


async def _ended(request: HtmxHttpRequest, access: Access, case_id: str,
                 run_id: str | None = None) -> HttpResponse:
    """An ended case answers no Query and needs no worker: its page is where its history
    ends, read-only."""
    state, about = await _from_history(access, case_id, run_id)
    context = await _detail_context(request, state, **about)
    if request.htmx:
        return render(request, "cases/detail.html#case", context)
    return render(request, "cases/detail.html", context)


async def _degraded(request: HtmxHttpRequest, access: Access, case_id: str, reason: str, *,
                    unsent: list[str] | None = None, status: int = 200) -> HttpResponse:
    """No worker answers for a live case: show it read-only as its event history records
    it (no worker needed), or failing that as Visibility knows it; the page polls until the
    worker is back."""
    state: CaseState | None = None
    try:
        state = (await history_for_user(access, case_id)).projection.state
    except (gateway.GatewayError, Http404):
        pass  # not yet run by any worker (no state in history), or hidden: judged below
    if state is not None:
        row = gateway.CaseRow.from_state(state)
    else:
        row = await gateway.describe_case(case_id)
        if not access.can_see(row.queue):
            raise Http404("No such case.")
    context = {"row": row, "case": state, "reason": reason, "unsent": unsent or [],
               "refresh_seconds": settings.CASE_REFRESH_SECONDS}
    template = "cases/degraded.html#case" if request.htmx else "cases/degraded.html"
    return render(request, template, context, status=status)


def _unsent(form: ActionForm) -> list[str]:
    """What the user typed into a form that could not be applied, to hand back."""
    data = getattr(form, "cleaned_data", {})
    return [str(data[k]) for k in ("body", "resolution", "reason") if data.get(k)]


async def _rerender(
    request: HtmxHttpRequest,
    access: Access,
    case_id: str,
    action: str,
    form: ActionForm,
    status: int,
    stale: str = "",
) -> HttpResponse:
    """Show the case as it is now with the refused form, its input and its error kept."""
    about: dict[str, Any] = {}
    try:
        state = await _get_case_for_user(access, case_id)
    except gateway.CaseCompleted:
        # It ended meanwhile (closed from another tab, say): the page from its history,
        # with what the user typed handed back.
        state, about = await _from_history(access, case_id)
        about["unsent"] = _unsent(form)
    if stale:
        # The user's form was built on an old version; give it the new one so a retry can work.
        data = form.data.copy()
        data[f"{action}-version"] = str(state.version)
        form.data = data
    context = await _detail_context(request, state, action=action, bound=form, stale=stale,
                                    **about)
    if request.htmx:
        # Swapped in place: a 200 so htmx swaps it; the error is in the markup.
        return render(request, "cases/detail.html#case", context)
    return render(request, "cases/detail.html", context, status=status)


@require_GET
async def healthz(request: HttpRequest) -> HttpResponse:
    """For load balancers: 200 when the web tier is up; `?temporal=1` also asks the cluster."""
    if request.GET.get("temporal"):
        try:
            await gateway.ping()
        except gateway.GatewayError as err:
            return HttpResponse(f"temporal unavailable: {err.message}\n", status=503,
                                content_type="text/plain")
    return HttpResponse("ok\n", content_type="text/plain")
