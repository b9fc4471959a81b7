"""Admin-registered case attributes as form fields, filters, columns and values.

Only attributes the registry marks *registered* are offered anywhere, so an attribute an admin
removes disappears from forms and filters at once, while values already on cases stay visible
(read-only, under their raw name).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from django import forms
from django.utils import timezone

from workers import rules
from workers.model import AttributeValue, CaseState

FIELD_PREFIX = "attr_"  # on the new-case and case-page forms
FILTER_PREFIX = "a_"  # on the case list, in URLs and saved views
COLUMNS_PARAM = "cols"


@dataclass(frozen=True)
class Attribute:
    name: str
    type: str
    label: str
    help_text: str
    choices: tuple[str, ...]
    filterable: bool
    agent_editable: bool

    @property
    def field_name(self) -> str:
        return FIELD_PREFIX + self.name

    @property
    def filter_name(self) -> str:
        return FILTER_PREFIX + self.name


def form_field(attr: Attribute, *, for_filter: bool = False) -> forms.Field:
    common: dict[str, Any] = {"required": False, "label": attr.label,
                              "help_text": "" if for_filter else attr.help_text}
    if attr.type == "Keyword" and attr.choices:
        return forms.ChoiceField(choices=[("", "—"), *((c, c) for c in attr.choices)], **common)
    if attr.type in ("Keyword", "KeywordList"):
        if attr.type == "KeywordList" and not for_filter:
            common["help_text"] = attr.help_text or "Comma-separated values"
        return forms.CharField(max_length=rules.MAX_KEYWORD if for_filter else 2000, **common)
    if attr.type == "Text":
        widget = forms.TextInput if for_filter else forms.Textarea(attrs={"rows": 2})
        return forms.CharField(max_length=rules.MAX_ATTRIBUTE_TEXT, widget=widget, **common)
    if attr.type == "Int":
        return forms.IntegerField(min_value=-(2**63) + 1, max_value=2**63 - 1, **common)
    if attr.type == "Double":
        return forms.FloatField(**common)
    if attr.type == "Bool":
        return forms.TypedChoiceField(
            choices=[("", "—"), ("yes", "Yes"), ("no", "No")],
            coerce=lambda v: {"yes": True, "no": False}.get(v), empty_value=None, **common)
    if attr.type == "Datetime":
        if for_filter:
            common["label"] = f"{attr.label} before"
            return forms.DateField(widget=forms.DateInput(attrs={"type": "date"}), **common)
        return forms.DateTimeField(
            widget=forms.DateTimeInput(attrs={"type": "datetime-local"},
                                       format="%Y-%m-%dT%H:%M"), **common)
    raise ValueError(f"unknown attribute type {attr.type}")


def to_value(attr: Attribute, cleaned: Any) -> AttributeValue:
    """A cleaned form value → the workflow's AttributeValue (None unsets)."""
    if cleaned in (None, "", []):
        return AttributeValue(attr.type, None)
    if attr.type == "KeywordList":
        return AttributeValue(attr.type, [v.strip() for v in str(cleaned).split(",")
                                          if v.strip()])
    if attr.type == "Datetime" and isinstance(cleaned, datetime):
        if timezone.is_naive(cleaned):
            cleaned = timezone.make_aware(cleaned)
        return AttributeValue(attr.type, cleaned.isoformat())
    return AttributeValue(attr.type, cleaned)


def to_initial(attr: Attribute, value: Any) -> Any:
    """A stored value → what the form field shows."""
    if value is None:
        return None
    if attr.type == "KeywordList" and isinstance(value, list):
        return ", ".join(value)
    if attr.type == "Bool":
        return "yes" if value else "no"
    if attr.type == "Datetime" and isinstance(value, str):
        try:
            return timezone.localtime(datetime.fromisoformat(value))
        except ValueError:
            return None
    return value


def add_fields(form: forms.Form, attributes: list[Attribute], *,
               for_filter: bool = False, initial: dict[str, Any] | None = None) -> None:
    for attr in attributes:
        if for_filter and not attr.filterable:
            continue
        name = attr.filter_name if for_filter else attr.field_name
        form.fields[name] = form_field(attr, for_filter=for_filter)
        if initial and attr.name in initial:
            form.initial[name] = to_initial(attr, initial[attr.name])


def values_from(form: forms.Form, attributes: list[Attribute]) -> dict[str, AttributeValue]:
    return {a.name: to_value(a, form.cleaned_data.get(a.field_name)) for a in attributes
            if a.field_name in form.fields}


def filters_from(form: forms.Form, attributes: list[Attribute]) -> dict[str, tuple[str, Any]]:
    """Filter values for the query builder: name -> (type, value), only those given."""
    out: dict[str, tuple[str, Any]] = {}
    for attr in attributes:
        value = form.cleaned_data.get(attr.filter_name)
        if value in (None, ""):
            continue
        if attr.type == "Datetime" and not isinstance(value, date):
            continue
        out[attr.name] = (attr.type, value)
    return out


def display(attr_type: str, value: Any) -> str:
    """A value as text. Values come from any Temporal client, not only this app's forms, so
    one of another type than the registered one is shown as what it is, never an error."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value)
    if attr_type == "Datetime" and isinstance(value, str):
        try:
            return timezone.localtime(datetime.fromisoformat(value)).strftime("%b %-d, %H:%M")
        except (ValueError, OverflowError):  # not a date, no offset, or past the calendar
            return value
    return _text(value)


def _text(value: Any) -> str:
    try:
        if isinstance(value, dict | list):
            return json.dumps(value, ensure_ascii=False, default=str)
        return str(value)
    except (ValueError, RecursionError):  # an int past str()'s digit limit, or nested deep
        return "(unreadable)"


def attribute_rows(state: CaseState, attributes: list[Attribute]) -> list[tuple[str, str, bool]]:
    """(label, shown value, still registered) for every custom value on the case; a typed
    case shows its own type's fields first, set or not, in the order the type it was opened
    (or re-typed) with lists them, whatever the admin changed since (issue 25)."""
    known = {a.name: a for a in attributes}
    rows: list[tuple[str, str, bool]] = []
    listed = [f.name for f in state.case_type.fields] if state.case_type else []
    for name in listed:
        value = state.attributes.get(name)
        attr = known.get(name)
        rows.append((attr.label if attr else rules.field_words(name),
                     display(value.type, value.value) if value else "", attr is not None))
    rows += [(a.label, display(a.type, state.attributes[a.name].value), True)
             for a in attributes if a.name in state.attributes and a.name not in listed]
    rows += [(name, display(v.type, v.value), False)
             for name, v in sorted(state.attributes.items())
             if name not in known and name not in listed]
    return rows
