from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from workers.model import PRIORITY_LABELS, CaseState

from . import gateway
from .forms import ACTION_FORMS, ActionForm, NewCaseForm, StatusFilterForm
from .ids import is_case_id
from .visibility import CaseFilter


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "404.html", status=404)


def _actor(request: HttpRequest) -> str:
    return request.user.get_username()


async def _get_case_for_user(request: HttpRequest, case_id: str) -> CaseState:
    """The live case, or 404 for ids that are malformed or unknown."""
    if not is_case_id(case_id):
        raise Http404("No such case.")
    try:
        return await gateway.get_case(case_id)
    except gateway.CaseNotFound as err:
        raise Http404("No such case.") from err


# --- list --------------------------------------------------------------------------------------


@require_GET
@login_required
async def case_list(request: HtmxHttpRequest) -> HttpResponse:
    form = StatusFilterForm(request.GET)
    statuses = form.cleaned_data["status"] if form.is_valid() else []
    query = CaseFilter(statuses=statuses).query()
    page = await gateway.list_cases(query, settings.CASE_PAGE_SIZE, request.GET.get("page"))
    context = {"form": form, "page": page, "statuses": statuses, "query": query,
               "priority_labels": PRIORITY_LABELS}
    template = "cases/list.html#results" if request.htmx else "cases/list.html"
    return render(request, template, context)


# --- create ------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
async def case_new(request: HtmxHttpRequest) -> HttpResponse:
    form = NewCaseForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        case_id = form.cleaned_data["case_id"]
        try:
            await gateway.start_case(case_id, form.new_case(), _actor(request))
            messages.success(request, f"Opened {case_id}.")
        except gateway.CaseExists:
            # The same form posted twice: the first POST already opened this case.
            pass
        return redirect("cases:detail", case_id=case_id)
    status = 400 if request.method == "POST" else 200
    return render(request, "cases/new.html", {"form": form}, status=status)


# --- detail and actions ------------------------------------------------------------------------


def _action_forms(state: CaseState) -> dict[str, ActionForm]:
    """Unbound forms for the actions that make sense in the case's current state."""
    names: list[str] = []
    if state.status in ("new", "in_progress", "waiting"):
        if not state.assignee:
            names.append("claim")
        names += ["assign"]
        if state.assignee:
            names.append("unassign")
        names += ["status", "priority", "due", "add_tag", "resolve"]
    if state.status == "resolved":
        names.append("reopen")
    if state.status != "closed":
        names += ["comment", "close"]
    initial = {"version": state.version, "priority": state.priority, "status": state.status}
    return {name: ACTION_FORMS[name](initial=initial, prefix=name) for name in names}


def _detail_context(state: CaseState, **extra: Any) -> dict[str, Any]:
    forms = _action_forms(state)
    bound: ActionForm | None = extra.pop("bound", None)
    action: str | None = extra.get("action")
    if bound is not None and action in forms:
        forms[action] = bound
    elif bound is not None:
        # The action no longer applies to the case as it is now: say why at the top.
        extra["refusal"] = " ".join(str(e) for errs in bound.errors.values() for e in errs)
    return {
        "case": state,
        "forms": forms,
        "priority_labels": PRIORITY_LABELS,
        **extra,
    }


@require_GET
@login_required
async def case_detail(request: HtmxHttpRequest, case_id: str) -> HttpResponse:
    try:
        state = await _get_case_for_user(request, case_id)
    except gateway.WorkerUnavailable as err:
        row = await gateway.describe_case(case_id)
        return render(request, "cases/degraded.html", {"row": row, "reason": err.message})
    template = "cases/detail.html#case" if request.htmx else "cases/detail.html"
    return render(request, template, _detail_context(state))


@require_POST
@login_required
async def case_action(request: HtmxHttpRequest, case_id: str, action: str) -> HttpResponse:
    form_class = ACTION_FORMS.get(action)
    if form_class is None or not is_case_id(case_id):
        raise Http404("No such action.")
    form = form_class(request.POST, prefix=action)
    if not form.is_valid():
        return await _rerender(request, case_id, action, form, status=400)
    try:
        state = await gateway.act(case_id, form.command(_actor(request)), form.update_id(action))
    except gateway.CaseNotFound as err:
        raise Http404("No such case.") from err
    except gateway.ActionRefused as err:
        form.add_error(err.field if err.field in form.fields else None, err.message)
        return await _rerender(request, case_id, action, form, status=409, stale=err.stale)
    if not request.htmx:
        messages.success(request, f"{form.label}: done.")
        return redirect("cases:detail", case_id=case_id)
    # The Update returned the new state: render from it, no second read.
    context = _detail_context(state, flash=f"{form.label}: done.")
    return render(request, "cases/detail.html#case", context)


async def _rerender(
    request: HtmxHttpRequest,
    case_id: str,
    action: str,
    form: ActionForm,
    status: int,
    stale: bool = False,
) -> HttpResponse:
    """Show the case as it is now with the refused form, its input and its error kept."""
    state = await _get_case_for_user(request, case_id)
    if stale:
        # The user's form was built on an old version; give it the new one so a retry can work.
        data = form.data.copy()
        data[f"{action}-version"] = str(state.version)
        form.data = data
    context = _detail_context(state, action=action, bound=form, stale=stale)
    if request.htmx:
        # Swapped in place: a 200 so htmx swaps it; the error is in the markup.
        return render(request, "cases/detail.html#case", context)
    return render(request, "cases/detail.html", context, status=status)


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok", content_type="text/plain")

