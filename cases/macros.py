"""Macros (issue 25): a reply template and changes, configured in Django, applied to a case
as one `apply_macro` Update (workers/rules.py decides it).

One home for the variables a reply may use (VARIABLES): the validator, the renderer and the
admin's help all read it. Templates run on their own Django template engine with no tags at
all (no load, include, extends, ssi, if, for...) and a few text filters, against a context of
plain strings only: a name outside VARIABLES is refused when the macro is saved.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django import template
from django.core.exceptions import ValidationError
from django.template import defaultfilters
from django.template.base import FilterExpression, Variable, VariableNode

from workers import rules
from workers.model import ApplyMacro, AttributeValue, CaseState, MacroChanges

# Dotted name -> what it is, as the admin's help lists it. `attr.<Name>` adds each
# registered attribute (ATTRIBUTE_PREFIX + its name).
VARIABLES: dict[str, str] = {
    "requester.name": "the requester's name",
    "requester.email": "the requester's email address",
    "case.id": "the case's id (case-…)",
    "case.title": "the case's title",
    "case.queue": "the case's queue",
    "case.priority": "the case's priority (1 to 4)",
    "agent.first_name": "your first name",
    "agent.last_name": "your last name",
    "agent.username": "your username",
}
ATTRIBUTE_PREFIX = "attr."
# Text filters only; none reaches past the string it is given.
FILTERS = ("default", "upper", "lower", "title", "capfirst", "truncatechars", "truncatewords")

register = template.Library()
for _name in FILTERS:
    register.filter(_name, getattr(defaultfilters, _name))


class SandboxEngine(template.Engine):
    # No default builtins: without defaulttags and loader_tags there is no {% load %},
    # {% include %}, {% extends %}, {% ssi %}, nor any other tag to reach past the context.
    default_builtins: list[str] = []


ENGINE = SandboxEngine(builtins=["cases.macros"], autoescape=False, string_if_invalid="",
                       libraries={}, loaders=[])


def variables_help(attribute_names: Iterable[str] = ()) -> str:
    """The variables as the admin's help and the "My macros" page list them."""
    names = [f"{{{{ {name} }}}} ({what})" for name, what in VARIABLES.items()]
    names += [f"{{{{ {ATTRIBUTE_PREFIX}{n} }}}}" for n in attribute_names]
    return ("Variables: " + ", ".join(names) + ". Filters: " + ", ".join(FILTERS) +
            ". No tags ({% … %}).")


def _names(expression: FilterExpression) -> Iterable[str]:
    if isinstance(expression.var, Variable) and expression.var.lookups is not None:
        yield expression.var.var
    for _func, args in expression.filters:
        for lookup, arg in args:
            if lookup and isinstance(arg, Variable) and arg.lookups is not None:
                yield arg.var


def check_template(body: str, attribute_names: Iterable[str]) -> None:
    """Refuse a reply template that uses a tag, an unknown filter or a variable not listed:
    a ValidationError naming it. Only at saving; a saved template renders whatever the case."""
    try:
        compiled = ENGINE.from_string(body)
    except template.TemplateSyntaxError as err:
        raise ValidationError(f"The reply cannot use that: {err}. "
                              "Only {{ variables }} and the listed filters.") from err
    allowed = set(VARIABLES) | {ATTRIBUTE_PREFIX + n for n in attribute_names}
    for node in compiled.nodelist:
        if not isinstance(node, VariableNode):
            continue
        for name in _names(node.filter_expression):
            if name not in allowed:
                raise ValidationError(
                    f"Unknown variable {{{{ {name} }}}}: use only the listed variables.")


def context_for(state: CaseState, agent: Any) -> dict[str, Any]:
    """Plain strings only: nothing a template could walk past its listed names."""
    return {
        "requester": {"name": state.requester.name, "email": state.requester.email},
        "case": {"id": state.case_id, "title": state.title, "queue": state.queue,
                 "priority": str(state.priority)},
        "agent": {"first_name": str(agent.first_name or ""),
                  "last_name": str(agent.last_name or ""), "username": str(agent.username)},
        "attr": {name: _text(attr.value) for name, attr in state.attributes.items()},
    }


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(map(str, value))
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def render(body: str, state: CaseState, agent: Any) -> str:
    if not body.strip():
        return ""
    return ENGINE.from_string(body).render(template.Context(context_for(state, agent),
                                                             autoescape=False)).strip()


def split_tags(text: str) -> list[str]:
    return list(dict.fromkeys(t for t in text.replace(",", " ").split() if t))


def changes_of(macro: Any, attribute_types: dict[str, str]) -> MacroChanges:
    """A saved macro's changes as the workflow takes them."""
    return MacroChanges(
        status=macro.status or None, priority=macro.priority,
        add_tags=split_tags(macro.add_tags), remove_tags=split_tags(macro.remove_tags),
        assignee="" if macro.unassign else (macro.assignee or None),
        attributes={name: AttributeValue(attribute_types.get(name, "Keyword"), value)
                    for name, value in (macro.attributes or {}).items()})


def check_changes(macro: Any, attribute_types: dict[str, str]) -> None:
    """The rules' own shape checks (rules.clean_macro_changes), as form errors."""
    unknown = [n for n in (macro.attributes or {}) if n not in attribute_types]
    if not isinstance(macro.attributes or {}, dict):
        raise ValidationError({"attributes": "Attributes are an object: name → value."})
    if unknown:
        raise ValidationError({"attributes": f"Not a registered attribute: {unknown[0]}."})
    try:
        rules.clean_macro_changes(changes_of(macro, attribute_types))
        rules.clean_macro_name(macro.name)
    except rules.RuleError as err:
        field = {"add_tags": "add_tags", "remove_tags": "remove_tags", "macro": "name"}.get(
            err.field or "", err.field if err.field in ("status", "priority", "assignee")
            else "attributes")
        raise ValidationError({field: err.message}) from err


def command_for(macro: Any, state: CaseState, agent: Any, attribute_types: dict[str, str],
                **common: Any) -> ApplyMacro:
    """The Update a saved macro makes on this case for this person: its reply rendered."""
    return ApplyMacro(macro=macro.name, body=render(macro.body, state, agent),
                      internal=macro.internal, changes=changes_of(macro, attribute_types),
                      **common)
