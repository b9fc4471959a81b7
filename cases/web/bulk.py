"""Bulk work: one Update per selected case, bounded concurrency, a per-case report."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from cases import macros, temporal
from cases.config import dbconn
from cases.config.access import Access
from cases.config.reading import access_for
from cases.models import Macro
from cases.temporal import ids
from cases.temporal.ids import CASE_ID_RE
from cases.web import lookup
from cases.web.forms import check_usernames, form_field
from cases.web.macros import attribute_types
from workers import rules
from workers.model import Command

PerCase = Callable[[str], Awaitable[Command]]

logger = logging.getLogger(__name__)

DONE, REFUSED, FAILED = "done", "refused", "failed"
# The registry's bulk-able commands, by Update name, each sent with its first form's inputs.
BULK_COMMANDS: dict[str, rules.CommandRule] = {
    name: rule for name, rule in rules.COMMANDS.items() if rule.bulk}
# A macro (issue 25) is applied per case, its reply rendered for each (bulk_macro below).
MACRO_ACTION = "apply_macro"
BULK_ACTIONS = [*((name, rule.bulk) for name, rule in BULK_COMMANDS.items()),
                (MACRO_ACTION, "Apply macro")]


def _bulk_field(inp: rules.Input) -> forms.Field:
    """A command's input as the bulk bar asks for it: optional until its action is chosen,
    labelled in place since the bar has no room for labels."""
    field = form_field(inp)
    field.required = False
    if isinstance(field, forms.TypedChoiceField):
        field.choices = [("", inp.name), *inp.choices]
        field.empty_value = None
    field.widget.attrs.update({"aria-label": inp.label or inp.name.capitalize(),
                               "class": f"bulk-{inp.name}"})
    if not isinstance(field, forms.TypedChoiceField):
        field.widget.attrs.setdefault("placeholder", inp.name)
    return field


class BulkForm(forms.Form):
    action = forms.ChoiceField(choices=BULK_ACTIONS)
    case = forms.MultipleChoiceField(required=True, error_messages={
        "required": "Select at least one case."})
    key = forms.CharField(required=False, max_length=64)
    back = forms.CharField(required=False, max_length=2000)
    # Every bulk command's inputs (added below); commands sharing an input name share it.
    INPUTS = {i.name: i for rule in BULK_COMMANDS.values() for i in rule.forms[0].inputs}

    # The macros this person may use somewhere (each case then checks its own queue's),
    # loaded beforehand: an async view must not query while validating.
    macro = forms.TypedChoiceField(coerce=int, required=False, empty_value=None,
                                   widget=forms.Select(attrs={"aria-label": "Macro",
                                                              "class": "bulk-macro"}))

    def __init__(self, *args: object, macros: list[tuple[int, str]] = (),  # type: ignore[assignment]
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["macro"].choices = [("", "macro"), *macros]
        # Any well-formed ids; whether each may be touched is decided per case.
        ids = self.data.getlist("case") if hasattr(self.data, "getlist") else []
        self.fields["case"].choices = [(i, i) for i in ids if CASE_ID_RE.match(i)]

    @property
    def options(self) -> list[tuple[str, str]]:
        """The bar's choices; "…" where the action asks for something more."""
        return [*((name, rule.bulk + ("…" if rule.forms[0].inputs else ""))
                  for name, rule in BULK_COMMANDS.items()), (MACRO_ACTION, "Apply macro…")]

    @property
    def inputs(self) -> list[forms.BoundField]:
        return [*(self[name] for name in self.INPUTS), self["macro"]]

    @property
    def chosen(self) -> rules.Form:
        action = self.cleaned_data["action"]
        return BULK_COMMANDS[action].forms[0] if action in BULK_COMMANDS else rules.Form("")

    def clean_case(self) -> list[str]:
        ids = list(dict.fromkeys(self.cleaned_data["case"]))
        if len(ids) > settings.BULK_MAX_CASES:
            raise forms.ValidationError(f"Select at most {settings.BULK_MAX_CASES} cases.")
        return ids

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("action") in BULK_COMMANDS:
            for inp in self.chosen.inputs:
                if inp.required and data.get(inp.name) in (None, "") \
                        and inp.name not in self.errors:
                    self.add_error(inp.name, f"Choose the {inp.label or inp.name} to set.")
        if data.get("action") == MACRO_ACTION and not data.get("macro") \
                and "macro" not in self.errors:
            self.add_error("macro", "Choose the macro to apply.")
        return data

    def command(self, access: Access) -> Command:
        rule, spec = BULK_COMMANDS[self.cleaned_data["action"]], self.chosen
        values = {i.name: self.cleaned_data[i.name] for i in spec.inputs}
        return rule.command(actor=access.username, authority=access.authority,
                            **{**values, **spec.fixed})


BulkForm.base_fields.update({name: _bulk_field(i) for name, i in BulkForm.INPUTS.items()})


@dataclass
class Outcome:
    case_id: str
    result: str  # DONE, REFUSED or FAILED
    message: str
    status: str = ""
    title: str = ""


class NotForThisCase(Exception):
    """A per-case command that cannot be made for this case (a macro of another queue)."""


async def run_bulk(case_ids: list[str], command: Command | PerCase, key: str,
                   access: Access, action: str = "") -> list[Outcome]:
    """Send `command` to each case, at most BULK_CONCURRENCY at a time; never stop early.
    A per-case command is made for each case first (a macro's reply rendered for it)."""
    gate = asyncio.Semaphore(settings.BULK_CONCURRENCY)
    action = action or f"bulk-{type(command).__name__.lower()}"

    async def one(case_id: str) -> Outcome:
        async with gate:
            try:
                made = command if isinstance(command, Command) else await command(case_id)
                # Same user + key + case → same Update id: a retried bulk POST applies
                # nothing twice, and nobody else's key can replay this user's outcome.
                state = lookup.visible(access, await temporal.act(
                    case_id, made, ids.update_id(access.username, case_id, action, key)))
            except NotForThisCase as err:
                return Outcome(case_id, REFUSED, str(err))
            except Http404:
                return Outcome(case_id, REFUSED, "No such case, or not one you can see.")
            except temporal.CaseNotFound:
                return Outcome(case_id, REFUSED, "No such case, or not one you can see.")
            except temporal.ActionRefused as err:
                return Outcome(case_id, REFUSED, err.message)
            except temporal.GatewayError as err:
                return Outcome(case_id, FAILED, err.message)
            except Exception:
                logger.exception("bulk action on %s failed", case_id)
                return Outcome(case_id, FAILED, "Unexpected error; nothing else was affected.")
            return Outcome(case_id, DONE, "Done.", state.status, state.title)

    return list(await asyncio.gather(*(one(c) for c in case_ids)))


def bulk_macro(macro: Macro, access: Access, user: Any,
               types: dict[str, str]) -> PerCase:
    """The macro made for each case as it is now: offered in its queue, its reply rendered
    for that case and this person."""

    async def made(case_id: str) -> Command:
        state = lookup.visible(access, await temporal.get_case(case_id))
        if macro.queue is not None and macro.queue.slug != state.queue:
            raise NotForThisCase(f"The macro {macro.name} is not for the {state.queue} queue.")
        return macros.command_for(macro, state, user, types, actor=access.username,
                                  authority=access.authority)

    return made


async def macro_choices(access: Access) -> list[tuple[int, str]]:
    def read() -> list[tuple[int, str]]:
        mine = Macro.objects.filter(Q(owner__isnull=True) | Q(owner__username=access.username))
        if access.queues is not None:
            mine = mine.filter(Q(queue__isnull=True) | Q(queue__slug__in=access.queues))
        return list(mine.order_by("name").values_list("pk", "name"))

    return await dbconn.read(read)


@require_POST
@login_required
async def bulk(request: HttpRequest) -> HttpResponse:
    access = await access_for(request)
    form = BulkForm(request.POST, macros=await macro_choices(access))
    outcomes: list[Outcome] = []
    if form.is_valid():
        await check_usernames(form, [i.name for i in form.chosen.inputs
                                     if i.kind == "username"])
    if form.is_valid() and form.cleaned_data["action"] == MACRO_ACTION:
        pk = form.cleaned_data["macro"]
        macro, types = await dbconn.read(lambda: (
            Macro.objects.select_related("queue").filter(pk=pk).first(), attribute_types()))
        if macro is None:
            form.add_error("macro", "That macro is gone.")
        else:
            outcomes = await run_bulk(
                form.cleaned_data["case"], bulk_macro(macro, access, await request.auser(),
                                                      types),
                form.cleaned_data["key"] or uuid.uuid4().hex, access, "bulk-applymacro")
    elif form.is_valid():
        outcomes = await run_bulk(form.cleaned_data["case"], form.command(access),
                                  form.cleaned_data["key"] or uuid.uuid4().hex, access)
    summary = {r: sum(1 for o in outcomes if o.result == r) for r in (DONE, REFUSED, FAILED)}
    return render(request, "cases/bulk_report.html", {
        "form": form, "outcomes": outcomes, "summary": summary,
        "back": form.data.get("back", ""),
        "action_label": dict(BULK_ACTIONS).get(form.data.get("action", ""), ""),
    }, status=200 if form.is_valid() else 400)
