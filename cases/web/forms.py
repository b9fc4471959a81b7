from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django import forms
from django.contrib.auth import get_user_model
from django.utils import timezone

from cases.config import dbconn
from cases.config.custom_fields import (
    COLUMNS_PARAM,
    FIELD_PREFIX,
    Attribute,
    add_fields,
    filters_from,
    to_initial,
    values_from,
)
from cases.config.custom_fields import form_field as custom_form_field
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
from workers.model import STATUS_LABELS, CaseState, CaseTypeSpec, Command, FileRef, NewCase

PRIORITY_CHOICES = list(rules.PRIORITY_CHOICES)


class AnyChoiceField(forms.ChoiceField):
    """A picker whose value the rules judge, in their own words (a case type: of which
    queue is known only with the rest of the form)."""

    def valid_value(self, value: Any) -> bool:
        return True


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
    case_type = AnyChoiceField(required=False, label="Type")

    def __init__(self, *args: Any, queues: list[tuple[str, str]],
                 attributes: list[Attribute] | None = None,
                 case_types: dict[str, dict[str, CaseTypeSpec]] | None = None,
                 only_type_fields: bool = False, **kwargs: Any) -> None:
        """`case_types`: each queue's types (issue 25). `only_type_fields`: the page shows
        a chosen type's fields alone (required marked, defaults filled); the API keeps every
        attribute the user may set, and the rules say what the type lacks."""
        super().__init__(*args, **kwargs)
        self.fields["queue"].choices = [("", "Choose a queue…"), *queues]
        self.case_types = case_types or {}
        self.chosen_type = self._chosen_type()
        names = sorted({(n, t.label or n) for types in self.case_types.values()
                        for n, t in types.items()})
        self.fields["case_type"].choices = [("", "No type"), *names]
        if not self.case_types:
            self.fields["case_type"].widget = forms.HiddenInput()
        self.attributes = attributes or []
        spec = self.chosen_type
        if spec is not None and only_type_fields:
            order = {f.name: i for i, f in enumerate(spec.fields)}
            self.attributes = sorted((a for a in self.attributes if a.name in order),
                                     key=lambda a: order[a.name])
        add_fields(self, self.attributes)
        if spec is not None:
            for f in spec.fields:
                field = self.fields.get(FIELD_PREFIX + f.name)
                if field is None:
                    continue
                if f.required:
                    field.label = f"{field.label} (required)"
                    field.widget.attrs["aria-required"] = "true"
                default = rules.default_of(f)
                if default is not None and not self.is_bound and \
                        not self.initial.get(FIELD_PREFIX + f.name):
                    attr = next(a for a in self.attributes if a.name == f.name)
                    self.initial[FIELD_PREFIX + f.name] = to_initial(attr, default.value)

    def _chosen_type(self) -> CaseTypeSpec | None:
        source = self.data if self.is_bound else self.initial
        types = self.case_types.get(str(source.get("queue") or ""), {})
        return types.get(str(source.get("case_type") or ""))

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
                new = self.new_case()
                rules.validate_new_case(new)
                for name, value in values_from(self, self.attributes).items():
                    try:
                        rules.clean_attribute(name, value)
                    except rules.RuleError as err:
                        self.add_error(FIELD_PREFIX + name, err.message)
                if new.case_type and not self.errors:
                    # The workflow's own check, in its words (issue 25).
                    spec = rules.type_named(self.case_types.get(new.queue, {}), new.case_type)
                    rules.typed_attributes(spec, new.attributes)
            except rules.RuleError as err:
                where = FIELD_PREFIX + (err.field or "")
                if err.field in self.fields:
                    where = err.field
                self.add_error(where if where in self.fields else None, err.message)
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
            case_type=d.get("case_type") or "",
        )


# --- actions on a case: built from the command registry (rules.COMMANDS) --------------------


class _RuleChecked:
    """Runs an input's pure check from the rules after the field's own cleaning."""

    check: Any

    def clean(self, value: Any) -> Any:
        value = super().clean(value)  # type: ignore[misc]
        if value in self.empty_values:  # type: ignore[attr-defined]
            return value
        try:
            return self.check(value)
        except rules.RuleError as err:
            raise forms.ValidationError(err.message) from err


class MultipleFileInput(forms.ClearableFileInput):
    allow_multiple_selected = True


class MultipleFileField(forms.FileField):
    """Several files under one name (the "files" input kind): a list of uploads, kept in the
    file store by the view only once the rest of the form is valid."""

    widget = MultipleFileInput

    def clean(self, data: Any, initial: Any = None) -> list[Any]:
        uploads = data if isinstance(data, list | tuple) else ([data] if data else [])
        if not uploads and self.required:
            raise forms.ValidationError(self.error_messages["required"], code="required")
        if len(uploads) > rules.MAX_FILES_PER_COMMAND:
            raise forms.ValidationError(f"At most {rules.MAX_FILES_PER_COMMAND} files at a time.")
        return [super(MultipleFileField, self).clean(u, initial) for u in uploads]


class AwareDateTimeField(forms.DateTimeField):
    """A datetime-local input means the server's time zone; the rules want an aware time."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")

    def clean(self, value: Any) -> datetime | None:
        moment = super().clean(value)
        return timezone.make_aware(moment) if moment and timezone.is_naive(moment) else moment


class ModeField(forms.TypedChoiceField):
    """One of two named modes of a bool input; also takes the tick box's "on" it replaced."""

    def valid_value(self, value: Any) -> bool:
        return value == "on" or super().valid_value(value)


def bool_value(value: bool) -> str:
    """How a two-mode input's choice is spelled in the page (and in its CSS)."""
    return "true" if value else "false"


def form_field(inp: rules.Input) -> forms.Field:
    """The Django field for one of a command's inputs."""
    kwargs: dict[str, Any] = {"required": inp.required and inp.kind != "bool"}
    if inp.label:
        kwargs["label"] = inp.label
    attrs = {"placeholder": inp.placeholder} if inp.placeholder else {}
    if inp.kind == "username":
        attrs.update({"list": "assignee-options", "autocomplete": "off"})
    kind: type[forms.Field]
    if inp.kind in ("text", "textarea", "email", "username"):
        kind = forms.EmailField if inp.kind == "email" else forms.CharField
        widget = forms.Textarea(attrs={"rows": 3, **attrs}) if inp.kind == "textarea" \
            else forms.TextInput(attrs=attrs)
        kwargs.update(max_length=inp.max_length, widget=widget)
    elif inp.kind == "choice":
        kind = forms.TypedChoiceField
        kwargs.update(choices=list(inp.choices), coerce=type(inp.choices[0][0]))
    elif inp.kind == "datetime":
        kind = AwareDateTimeField
    elif inp.kind == "bool" and inp.choices:
        # Radios named "false"/"true"; nothing chosen (a script's POST) is False, as an
        # unticked box was; "on" is what that box sent when ticked.
        kind = ModeField
        kwargs.update(choices=[(bool_value(v), label) for v, label in inp.choices],
                      coerce=lambda v: v in ("true", "on"), empty_value=False,
                      widget=forms.RadioSelect)
    elif inp.kind == "bool":
        kind = forms.BooleanField
    elif inp.kind == "files":
        kind = MultipleFileField
    elif inp.kind == "case_type":
        # Its choices are the case's queue's types, given to the form (ActionForm).
        kind = forms.ChoiceField
    else:
        raise ValueError(f"{inp.name}: no form field for input kind {inp.kind!r}")
    if inp.clean is not None:
        kind = type(f"Checked{kind.__name__}", (_RuleChecked, kind),
                    {"check": staticmethod(inp.clean)})
    return kind(**kwargs)


class ActionForm(forms.Form):
    """Base of every action: the version the user saw and an idempotency key. Each
    command's forms are subclasses made by `_action_form` from its registry entry."""

    rule: rules.CommandRule
    spec: rules.Form
    label = ""
    command_class: type[Command]
    # The "attributes" input: fields for the admin-registered attributes this user may set.
    takes_attributes = False
    # The "case_type" input: a choice of the case's queue's types (issue 25).
    takes_case_type = False
    version = forms.IntegerField(widget=forms.HiddenInput, required=False)
    key = forms.CharField(widget=forms.HiddenInput, max_length=64, required=False)

    def __init__(self, *args: Any, attributes: list[Attribute] | None = None,
                 values: dict[str, Any] | None = None,
                 case_types: dict[str, CaseTypeSpec] | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("initial", {}).setdefault("key", uuid.uuid4().hex)
        super().__init__(*args, **kwargs)
        self.attributes = attributes or []
        # The "case_type" input: a choice of the case's queue's types, sent as the type's
        # newest version (issue 25).
        self.case_types = case_types or {}
        for inp in self.spec.inputs:
            if inp.kind == "case_type":
                field = self.fields[inp.name]
                assert isinstance(field, forms.ChoiceField)
                field.choices = [("", "Choose a type…"), *(
                    (n, t.label or n) for n, t in sorted(self.case_types.items()))]
        for attr in self.attributes:
            field = custom_form_field(attr)
            field.label = attr.label
            self.fields[attr.field_name] = field
            if values and attr.name in values:
                self.initial[attr.field_name] = to_initial(attr, values[attr.name])

    @classmethod
    def initial_from(cls, state: CaseState) -> dict[str, Any]:
        """The form's starting values from the case as it is (the current priority, say)."""
        initial: dict[str, Any] = {"version": state.version}
        for inp in cls.spec.inputs:
            if inp.initial:
                value: Any = state
                for part in inp.initial.split("."):
                    value = getattr(value, part)
                initial[inp.name] = value
        return initial

    @classmethod
    def username_inputs(cls) -> list[str]:
        return [i.name for i in cls.spec.inputs if i.kind == "username"]

    @classmethod
    def file_inputs(cls) -> list[str]:
        return [i.name for i in cls.spec.inputs if i.kind == "files"]

    def uploads(self) -> dict[str, list[Any]]:
        """The uploaded files of each "files" input, to keep before the command is sent."""
        return {name: self.cleaned_data.get(name) or [] for name in self.file_inputs()}

    def fields_for_command(self, kept: dict[str, list[FileRef]] | None = None
                           ) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for inp in self.spec.inputs:
            if inp.kind == "attributes":
                values[inp.name] = values_from(self, self.attributes)
            elif inp.kind == "files":
                values[inp.name] = list((kept or {}).get(inp.name, []))
            elif inp.kind == "case_type":
                values[inp.name] = self.case_types.get(self.cleaned_data[inp.name])
            else:
                values[inp.name] = self.cleaned_data[inp.name]
        return {**values, **self.spec.fixed}

    def command(self, actor: str, kept: dict[str, list[FileRef]] | None = None) -> Command:
        """`kept`: the file store's references for the uploads of each "files" input."""
        return self.command_class(
            actor=actor,
            expected_version=self.cleaned_data.get("version"),
            **self.fields_for_command(kept),
        )

    @classmethod
    def probe(cls, actor: str) -> Command:
        return cls.rule.probe(cls.spec, actor)

    def unsent(self) -> list[str]:
        """What the user typed at length, to hand back when it could not be applied."""
        data = getattr(self, "cleaned_data", {})
        return [str(data[i.name]) for i in self.spec.inputs if i.hand_back and data.get(i.name)]

    def update_id(self, actor: str, case_id: str, action: str) -> str | None:
        key = self.cleaned_data.get("key")
        return ids.update_id(actor, case_id, action, key) if key else None


def _action_form(rule: rules.CommandRule, spec: rules.Form) -> type[ActionForm]:
    fields = {i.name: form_field(i) for i in spec.inputs if i.kind != "attributes"}
    name = "".join(part.title() for part in (spec.name or rule.update).split("_")) + "Form"
    return type(name, (ActionForm,), {
        "rule": rule, "spec": spec, "label": spec.label, "command_class": rule.command,
        "takes_attributes": any(i.kind == "attributes" for i in spec.inputs),
        "takes_case_type": any(i.kind == "case_type" for i in spec.inputs), **fields})


# URL action name -> form: a command's first form by its Update name, a second by its own.
ACTION_FORMS: dict[str, type[ActionForm]] = {
    spec.name or rule.update: _action_form(rule, spec)
    for rule in rules.COMMANDS.values() for spec in rule.forms
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
    at_risk = forms.TypedChoiceField(
        choices=[("", "At risk or not"), ("yes", "At risk"), ("no", "Not at risk")],
        coerce=lambda v: {"yes": True, "no": False}.get(v), empty_value=None, required=False,
        label="At risk")
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


async def check_usernames(form: forms.Form, names: list[str]) -> None:
    """A username input must name an active user: a form error, before anything is sent."""
    User = get_user_model()
    for name in names:
        value = form.cleaned_data.get(name)
        if value and not await dbconn.read(
                User.objects.filter(username=value, is_active=True).exists):
            form.add_error(name, "No such user.")
