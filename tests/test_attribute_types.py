"""workers.model.SEARCH_ATTRIBUTE_TYPES is the one list of search attribute types: what is
made from it agrees with it, and every per-type rule handles every type on it, so a type
added there fails here until each rule knows it."""

from __future__ import annotations

from datetime import date

import pytest
from temporalio.api.enums.v1 import IndexedValueType

from cases import temporal as gateway
from cases.config.attributes import SQL_LIMITS
from cases.config.custom_fields import Attribute, form_field
from cases.models import CaseAttribute
from cases.temporal import visibility
from workers import rules
from workers.model import SEARCH_ATTRIBUTE_TYPES, AttributeValue
from workers.search_attributes import KEY_MAKERS

# One accepted value per type: (the workflow's value, a list filter's value).
SAMPLES = {
    "Keyword": ("EU", "EU"),
    "Text": ("Some words", "words"),
    "Int": (40, 40),
    "Double": (2.5, 2.5),
    "Bool": (True, True),
    "Datetime": ("2026-01-02T03:04:05+00:00", date(2026, 1, 2)),
    "KeywordList": (["a", "b"], "a"),
}


def test_the_made_lists_are_the_one_list():
    assert [t for t, _ in CaseAttribute.TYPES] == list(SEARCH_ATTRIBUTE_TYPES)
    assert list(SQL_LIMITS) == list(SEARCH_ATTRIBUTE_TYPES)
    assert set(KEY_MAKERS) == set(SEARCH_ATTRIBUTE_TYPES)
    assert set(gateway.ATTRIBUTE_TYPES) == set(SEARCH_ATTRIBUTE_TYPES)
    assert set(SAMPLES) == set(SEARCH_ATTRIBUTE_TYPES)


@pytest.mark.parametrize("kind", SEARCH_ATTRIBUTE_TYPES)
def test_the_sdk_key_and_the_registry_agree_on_the_server_s_type(kind):
    # Registering with one type and upserting with another is refused by the server only at
    # run time, in the workflow.
    assert KEY_MAKERS[kind]("Region").indexed_value_type == gateway.ATTRIBUTE_TYPES[kind]
    snake = "".join(f"_{c}" if c.isupper() else c for c in kind).lstrip("_").upper()
    assert gateway.ATTRIBUTE_TYPES[kind] == IndexedValueType.Value(
        f"INDEXED_VALUE_TYPE_{snake}")


@pytest.mark.parametrize("kind", SEARCH_ATTRIBUTE_TYPES)
def test_every_per_type_rule_handles_every_type(kind):
    value, filtered = SAMPLES[kind]
    cleaned = rules.clean_attribute("Region", AttributeValue(kind, value))
    assert cleaned.type == kind and cleaned.value is not None
    assert visibility.attribute_clauses("Region", kind, filtered)
    attribute = Attribute(name="Region", type=kind, label="Region", help_text="", choices=(),
                          filterable=True, agent_editable=True)
    assert form_field(attribute) is not None
    assert form_field(attribute, for_filter=True) is not None


def test_an_unknown_type_is_refused_by_each_rule():
    with pytest.raises(rules.RuleError):
        rules.clean_attribute("Region", AttributeValue("Money", 1))
    with pytest.raises(visibility.InvalidFilter):
        visibility.attribute_clauses("Region", "Money", 1)
    with pytest.raises(ValueError):
        form_field(Attribute(name="Region", type="Money", label="R", help_text="", choices=(),
                             filterable=True, agent_editable=True))
