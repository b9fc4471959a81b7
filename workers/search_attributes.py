"""The core case search attributes, and the row memo the list page renders from.

SQL visibility allows 10 Keyword and 3 of each other custom type per namespace; the core set
takes 3 Keyword, 1 Int, 2 Datetime, 1 Text, 2 Bool (CaseSlaBreached, CaseAtRisk),
1 KeywordList and leaves the rest to admins.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from temporalio.common import (
    SearchAttributeKey,
    SearchAttributePair,
    SearchAttributeUpdate,
    TypedSearchAttributes,
)

from .model import CORE_ATTRIBUTES, AttributeValue, CaseState

# The SDK's constructor per type; for_float is Temporal's "Double".
KEY_MAKERS = {
    "Keyword": SearchAttributeKey.for_keyword, "Int": SearchAttributeKey.for_int,
    "Text": SearchAttributeKey.for_text, "KeywordList": SearchAttributeKey.for_keyword_list,
    "Datetime": SearchAttributeKey.for_datetime, "Bool": SearchAttributeKey.for_bool,
    "Double": SearchAttributeKey.for_float,
}


def _core(name: str) -> Any:
    # The name and its type come from model.CORE_ATTRIBUTES, their one home.
    return KEY_MAKERS[CORE_ATTRIBUTES[name]](name)


CASE_STATUS = _core("CaseStatus")
CASE_ASSIGNEE = _core("CaseAssignee")
CASE_QUEUE = _core("CaseQueue")
CASE_PRIORITY = _core("CasePriority")
CASE_TITLE = _core("CaseTitle")
CASE_TAGS = _core("CaseTags")
CASE_DUE_AT = _core("CaseDueAt")
CASE_UPDATED_AT = _core("CaseUpdatedAt")
CASE_SLA_BREACHED = _core("CaseSlaBreached")
CASE_AT_RISK = _core("CaseAtRisk")

CORE_KEYS: tuple[SearchAttributeKey[Any], ...] = tuple(_core(n) for n in CORE_ATTRIBUTES)

ROW_MEMO_KEY = "row"


def updates_for(state: CaseState) -> list[SearchAttributeUpdate[Any]]:
    """Every core attribute, set or unset, so a list query never sees a half-written case."""
    return [
        CASE_STATUS.value_set(state.status),
        CASE_ASSIGNEE.value_set(state.assignee) if state.assignee else CASE_ASSIGNEE.value_unset(),
        CASE_QUEUE.value_set(state.queue),
        CASE_PRIORITY.value_set(state.priority),
        CASE_TITLE.value_set(state.title),
        CASE_TAGS.value_set(list(state.tags)),
        CASE_DUE_AT.value_set(state.due_at) if state.due_at else CASE_DUE_AT.value_unset(),
        CASE_UPDATED_AT.value_set(state.updated_at),
        CASE_SLA_BREACHED.value_set(state.sla_breached),
        CASE_AT_RISK.value_set(state.at_risk and state.is_open),
    ]


_KEY_FACTORIES: dict[str, Any] = {
    "Keyword": SearchAttributeKey.for_keyword,
    "Text": SearchAttributeKey.for_text,
    "Int": SearchAttributeKey.for_int,
    "Double": SearchAttributeKey.for_float,
    "Bool": SearchAttributeKey.for_bool,
    "Datetime": SearchAttributeKey.for_datetime,
    "KeywordList": SearchAttributeKey.for_keyword_list,
}


def custom_updates(values: dict[str, AttributeValue]) -> list[SearchAttributeUpdate[Any]]:
    """Typed upserts for admin-registered attributes (a None value unsets).

    Only attributes a command just set are upserted: re-upserting every custom attribute on
    each change would stall the workflow once an admin unregisters one."""
    updates: list[SearchAttributeUpdate[Any]] = []
    for name, attr in sorted(values.items()):
        key = _KEY_FACTORIES[attr.type](name)
        if attr.value is None:
            updates.append(key.value_unset())
        elif attr.type == "Datetime":
            updates.append(key.value_set(datetime.fromisoformat(attr.value)))
        else:
            updates.append(key.value_set(attr.value))
    return updates


def initial_search_attributes(state: CaseState) -> TypedSearchAttributes:
    """Attributes to start the workflow with, so a new case lists complete at once rather
    than as a bare row until its first workflow task runs."""
    updates = [*updates_for(state), *custom_updates(state.attributes)]
    return TypedSearchAttributes(
        [SearchAttributePair(u.key, u.value) for u in updates if u.value is not None]
    )


def row_memo(state: CaseState) -> dict[str, Any]:
    """Only what a list row shows that search attributes do not carry, kept small."""
    return {
        "requester": state.requester.name or state.requester.email,
        "version": state.version,
        "comments": len(state.comments),
    }
