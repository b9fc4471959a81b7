"""A queue's case types (issue 25) as the cases get them: each type's newest saved version,
as plain data (workers.model.CaseTypeSpec), for QueuePolicy.case_types.

Versions are written here only (`save_version`, from the admin): a change of a type's fields
is a new version, never an edit of one a case may carry.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import Any

from django.db import transaction

from cases.models import CaseType, CaseTypeVersion
from workers import rules
from workers.model import AttributeValue, CaseTypeSpec, TypeField


def parse_default(attr_type: str, text: str) -> AttributeValue | None:
    """A default as the admin typed it -> the value a case gets (None: none). Raises
    rules.RuleError (the rules' own check) or ValueError for text of the wrong type."""
    text = text.strip()
    if not text:
        return None
    value: Any = text
    if attr_type == "Int":
        value = int(text)
    elif attr_type == "Double":
        value = float(text)
    elif attr_type == "Bool":
        value = {"yes": True, "true": True, "no": False, "false": False}[text.lower()]
    elif attr_type == "KeywordList":
        value = [v.strip() for v in text.split(",") if v.strip()]
    elif attr_type == "Datetime":
        value = datetime.fromisoformat(text).isoformat()
    return AttributeValue(attr_type, value)


def spec_of(case_type: CaseType, version: int) -> CaseTypeSpec:
    """The type as its rows say now, numbered `version`."""
    fields = []
    for f in case_type.fields.select_related("attribute"):
        default = parse_default(f.attribute.type, f.default)
        fields.append(TypeField(name=f.attribute.name, required=f.required,
                                default=None if default is None else asdict(default),
                                label=f.attribute.label))
    return CaseTypeSpec(name=case_type.name, label=case_type.label, version=version,
                        fields=fields)


def spec_json(spec: CaseTypeSpec) -> dict[str, Any]:
    return asdict(spec)


def spec_from_json(data: dict[str, Any]) -> CaseTypeSpec:
    return CaseTypeSpec(name=data["name"], label=data["label"], version=data["version"],
                        fields=[TypeField(**f) for f in data["fields"]])


@transaction.atomic
def save_version(case_type: CaseType) -> CaseTypeVersion:
    """The type's newest version, a new one when its rows changed since (a renamed label
    too): what was saved before is never rewritten."""
    last = CaseTypeVersion.objects.select_for_update().filter(case_type=case_type).first()
    number = last.version + 1 if last else 1
    spec = spec_of(case_type, number)
    problem = rules.type_problem(spec)
    if problem is not None:
        raise ValueError(problem)
    if last is not None and spec_json(spec_of(case_type, last.version)) == last.spec:
        return last
    return CaseTypeVersion.objects.create(case_type=case_type, version=number,
                                          spec=spec_json(spec))


def current_types(queue: str) -> dict[str, CaseTypeSpec]:
    """The queue's types by name, each as its newest version. Synchronous: the ORM."""
    types: dict[str, CaseTypeSpec] = {}
    for case_type in CaseType.objects.filter(queue__slug=queue).prefetch_related("versions"):
        newest = next(iter(case_type.versions.all()), None)  # ordered newest first
        if newest is not None:
            types[case_type.name] = spec_from_json(newest.spec)
    return types


def default_type(queue: str) -> str:
    """The name of the type mail in and the API open when none is named ("" untyped)."""
    found = CaseType.objects.filter(queue__slug=queue, is_default=True).values_list(
        "name", flat=True).first()
    return found or ""


def types_by_queue() -> dict[str, dict[str, CaseTypeSpec]]:
    """Every queue's types (the new-case form's picker)."""
    queues = CaseType.objects.values_list("queue__slug", flat=True).distinct()
    return {q: current_types(q) for q in queues}


def defaults_by_queue() -> dict[str, str]:
    return dict(CaseType.objects.filter(is_default=True).values_list("queue__slug", "name"))
