"""Macros on the case page (issue 25): the picker's preview, applying one as one Update,
and "My macros", a person's own (like saved views). The rules decide what applies."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cases import macros, temporal
from cases.config import dbconn
from cases.config.reading import config_for
from cases.models import CaseAttribute, Macro
from cases.temporal import ids
from cases.web import lookup
from cases.web.forms import ACTION_FORMS
from cases.web.lookup import Seen, case_for
from workers.model import CaseState


def offered(username: str, queue: str) -> QuerySet[Macro]:
    """The macros offered on a case of `queue` to this person: the queue's, every queue's,
    and their own (for that queue or every queue)."""
    return (Macro.objects.filter(Q(queue__isnull=True) | Q(queue__slug=queue))
            .filter(Q(owner__isnull=True) | Q(owner__username=username))
            .select_related("queue").order_by("name"))


def attribute_types() -> dict[str, str]:
    return dict(CaseAttribute.objects.filter(state=CaseAttribute.REGISTERED)
                .values_list("name", "type"))


async def _macro_for(username: str, queue: str, pk: Any) -> tuple[Macro, dict[str, str]]:
    try:
        pk = int(pk)
    except (TypeError, ValueError) as err:
        raise Http404("No such macro.") from err

    def read() -> tuple[Macro | None, dict[str, str]]:
        return offered(username, queue).filter(pk=pk).first(), attribute_types()

    macro, types = await dbconn.read(read)
    if macro is None:
        raise Http404("No such macro for this case.")
    return macro, types


def changes_said(macro: Macro) -> list[str]:
    """The changes as the preview lists them."""
    said = []
    if macro.status:
        said.append(f"status → {macro.get_status_display()}")
    if macro.priority:
        said.append(f"priority → {macro.get_priority_display()}")
    said += [f"tag {t}" for t in macros.split_tags(macro.add_tags)]
    said += [f"remove tag {t}" for t in macros.split_tags(macro.remove_tags)]
    if macro.unassign:
        said.append("unassign")
    elif macro.assignee:
        said.append(f"assign to {macro.assignee}")
    said += [f"{k} = {v}" for k, v in (macro.attributes or {}).items()]
    return said


@require_GET
@login_required
async def preview(request: HttpRequest, case_id: str, pk: int) -> HttpResponse:
    """The macro as it would apply to this case for this person (the picker's preview)."""
    access = (await config_for(request)).access
    seen = await case_for(access, case_id, live_only=True)
    if seen.state is None:
        raise Http404("No such case.")
    macro, _ = await _macro_for(access.username, seen.state.queue, pk)
    user = await request.auser()
    return render(request, "cases/_macro_preview.html", {
        "macro": macro, "body": macros.render(macro.body, seen.state, user),
        "changes": changes_said(macro), "case": seen.state})


class ApplyForm(forms.Form):
    macro = forms.IntegerField()
    version = forms.IntegerField(required=False)
    key = forms.CharField(required=False, max_length=64)
    # The comment box's text, handed back if the macro is not applied.
    typed = forms.CharField(required=False, max_length=10_000, strip=False)


@require_POST
@login_required
async def apply(request: HttpRequest, case_id: str) -> HttpResponse:
    from cases.web.views import _render_case  # one renderer of the case page

    access = (await config_for(request, usernames=True)).access
    form = ApplyForm(request.POST)
    seen = await case_for(access, case_id, live_only=True)
    if not form.is_valid() or seen.state is None:
        return await _render_case(request, seen, status=400, refusal="Choose a macro.")
    state: CaseState = seen.state
    macro, types = await _macro_for(access.username, state.queue, form.cleaned_data["macro"])
    user = await request.auser()
    command = macros.command_for(macro, state, user, types, actor=access.username,
                                 authority=access.authority,
                                 expected_version=form.cleaned_data["version"])
    key = form.cleaned_data["key"]
    typed = form.cleaned_data["typed"]
    try:
        state = lookup.visible(access, await temporal.act(
            case_id, command,
            ids.update_id(access.username, case_id, "apply_macro", key) if key else None))
    except temporal.CaseNotFound as err:
        raise Http404("No such case.") from err
    except (temporal.ActionRefused, temporal.CaseBusy, temporal.WorkerUnavailable) as err:
        # Refused in the workflow's own words, above the case as it is now; what was typed
        # goes back into the comment box.
        again = await case_for(access, case_id)
        return await _render_case(request, again, status=409, refusal=err.message,
                                  **_typed_back(again, typed))
    lookup.STATES.remember(state)
    done = f"Applied the macro {macro.name}."
    if not getattr(request, "htmx", False):
        messages.success(request, done)
        return redirect("cases:detail", case_id=case_id)
    applied = Seen(case_id, state, temporal.CaseRow.from_state(state))
    # What was typed beside the "/word" was not sent: it stays in the box, nothing is lost.
    return await _render_case(request, applied, flash=done, oob_row=True,
                              **(_typed_back(applied, typed) if typed.strip() else {}))


def _typed_back(seen: Seen, typed: str) -> dict[str, Any]:
    """The comment box filled with what was typed (an unbound form: no errors to show)."""
    if not typed or seen.state is None:
        return {}
    form_class = ACTION_FORMS["comment"]
    initial = {**form_class.initial_from(seen.state), "body": typed}
    return {"bound": form_class(initial=initial, prefix="comment"), "action": "comment"}


# --- My macros: anyone's own, like saved views ------------------------------------------------


class MyMacroForm(forms.ModelForm):
    class Meta:
        model = Macro
        fields = ["name", "queue", "body", "internal", "status", "priority", "add_tags",
                  "remove_tags", "assignee", "unassign", "attributes"]


def _mine(user: AbstractBaseUser) -> QuerySet[Macro]:
    return Macro.objects.filter(owner=user).select_related("queue").order_by("name")


@require_http_methods(["GET", "POST"])
@login_required
def my_macros(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """List, add and edit one's own macros (the model's clean checks each, as the admin's)."""
    instance = None
    if pk is not None:
        instance = _mine(request.user).filter(pk=pk).first()
        if instance is None:
            raise Http404("No such macro of yours.")
    form = MyMacroForm(request.POST or None, instance=instance or Macro(owner=request.user))
    if request.method == "POST" and request.POST.get("delete") and instance is not None:
        instance.delete()
        messages.success(request, f"Deleted the macro {instance.name}.")
        return redirect("macros:mine")
    if request.method == "POST" and form.is_valid():
        saved = form.save()
        messages.success(request, f"Saved the macro {saved.name}.")
        return redirect("macros:mine")
    names = CaseAttribute.objects.filter(state=CaseAttribute.REGISTERED).order_by("name")
    return render(request, "cases/my_macros.html", {
        "form": form, "macros": _mine(request.user), "editing": instance,
        "help": macros.variables_help(names.values_list("name", flat=True)),
        "key": uuid.uuid4().hex}, status=400 if form.errors else 200)
