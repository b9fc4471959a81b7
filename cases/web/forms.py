from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django import forms
from django.utils import timezone

from cases.config.custom_fields import (
    COLUMNS_PARAM,
    FIELD_PREFIX,
    Attribute,
    add_fields,
    filters_from,
    form_field,
    to_initial,
    values_from,
)
from cases.temporal import ids, visibility
from cases.temporal.ids import is_case_id, new_case_id
from cases.temporal.visibility import (
    ANYONE,
    EXECUTIONS,
    ME,
    UNASSIGNED,
    CaseFilter,
    InvalidFilter,
)
from workers import rules
from workers.model import (
    OPEN_STATUSES,
    PRIORITY_LABELS,
    STATUS_LABELS,
    AddComment,
    AddTag,
    Assign,
    Claim,
    Close,
    Command,
    NewCase,
    RemoveTag,
    Reopen,
    Resolve,
    SetAttributes,
    SetDue,
    SetPriority,
    SetStatus,
)

PRIORITY_CHOICES = [(p, f"{p} · {label}") for p, label in PRIORITY_LABELS.items()]
# Statuses a person picks directly; resolved and closed have their own commands.
SETTABLE_STATUSES = [(s, STATUS_LABELS[s]) for s in OPEN_STATUSES]


class NewCaseForm(forms.Form):
    # Pre-generated so a double submit or a retried POST opens one case, not two.
    case_id = forms.CharField(widget=forms.HiddenInput, initial=new_case_id)
    title = forms.CharField(max_length=rules.MAX_TITLE)
    queue = forms.ChoiceField()
    priority = forms.TypedChoiceField(choices=PRIORITY_CHOICES, coerce=int, initial=3)
    description = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 6}), max_length=rules.MAX_DESCRIPTION, required=False
    )
    requester_name = forms.CharField(max_length=rules.MAX_NAME, required=False, label="Requester")
    requester_email = forms.EmailField(max_length=rules.MAX_NAME, required=False, label="Email")
    tags = forms.CharField(
        required=False, help_text="Comma-separated, e.g. vip, refund", max_length=1000
    )

    def __init__(self, *args: Any, queues: list[tuple[str, str]],
                 attributes: list[Attribute] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["queue"].choices = [("", "Choose a queue…"), *queues]
        self.attributes = attributes or []
        add_fields(self, self.attributes)

    def clean_case_id(self) -> str:
        value: str = self.cleaned_data["case_id"]
        if not is_case_id(value):
            raise forms.ValidationError("This form has expired; reload the page.")
        return value

    def clean_tags(self) -> list[str]:
        raw = self.cleaned_data.get("tags") or ""
        tags: list[str] = []
        for part in raw.split(","):
            if part.strip():
                try:
                    tag = rules.clean_tag(part)
                except rules.RuleError as err:
                    raise forms.ValidationError(err.message) from err
                if tag not in tags:
                    tags.append(tag)
        if len(tags) > rules.MAX_TAGS:
            raise forms.ValidationError(f"A case has at most {rules.MAX_TAGS} tags.")
        return tags

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if not self.errors:
            try:
                rules.validate_new_case(self.new_case())
                for name, value in values_from(self, self.attributes).items():
                    try:
                        rules.clean_attribute(name, value)
                    except rules.RuleError as err:
                        self.add_error(FIELD_PREFIX + name, err.message)
            except rules.RuleError as err:
                self.add_error(err.field if err.field in self.fields else None, err.message)
        return data

    def new_case(self) -> NewCase:
        d = self.cleaned_data
        return NewCase(
            title=d["title"].strip(),
            queue=d["queue"],
            priority=d["priority"],
            description=d.get("description", ""),
            requester_name=d.get("requester_name", ""),
            requester_email=d.get("requester_email", ""),
            tags=d.get("tags", []),
            attributes={n: v for n, v in values_from(self, self.attributes).items()
                        if v.value is not None},
        )


# --- actions on a case ---------------------------------------------------------------------


class ActionForm(forms.Form):
    """Base of every action: the version the user saw and an idempotency key."""

    label = ""
    command_class: type[Command]
    # Placeholder input for asking the rules whether the case takes this action at all
    # (rules.offers): whatever the form itself would fill in, the rest left blank.
    probe_fields: dict[str, Any] = {}
    version = forms.IntegerField(widget=forms.HiddenInput, required=False)
    key = forms.CharField(widget=forms.HiddenInput, max_length=64, required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {}).setdefault("key", uuid.uuid4().hex)
        super().__init__(*args, **kwargs)

    def fields_for_command(self) -> dict[str, Any]:
        return {}

    def command(self, actor: str) -> Command:
        return self.command_class(
            actor=actor,
            expected_version=self.cleaned_data.get("version"),
            **self.fields_for_command(),
        )

    @classmethod
    def probe(cls, actor: str) -> Command:
        return cls.command_class(actor=actor, **cls.probe_fields)

    def update_id(self, actor: str, case_id: str, action: str) -> str | None:
        key = self.cleaned_data.get("key")
        return ids.update_id(actor, case_id, action, key) if key else None


class ClaimForm(ActionForm):
    label = "Claim"
    command_class = Claim


class AssignForm(ActionForm):
    label = "Assign"
    command_class = Assign
    probe_fields = {"assignee": ""}
    assignee = forms.CharField(max_length=150, widget=forms.TextInput(
        attrs={"list": "assignee-options", "autocomplete": "off"}))

    def fields_for_command(self) -> dict[str, Any]:
        return {"assignee": self.cleaned_data["assignee"]}


class UnassignForm(ActionForm):
    label = "Unassign"
    command_class = Assign
    probe_fields = {"assignee": None}

    def fields_for_command(self) -> dict[str, Any]:
        return {"assignee": None}


class PriorityForm(ActionForm):
    label = "Set priority"
    command_class = SetPriority
    probe_fields = {"priority": 0}
    priority = forms.TypedChoiceField(choices=PRIORITY_CHOICES, coerce=int)

    def fields_for_command(self) -> dict[str, Any]:
        return {"priority": self.cleaned_data["priority"]}


class StatusForm(ActionForm):
    label = "Set status"
    command_class = SetStatus
    probe_fields = {"status": ""}
    status = forms.ChoiceField(choices=SETTABLE_STATUSES)

    def fields_for_command(self) -> dict[str, Any]:
        return {"status": self.cleaned_data["status"]}


class CommentForm(ActionForm):
    label = "Comment"
    command_class = AddComment
    probe_fields = {"body": ""}
    body = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "Write a comment…"}),
        max_length=rules.MAX_COMMENT,
        label="Comment",
    )
    internal = forms.BooleanField(required=False, label="Internal note (agents only)")

    def fields_for_command(self) -> dict[str, Any]:
        return {"body": self.cleaned_data["body"], "internal": self.cleaned_data["internal"]}


class AddTagForm(ActionForm):
    label = "Add tag"
    command_class = AddTag
    probe_fields = {"tag": ""}
    tag = forms.CharField(max_length=rules.MAX_TAG)

    def fields_for_command(self) -> dict[str, Any]:
        return {"tag": self.cleaned_data["tag"]}


class RemoveTagForm(AddTagForm):
    label = "Remove tag"
    command_class = RemoveTag


class DueForm(ActionForm):
    label = "Set due time"
    command_class = SetDue
    probe_fields = {"due_at": datetime(2000, 1, 1)}  # naive: refused as input
    due_at = forms.DateTimeField(
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        label="Due",
    )

    def fields_for_command(self) -> dict[str, Any]:
        due = self.cleaned_data["due_at"]
        if timezone.is_naive(due):
            due = timezone.make_aware(due)
        return {"due_at": due}


class ResolveForm(ActionForm):
    label = "Resolve"
    command_class = Resolve
    probe_fields = {"resolution": ""}
    resolution = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3}), max_length=rules.MAX_RESOLUTION
    )

    def fields_for_command(self) -> dict[str, Any]:
        return {"resolution": self.cleaned_data["resolution"]}


class ReopenForm(ActionForm):
    label = "Reopen"
    command_class = Reopen
    reason = forms.CharField(max_length=500, required=False)

    def fields_for_command(self) -> dict[str, Any]:
        return {"reason": self.cleaned_data["reason"]}


class CloseForm(ActionForm):
    label = "Close"
    command_class = Close


class AttributesForm(ActionForm):
    """Sets the case's admin-registered attributes (those this user may edit)."""

    label = "Save attributes"
    command_class = SetAttributes
    probe_fields = {"values": {}}

    def __init__(self, *args: Any, attributes: list[Attribute] | None = None,
                 values: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.attributes = attributes or []
        for attr in self.attributes:
            field = form_field(attr)
            field.label = attr.label
            self.fields[attr.field_name] = field
            if values and attr.name in values:
                self.initial[attr.field_name] = to_initial(attr, values[attr.name])

    def fields_for_command(self) -> dict[str, Any]:
        return {"values": values_from(self, self.attributes)}


ACTION_FORMS: dict[str, type[ActionForm]] = {
    "claim": ClaimForm,
    "assign": AssignForm,
    "unassign": UnassignForm,
    "priority": PriorityForm,
    "status": StatusForm,
    "comment": CommentForm,
    "add_tag": AddTagForm,
    "remove_tag": RemoveTagForm,
    "due": DueForm,
    "resolve": ResolveForm,
    "reopen": ReopenForm,
    "close": CloseForm,
    "attributes": AttributesForm,
}


STATUS_CHOICES = list(STATUS_LABELS.items())
ASSIGNEE_CHOICES = [(ANYONE, "Anyone"), (ME, "Me"), (UNASSIGNED, "Unassigned")]


class CaseFilterForm(forms.Form):
    """The case list's filters, all in the URL. Invalid values are form errors, never query
    syntax: the form only yields a CaseFilter, which visibility.py turns into a query."""

    q = forms.CharField(required=False, max_length=200, label="Title words",
                        widget=forms.TextInput(attrs={"type": "search", "data-search": "",
                                                      "placeholder": "Search titles  ( / )"}))
    status = forms.MultipleChoiceField(choices=STATUS_CHOICES, required=False,
                                       widget=forms.CheckboxSelectMultiple)
    priority = forms.TypedMultipleChoiceField(choices=PRIORITY_CHOICES, coerce=int,
                                              required=False,
                                              widget=forms.CheckboxSelectMultiple)
    queue = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple)
    assignee = forms.CharField(required=False, max_length=150,
                               widget=forms.TextInput(attrs={"list": "assignee-options",
                                                             "placeholder": "anyone"}),
                               help_text="me, none (unassigned) or a username")
    tag = forms.CharField(required=False, max_length=rules.MAX_TAG)
    breached = forms.TypedChoiceField(
        choices=[("", "Any SLA"), ("yes", "SLA breached"), ("no", "Within SLA")],
        coerce=lambda v: {"yes": True, "no": False}.get(v), empty_value=None, required=False,
        label="SLA")
    due_before = forms.DateField(required=False, label="Due before",
                                 widget=forms.DateInput(attrs={"type": "date"}))
    due_within = forms.IntegerField(required=False, min_value=1, max_value=24 * 365,
                                    label="Due within (hours)")
    older_than = forms.IntegerField(required=False, min_value=1, max_value=3650,
                                    label="Open longer than (days)")
    opened_from = forms.DateField(required=False, label="Opened from",
                                  widget=forms.DateInput(attrs={"type": "date"}))
    opened_to = forms.DateField(required=False, label="Opened to",
                                widget=forms.DateInput(attrs={"type": "date"}))
    execution = forms.ChoiceField(
        choices=[("", "Live and ended"), *((k, v.label) for k, v in EXECUTIONS.items())],
        required=False, label="Cases")
    closed_from = forms.DateField(required=False, label="Ended from",
                                  widget=forms.DateInput(attrs={"type": "date"}))
    closed_to = forms.DateField(required=False, label="Ended to",
                                widget=forms.DateInput(attrs={"type": "date"}))

    # Filter parameters, as they appear in URLs and saved views: one per row of the filter
    # table, each a form field above of the same name.
    PARAMS = visibility.PARAMS

    def __init__(self, *args: Any, queues: list[tuple[str, str]],
                 attributes: list[Attribute] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["queue"].choices = queues
        self.attributes = attributes or []
        add_fields(self, self.attributes, for_filter=True)
        self.fields[COLUMNS_PARAM] = forms.MultipleChoiceField(
            choices=[(a.name, a.label) for a in self.attributes], required=False,
            widget=forms.CheckboxSelectMultiple, label="Columns")

    @property
    def attribute_filter_fields(self) -> list[forms.BoundField]:
        return [self[a.filter_name] for a in self.attributes if a.filter_name in self.fields]

    @property
    def columns(self) -> list[Attribute]:
        chosen = set(self.cleaned_data.get(COLUMNS_PARAM) or []) if self.is_valid() else set()
        return [a for a in self.attributes if a.name in chosen]

    def clean(self) -> dict[str, Any]:
        """Each filter field as the filter table parses it (normalised, or a field error)."""
        data = super().clean() or {}
        for f in visibility.FIELDS:
            if f.param in data:
                try:
                    data[f.param] = f.parse(data[f.param])
                except InvalidFilter as err:
                    self.add_error(f.param, str(err))
        return data

    def case_filter(self) -> CaseFilter:
        # Every parameter is cleaned and parsed by now; one left blank is its field's "any".
        d = self.cleaned_data
        return CaseFilter(**{f.name: d[f.param] for f in visibility.FIELDS if f.param},
                          attributes=filters_from(self, self.attributes))
