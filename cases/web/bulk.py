"""Bulk work: one Update per selected case, bounded concurrency, a per-case report."""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

from django import forms
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_POST

from cases import temporal
from cases.config import dbconn
from cases.config.access import Access
from cases.config.reading import access_for
from cases.temporal import ids
from cases.temporal.ids import CASE_ID_RE
from cases.web import lookup
from cases.web.forms import PRIORITY_CHOICES
from workers import rules
from workers.model import AddTag, Assign, Close, Command, SetPriority

logger = logging.getLogger(__name__)

DONE, REFUSED, FAILED = "done", "refused", "failed"
BULK_ACTIONS = [("assign", "Assign to"), ("priority", "Set priority"), ("tag", "Add tag"),
                ("close", "Close")]


class BulkForm(forms.Form):
    action = forms.ChoiceField(choices=BULK_ACTIONS)
    case = forms.MultipleChoiceField(required=True, error_messages={
        "required": "Select at least one case."})
    assignee = forms.CharField(required=False, max_length=150)
    priority = forms.TypedChoiceField(choices=[("", "—"), *PRIORITY_CHOICES], coerce=int,
                                      required=False, empty_value=None)
    tag = forms.CharField(required=False, max_length=rules.MAX_TAG)
    key = forms.CharField(required=False, max_length=64)
    back = forms.CharField(required=False, max_length=2000)

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # Any well-formed ids; whether each may be touched is decided per case.
        ids = self.data.getlist("case") if hasattr(self.data, "getlist") else []
        self.fields["case"].choices = [(i, i) for i in ids if CASE_ID_RE.match(i)]

    def clean_case(self) -> list[str]:
        ids = list(dict.fromkeys(self.cleaned_data["case"]))
        if len(ids) > settings.BULK_MAX_CASES:
            raise forms.ValidationError(f"Select at most {settings.BULK_MAX_CASES} cases.")
        return ids

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        action = data.get("action")
        if action == "assign" and not data.get("assignee"):
            self.add_error("assignee", "Choose who to assign the cases to.")
        if action == "priority" and not data.get("priority"):
            self.add_error("priority", "Choose a priority.")
        if action == "tag":
            try:
                data["tag"] = rules.clean_tag(str(data.get("tag") or ""))
            except rules.RuleError as err:
                self.add_error("tag", err.message)
        return data

    def command(self, access: Access) -> Command:
        d = self.cleaned_data
        common = {"actor": access.username, "authority": access.authority}
        if d["action"] == "assign":
            return Assign(assignee=d["assignee"], **common)
        if d["action"] == "priority":
            return SetPriority(priority=d["priority"], **common)
        if d["action"] == "tag":
            return AddTag(tag=d["tag"], **common)
        return Close(**common)


@dataclass
class Outcome:
    case_id: str
    result: str  # DONE, REFUSED or FAILED
    message: str
    status: str = ""
    title: str = ""


async def run_bulk(case_ids: list[str], command: Command, key: str,
                   access: Access) -> list[Outcome]:
    """Send `command` to each case, at most BULK_CONCURRENCY at a time; never stop early."""
    gate = asyncio.Semaphore(settings.BULK_CONCURRENCY)
    action = f"bulk-{type(command).__name__.lower()}"

    async def one(case_id: str) -> Outcome:
        async with gate:
            try:
                # Same user + key + case → same Update id: a retried bulk POST applies
                # nothing twice, and nobody else's key can replay this user's outcome.
                state = lookup.visible(access, await temporal.act(
                    case_id, command, ids.update_id(access.username, case_id, action, key)))
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


@require_POST
@login_required
async def bulk(request: HttpRequest) -> HttpResponse:
    access = await access_for(request)
    form = BulkForm(request.POST)
    outcomes: list[Outcome] = []
    if form.is_valid():
        d = form.cleaned_data
        if d["action"] == "assign":
            User = get_user_model()
            if not await dbconn.read(
                    User.objects.filter(username=d["assignee"], is_active=True).exists):
                form.add_error("assignee", "No such user.")
    if form.is_valid():
        outcomes = await run_bulk(form.cleaned_data["case"], form.command(access),
                                  form.cleaned_data["key"] or uuid.uuid4().hex, access)
    summary = {r: sum(1 for o in outcomes if o.result == r) for r in (DONE, REFUSED, FAILED)}
    return render(request, "cases/bulk_report.html", {
        "form": form, "outcomes": outcomes, "summary": summary,
        "back": form.data.get("back", ""),
        "action_label": dict(BULK_ACTIONS).get(form.data.get("action", ""), ""),
    }, status=200 if form.is_valid() else 400)
