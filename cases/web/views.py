from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.middleware import HtmxDetails

from cases import temporal
from cases.config import case_types, custom_fields, dbconn, queue_policy
from cases.config.access import Access
from cases.config.custom_fields import Attribute
from cases.config.reading import config_for, seeing_queue
from cases.files import uploads
from cases.files.store import FileRefused
from cases.live import feed, listing
from cases.notify import inbox
from cases.temporal.ids import is_case_id
from cases.temporal.visibility import InvalidFilter
from cases.web import lookup, saved_views
from cases.web.bulk import BulkForm, macro_choices
from cases.web.forms import (
    ACTION_FORMS,
    ActionForm,
    CaseFilterForm,
    NewCaseForm,
    bool_value,
    check_usernames,
)
from cases.web.htmx import render_for
from cases.web.lookup import Seen, case_for
from cases.web.macros import offered
from workers import rules
from workers.model import (
    PRIORITY_LABELS,
    AddComment,
    CaseState,
    CaseTypeSpec,
    Command,
    Requester,
)


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "404.html", status=404)


def forbidden(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    return render(request, "403.html", {"reason": str(exception or "")}, status=403)


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
    # The status chips' numbers, asked by the full page right after it has shown its rows.
    counts_only = bool(request.htmx) and request.htmx.target == "status-counts"
    # Before anything is read: the page's stream starts from here, so a change made while
    # the page is being put together still reaches it.
    position = feed.position_id()
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
        "feed_position": position,
        "oob_counts": bool(request.htmx),  # a refresh brings the chips' numbers along
    }
    # Everything that waits on Temporal runs at once: the page, the status counts, and the
    # saved views' counts; the page costs about as much as its slowest call.
    waits: dict[str, Awaitable[Any]] = {}
    if form.is_valid():
        try:
            asked = listing.questions(form.case_filter(), access)
        except InvalidFilter as err:
            form.add_error(None, str(err))
        else:
            if counts_only:
                waits["counts"] = listing.results(asked, counts_only=True)
            else:
                # A full page waits for its rows only (issue 18): the Counts behind the
                # status chips follow in a request of their own (#status-counts, on load).
                waits["results"] = listing.results(asked, request.GET.get("page") or None,
                                                   defer_counts=full_page)
    if full_page:
        waits["views"] = saved_views.view_links(config.views, user, access, queues, attributes)
    done = dict(zip(waits, await asyncio.gather(*waits.values()), strict=True))
    if counts_only:
        context.update(counts=done["counts"].counts if "counts" in done else {})
        return render(request, "cases/list.html#counts", context)
    if "results" in done:
        found = done["results"]
        context.update(page=found.page, counts=found.counts,
                       first_page=bool(request.GET.get("page")), columns=form.columns)
    if not full_page:
        # A new filter swaps #live (results and the push stream for that filter); a refresh
        # swaps #results only.
        partial = "live" if request.htmx.target == "live" else "results"
        return render_for(request, "cases/list.html", partial, context)
    context.update(
        views=done["views"],
        active_view=int(active_view) if active_view and active_view.isdigit() else None,
        save_form=saved_views.SaveViewForm(
            groups=config.groups, may_share_globally=access.role == "admin",
            initial={"query": filter_query}),
        my_groups=config.groups,
        is_supervisor=access.is_supervisor,
        bulk_key=uuid.uuid4().hex,
        # ids apart from the filters' own
        bulk_form=BulkForm(auto_id="bulk_%s", macros=await macro_choices(access)),
        assignee_options=config.usernames if access.is_supervisor else [access.username],
    )
    return render(request, "cases/list.html", context)


# --- create ------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@login_required
async def case_new(request: HtmxHttpRequest) -> HttpResponse:
    config = await config_for(request)
    access = config.access
    types, defaults = await dbconn.read(
        lambda: (case_types.types_by_queue(), case_types.defaults_by_queue()))
    # The type picker (issue 25) asks for the form again with the queue and type chosen
    # (HTMX): a queue's default type until another is picked.
    initial: dict[str, Any] = {k: v for k, v in request.GET.items()
                               if k != "csrfmiddlewaretoken"}
    if initial.get("queue") and initial.get("case_type") not in types.get(initial["queue"], {}):
        initial["case_type"] = defaults.get(initial["queue"], "")
    # Only the attributes this user may set on a case are fields here (as on the case page).
    form = NewCaseForm(request.POST or None, queues=config.queues, initial=initial,
                       attributes=access.editable(config.attributes), case_types=types,
                       only_type_fields=True)
    if request.method == "POST" and form.is_valid():
        case_id = form.cleaned_data["case_id"]
        try:
            new = form.new_case()
            await temporal.start_case(case_id, new, access.username,
                                      await queue_policy.policy_of(new.queue))
            messages.success(request, f"Opened {case_id}.")
        except temporal.CaseExists:
            # The same form posted twice: the first POST already opened this case.
            pass
        return redirect("cases:detail", case_id=case_id)
    status = 400 if request.method == "POST" else 200
    return render(request, "cases/new.html", {"form": form}, status=status)


# --- detail and actions ------------------------------------------------------------------------


def _action_forms(state: CaseState, access: Access, attributes: list[Attribute],
                  internal_first: frozenset[str] = frozenset(),
                  types: dict[str, CaseTypeSpec] | None = None) -> dict[str, ActionForm]:
    """Unbound forms for the actions this user may take on the case as it is now. The
    workflow's rules decide which (rules.offers), so the page offers exactly what the case
    would accept, whatever is added to the registry."""
    now, sla = timezone.now(), queue_policy.sla_policy()
    forms: dict[str, ActionForm] = {}
    for name, form_class in ACTION_FORMS.items():
        if not form_class.spec.in_actions:
            continue
        if not access.offers(state, form_class.probe(access.username), now, sla):
            continue
        initial = form_class.initial_from(state)
        if name == "comment":
            # The mode the comment box starts in: the queue's (Queue.reply_default).
            initial["internal"] = bool_value(state.queue in internal_first)
        if form_class.takes_attributes:
            editable = access.editable(attributes)
            if editable:
                forms[name] = form_class(
                    initial=initial, prefix=name, attributes=editable,
                    values={k: v.value for k, v in state.attributes.items()})
        elif form_class.takes_case_type:
            if types:  # the queue's types to choose from (issue 25)
                forms[name] = form_class(initial=initial, prefix=name, case_types=types)
        else:
            forms[name] = form_class(initial=initial, prefix=name)
    return forms


async def _types_for(access: Access, queue: str) -> dict[str, CaseTypeSpec]:
    """The queue's case types, for those who may change a case's type (supervisors)."""
    if not access.is_supervisor:
        return {}
    return await dbconn.read(lambda: case_types.current_types(queue))


async def _detail_context(
    request: HttpRequest, seen: Seen, *, bound: ActionForm | None = None,
    action: str | None = None, **extra: Any,
) -> dict[str, Any]:
    config = await config_for(request, usernames=True)
    access, attributes = config.access, config.attributes
    state = seen.state if seen.state is not None else _stand_in(seen.row)
    read_only = not seen.live
    forms = {} if read_only else _action_forms(state, access, attributes,
                                                config.internal_first,
                                                await _types_for(access, state.queue))
    if bound is not None and action in forms:
        forms[action] = bound
    elif bound is not None and bound.errors:
        # The action no longer applies to the case as it is now: say why at the top.
        extra["refusal"] = " ".join(str(e) for errs in bound.errors.values() for e in errs)
    if "comment" in forms:
        queue, want_macros = state.queue, "macros" not in extra

        def read() -> tuple[list[str], list[Any] | None]:
            # Mentions autocomplete from the people who can see the case (the access rule);
            # the macros are this case's queue's, every queue's and the person's own
            # (issue 25). One trip to the request's thread for both.
            return (seeing_queue(queue),
                    list(offered(access.username, queue)) if want_macros else None)

        mentionable, macros = await dbconn.read(read)
        extra.setdefault("mentionable", mentionable)
        if want_macros:
            extra["macros"] = macros
    return {
        "case": state,
        "forms": forms,
        "attachment_max": settings.ATTACHMENT_MAX_BYTES,
        # The upload form's idempotency key (a page's script sends a new one per upload).
        "upload_key": uuid.uuid4().hex,
        "macro_key": uuid.uuid4().hex,
        "row": seen.row,
        "priority_labels": PRIORITY_LABELS,
        "refresh_seconds": settings.CASE_REFRESH_SECONDS,
        "assignee_options": config.usernames if any(
            f.username_inputs() for f in forms.values()) else [],
        "can_remove_tags": not read_only and access.offers(
            state, ACTION_FORMS["remove_tag"].probe(access.username), timezone.now(),
            queue_policy.sla_policy()),
        "read_only": read_only,
        "ended": seen.ended,
        "degraded": seen.degraded,
        "from_row": seen.state is None,
        "run_id": seen.run_id,
        "live_elsewhere": seen.live_elsewhere,
        "source": seen.source,
        "exported_at": seen.exported_at,
        "attribute_rows": custom_fields.attribute_rows(state, attributes),
        **extra,
    }


def _stand_in(row: temporal.CaseRow) -> CaseState:
    """A live case no worker has run yet has no state, only its Visibility row: enough for
    the header, so the page is the same page with less in it."""
    started = row.started_at or timezone.now()
    return CaseState(
        case_id=row.case_id, title=row.title, description="",
        requester=Requester(name=row.requester, email=""), queue=row.queue,
        priority=row.priority or 3, status=row.status, created_at=started, created_by="",
        updated_at=row.updated_at or started, updated_by="", assignee=row.assignee,
        tags=list(row.tags), due_at=row.due_at, sla_breached=row.sla_breached, at_risk=row.at_risk,
        version=row.version or 1)


async def _render_case(request: HtmxHttpRequest, seen: Seen, *, status: int = 200,
                       **extra: Any) -> HttpResponse:
    """The case page, or with HTMX just its #case partial: decided here, once, for every
    way a case is shown (live, ended, degraded, after an action or a refusal). HTMX
    responses are 200 so htmx swaps them; the outcome is in the markup."""
    context = await _detail_context(request, seen, **extra)
    return render_for(request, "cases/detail.html", "case", context, status=status)


async def shared_case_html(request: HttpRequest, seen: Seen) -> str:
    """The #case partial as every page of one kind sees it, pushed to all of them
    (cases/live/case_pages.py): the same render as `_render_case`'s, less what is the
    person's own. No CSRF token (app.js gives the swapped forms the page's own) and no
    personal macros (the page keeps its own macro form: `shared` leaves its place)."""
    context = await _detail_context(request, seen, macros=None, shared=True)
    context["csrf_token"] = "NOTPROVIDED"  # {% csrf_token %} then writes nothing
    return render_to_string("cases/detail.html#case", context, request=request).strip()


@require_GET
@login_required
async def case_detail(request: HtmxHttpRequest, case_id: str) -> HttpResponse:
    # Read once, with what rendering the case's forms needs too.
    position = feed.position_id()  # before the case is read (see case_list)
    access = (await config_for(request, usernames=True)).access
    since = request.GET.get("since")
    seen = await case_for(access, case_id, run_id=request.GET.get("run"),
                          refresh=bool(request.htmx and since))
    if request.htmx and seen.live and since and since == str(seen.state.version):
        # A live refresh with nothing new: htmx leaves the page (and any typing) alone.
        return HttpResponse(status=204)
    if not request.htmx:
        # Opening the case is reading what one was told of it (issue 23).
        who = inbox.reader(request.user.pk, access.visible_queues)
        await dbconn.read(lambda: inbox.mark_read(who, case_id=seen.case_id))
    return await _render_case(request, seen, feed_position=position)


@require_POST
@login_required
async def case_action(request: HtmxHttpRequest, case_id: str, action: str) -> HttpResponse:
    form_class = ACTION_FORMS.get(action)
    if form_class is None or not is_case_id(case_id):
        raise Http404("No such action.")
    # Read once, with what re-rendering the case will need too.
    config = await config_for(request, usernames=True)
    access = config.access
    extra: dict[str, Any] = {"attributes": access.editable(config.attributes)} \
        if form_class.takes_attributes else {}
    if form_class.takes_case_type:
        # The type as the case's queue has it now (SetCaseType); the rules refuse agents.
        try:
            queue = (await temporal.describe_case(case_id)).queue
        except temporal.GatewayError:
            queue = ""
        extra["case_types"] = await _types_for(access, queue) if queue else {}
    form = form_class(request.POST, request.FILES, prefix=action, **extra)
    stopped = uploads.too_large(request)
    if stopped and form_class.file_inputs():
        # Stopped as it arrived (the limit): only that is said; nothing was kept.
        form.is_valid()
        form.errors.clear()
        form.add_error(form_class.file_inputs()[0], stopped)
        return await _rerender(request, access, case_id, action, form, status=413)
    if form.is_valid():
        await check_usernames(form, form_class.username_inputs())
    if not form.is_valid():
        return await _rerender(request, access, case_id, action, form, status=400)
    # Kept before the command is sent (the workflow records references, never bytes); a
    # command that is not applied (refused, a case this user may not see) gives them back.
    try:
        kept = await uploads.keep_all(form.uploads())
    except FileRefused as err:
        # Over the limit (413) or off the allow-list (415): nothing stored, said by the field.
        form.add_error(form_class.file_inputs()[0], str(err))
        return await _rerender(request, access, case_id, action, form, status=err.status)
    command = form.command(access.username, kept)
    command.authority = access.authority
    try:
        state = await temporal.act(case_id, command,
                                  form.update_id(access.username, case_id, action))
    except temporal.CaseNotFound as err:
        await uploads.give_back(kept)
        raise Http404("No such case.") from err
    except temporal.WorkerUnavailable as err:
        # Say so on the case itself and hand back what the user typed: nothing is lost.
        # Its files stay kept: the Update may yet be applied (docs/decisions.md).
        seen = await lookup.degraded(access, case_id, err.message)
        return await _render_case(request, seen, unsent=form.unsent(), status=503)
    except temporal.CaseBusy as err:
        # Every turn on the case was taken for longer than an action may wait: nothing was
        # applied; the form comes back with what was typed, and the reason above it.
        await uploads.give_back(kept)
        form.add_error(None, err.message)
        return await _rerender(request, access, case_id, action, form, status=429,
                               busy=err.message)
    except temporal.ActionRefused as err:
        await uploads.give_back(kept)
        if err.stale:
            # Said once, at the top, above the fresh state; the form keeps the user's input.
            return await _rerender(request, access, case_id, action, form, status=409,
                                   stale=err.message)
        form.add_error(err.field if err.field in form.fields else None, err.message)
        return await _rerender(request, access, case_id, action, form, status=409)
    # The Update's result is a state like any other: the access rule applies to it too.
    lookup.visible(access, state)
    lookup.STATES.remember(state)  # the other open pages' refreshes may take it
    if not request.htmx:
        messages.success(request, f"{form.label}: done.")
        return redirect("cases:detail", case_id=case_id)
    unreached = await _unreached_mentions(command, state)
    if unreached:
        note = _unreached_note(unreached)
        if not request.htmx:
            messages.warning(request, note)
    # The Update returned the new state: render from it, no second read.
    seen = Seen(case_id, state, temporal.CaseRow.from_state(state))
    return await _render_case(request, seen, flash=f"{form.label}: done.", oob_row=True,
                              unreached=_unreached_note(unreached) if unreached else "")


async def _unreached_mentions(command: Command, state: CaseState) -> list[str]:
    """Who a comment's @mentions will not tell: they cannot see the case (the workflow's
    delivery drops them by the same rule), or there is no such active user."""
    if not isinstance(command, AddComment):
        return []
    named = [n for n in rules.mentions(command.body) if n != command.actor]
    if not named:
        return []
    queue = state.queue
    seeing = set(await dbconn.read(lambda: seeing_queue(queue)))
    return [n for n in named if n not in seeing]


def _unreached_note(names: list[str]) -> str:
    who = ", ".join(f"@{n}" for n in names)
    return (f"Applied, but {who} cannot see this case and {'was' if len(names) == 1 else 'were'}"
            " not notified.")


async def _rerender(
    request: HtmxHttpRequest,
    access: Access,
    case_id: str,
    action: str,
    form: ActionForm,
    status: int,
    stale: str = "",
    busy: str = "",
) -> HttpResponse:
    """Show the case as it is now with the refused form, its input and its error kept."""
    extra: dict[str, Any] = {}
    try:
        seen = await case_for(access, case_id, live_only=True)
    except temporal.WorkerUnavailable as err:
        # Refused, and then the case could not be re-read in time (a busy worker, say):
        # say both, from its history, and hand back the text; never blame a live worker.
        what = busy or stale or " ".join(
            str(e) for errs in form.errors.values() for e in errs) or "Not applied."
        seen = await lookup.degraded(access, case_id, err.message)
        return await _render_case(request, seen, status=status, unsent=form.unsent(),
                                  not_applied=f"Not applied: {what}")
    if not seen.live:
        # It ended meanwhile (closed from another tab, say): the page from its history,
        # with what the user typed handed back.
        extra["unsent"] = form.unsent()
    if stale and seen.live:
        # The user's form was built on an old version; give it the new one so a retry can work.
        data = form.data.copy()
        data[f"{action}-version"] = str(seen.state.version)
        form.data = data
    return await _render_case(request, seen, status=status, action=action, bound=form,
                              stale=stale, **extra)


@require_GET
async def healthz(request: HttpRequest) -> HttpResponse:
    """For load balancers: 200 when the web tier is up; `?temporal=1` also asks the cluster."""
    if request.GET.get("temporal"):
        try:
            await temporal.ping()
        except temporal.GatewayError as err:
            return HttpResponse(f"temporal unavailable: {err.message}\n", status=503,
                                content_type="text/plain")
    return HttpResponse("ok\n", content_type="text/plain")
