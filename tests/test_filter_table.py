"""The filter table's two readings agree: for every field (and every custom attribute type),
the Visibility clause and the Python predicate give the same answer on real Visibility rows.

The change feed keeps shared answers fresh with the predicate alone; a predicate that says
"yes" where the index says "no" shows a case on a list that does not hold it, and the reverse
hides one. So each field is asked of real cases on the dev server, and every row is judged
both ways. The scenarios are looked up from the table itself: a new row without scenarios
fails here.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from django.http import QueryDict

from cases import temporal as gateway
from cases.temporal.visibility import (
    ATTRIBUTE_KINDS,
    BASE,
    EXECUTIONS,
    FIELDS,
    ME,
    PARAMS,
    UNASSIGNED,
    CaseFilter,
    Field,
    quote,
)
from workers.model import AttributeValue, Claim, Close, NewCase, Resolve, SetDue

from .conftest import eventually, run

WHO = "alice"
VISIBLE = ["general", "billing"]

# One registered attribute per type. The names and types of the first four are those
# test_custom_attributes.py registers: the dev server is shared by the session, and SQL
# Visibility has room for only three custom Datetime (two taken by the core) and Int
# attributes.
ATTRIBUTES = {
    "Keyword": "CxRegion", "KeywordList": "CxSkills", "Int": "CxSeats",
    "Datetime": "CxRenewal", "Double": "CxScore", "Bool": "CxUrgent", "Text": "CxNotes",
}
# Values on the cases "a" and "b" below ("c" leaves them all unset).
VALUES: dict[str, tuple[Any, Any]] = {
    "Keyword": ("EU", "US"),
    "KeywordList": (["sql", "python"], ["go"]),
    "Int": (40, 7),
    "Datetime": ("2027-03-01T09:00:00+00:00", "2031-01-01T00:00:00+00:00"),
    "Double": (2.5, 0.5),
    "Bool": (True, False),
    "Text": ("Renewal contract signed", "other words"),
}

# Per field of the table: the values to filter by, between them listing some cases and
# leaving some out. Callables take `today` (the UTC day the cases were opened).
SCENARIOS: dict[str, Any] = {
    "statuses": [["in_progress"], ["new", "resolved"], ["waiting"]],
    "priorities": [[1], [2, 3], [4]],
    "queues": [["general"], ["billing"], ["technical"], ["general", "technical"]],
    "assignee": [ME, UNASSIGNED, "bob", "carol"],
    "tag": ["vip", "absent"],
    "breached": [True, False],
    "at_risk": [True, False],
    "due_before": lambda today: [today + timedelta(days=n) for n in (0, 1, 2, 5)],
    "words": ["refund", "printer jam", "cafe", "Café", "zzz", "!!!"],
    "opened_from": lambda today: [today, today + timedelta(days=1)],
    "opened_to": lambda today: [today - timedelta(days=1), today],
    "due_within_hours": [1, 4, 24 * 365],
    "older_than_days": [1, 3650],
    "execution": list(EXECUTIONS),
    "closed_from": lambda today: [today, today + timedelta(days=1)],
    "closed_to": lambda today: [today - timedelta(days=1), today],
    "attributes": None,  # per type, from ATTRIBUTE_SCENARIOS
}
ATTRIBUTE_SCENARIOS: dict[str, list[Any]] = {
    "Keyword": ["EU", "APAC"],
    "KeywordList": ["sql", "go", "rust"],
    "Int": [40, 8],
    "Datetime": [date(2028, 1, 1), date(2020, 1, 1)],
    "Double": [2.5, 1.0],
    "Bool": [True, False],
    "Text": ["contract", "CONTRACT signed", "nothing", "!!!"],
}
# Fields no case here can satisfy, and why (their predicate is index-only, so agreement is
# still checked: the index lists nothing and the predicate never says yes).
NEVER_LISTED = {"older_than_days": "StartTime cannot be back-dated: no case is a day old"}


def test_every_field_and_attribute_type_has_scenarios():
    assert {f.name for f in fields(CaseFilter)} == {f.name for f in FIELDS}
    assert len(FIELDS) == len({f.name for f in FIELDS})
    assert set(SCENARIOS) == {f.name for f in FIELDS}
    assert set(ATTRIBUTE_SCENARIOS) == set(ATTRIBUTE_KINDS) == set(ATTRIBUTES) == set(VALUES)


def test_the_list_form_parses_every_parameter_through_the_table():
    from cases.web.forms import CaseFilterForm

    assert set(PARAMS) <= set(CaseFilterForm.base_fields)
    form = CaseFilterForm(QueryDict("assignee=Unassigned&tag=+vip+&q=Refund&status=new"),
                          queues=[("general", "General")])
    assert form.is_valid(), form.errors
    assert form.case_filter() == CaseFilter(statuses=["new"], assignee=UNASSIGNED, tag="vip",
                                            words="Refund")
    bad = CaseFilterForm(QueryDict("assignee=a+b&tag=a'b&q=" + "+".join(f"w{i}" for i in range(9))),
                         queues=[("general", "General")])
    assert not bad.is_valid()
    assert set(bad.errors) == {"assignee", "tag", "q"}


@pytest.fixture(scope="module")
def universe(temporal):
    """Six real cases that differ in every field, settled in Visibility; (rows, today)."""
    present = run(gateway.namespace_attributes()).custom
    wanted = {n: k for k, n in ATTRIBUTES.items() if n not in present}
    if wanted:
        run(gateway.register_attributes(wanted))

    def usable() -> None:
        probe = " AND ".join(f"{n} IS NULL" for n in ATTRIBUTES.values())
        try:
            run(gateway.count_cases(probe))
        except gateway.TemporalUnavailable as err:
            raise AssertionError(err) from err

    eventually(usable, timeout=30, interval=0.3)

    def attrs(i: int) -> dict[str, AttributeValue]:
        return {ATTRIBUTES[k]: AttributeValue(k, v[i]) for k, v in VALUES.items()}

    specs = {
        "a": NewCase(title="Refund for invoice", queue="general", priority=1,
                     tags=["vip"], attributes=attrs(0)),
        "b": NewCase(title="Printer jam", queue="billing", priority=2, attributes=attrs(1)),
        "c": NewCase(title="Café menu", queue="general", priority=3),
        "hidden": NewCase(title="Refund elsewhere", queue="technical", priority=1,
                          tags=["vip"]),
        "stopped": NewCase(title="Stopped printer", queue="general", priority=4),
        "resolved": NewCase(title="Resolved refund", queue="billing", priority=2),
    }
    from cases.temporal.ids import new_case_id

    ids = {key: new_case_id() for key in specs}
    for key, spec in specs.items():
        run(gateway.start_case(ids[key], spec, "intake"))
    now = datetime.now(UTC)
    run(gateway.act(ids["a"], Claim(actor=WHO)))
    run(gateway.act(ids["a"], SetDue(actor=WHO, due_at=now + timedelta(hours=2))))
    run(gateway.act(ids["b"], Claim(actor="bob")))
    run(gateway.act(ids["b"], SetDue(actor="bob", due_at=now + timedelta(seconds=2))))
    run(gateway.act(ids["c"], Close(actor="sam")))
    run(gateway.act(ids["resolved"], Resolve(actor="sam", resolution="done")))
    run(temporal.client.get_workflow_handle(ids["stopped"]).terminate("filter test"))

    every = f"{BASE} AND WorkflowId IN ({', '.join(quote(i) for i in ids.values())})"

    def settled() -> list[gateway.CaseRow]:
        rows = {r.case_id: r for r in run(gateway.list_cases(every, 20)).rows}
        assert set(rows) == set(ids.values())
        assert rows[ids["a"]].assignee == WHO
        assert rows[ids["b"]].sla_breached  # its due time passed: the workflow's timer
        assert rows[ids["c"]].execution_status == "completed"
        assert rows[ids["stopped"]].execution_status == "terminated"
        assert rows[ids["resolved"]].status == "resolved"
        return list(rows.values())

    rows = eventually(settled, timeout=30, interval=0.3)
    return rows, ids, rows[0].started_at.astimezone(UTC).date()


def _judge(case_filter: CaseFilter, index_only: bool, rows: list[gateway.CaseRow]
           ) -> tuple[set[str], set[str]]:
    """Ask Visibility and the predicate; they must agree on every row. (listed, left out)"""
    ids = ", ".join(quote(r.case_id) for r in rows)
    query = f"{case_filter.query(WHO, VISIBLE)} AND WorkflowId IN ({ids})"
    listed = {r.case_id for r in run(gateway.list_cases(query, 20)).rows}
    for row in rows:
        verdict = case_filter.matches(row, me=WHO, visible_queues=VISIBLE)
        if verdict is None:
            assert index_only, (case_filter, row, "a maybe from a field the index need not judge")
        else:
            assert verdict == (row.case_id in listed), (case_filter, row, verdict)
    return listed, {r.case_id for r in rows} - listed


def _values(scenario: Any, today: Any) -> list[Any]:
    return scenario(today) if callable(scenario) else scenario


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_clause_and_predicate_agree_on_real_visibility(field: Field, universe):
    rows, ids, today = universe
    if field.name == "attributes":
        filters = [{ATTRIBUTES[kind]: (kind, value)}
                   for kind in ATTRIBUTE_KINDS
                   for value in _values(ATTRIBUTE_SCENARIOS[kind], today)]
        # More than one attribute at once: the verdicts combine as the clauses do (AND).
        filters.append({ATTRIBUTES["Keyword"]: ("Keyword", "EU"),
                        ATTRIBUTES["Int"]: ("Int", 7)})
        filters.append({ATTRIBUTES["Text"]: ("Text", "contract"),
                        ATTRIBUTES["Bool"]: ("Bool", False)})
    else:
        filters = _values(SCENARIOS[field.name], today)
    listed_somewhere, left_out_somewhere = set(), set()
    for value in filters:
        listed, left_out = _judge(CaseFilter(**{field.name: value}),
                                  field.index_only(value), rows)
        listed_somewhere |= listed
        left_out_somewhere |= left_out
    if field.name not in NEVER_LISTED:
        assert listed_somewhere, "no scenario lists a case: the agreement proves little"
    assert left_out_somewhere, "no scenario leaves a case out"
    # The access rule always holds, whatever the field says.
    assert ids["hidden"] not in listed_somewhere


def test_an_index_only_field_does_not_hide_a_certain_mismatch(universe):
    rows, ids, _ = universe
    a = next(r for r in rows if r.case_id == ids["a"])
    assert CaseFilter(words="refund").matches(a, me=WHO) is None
    assert CaseFilter(words="refund", queues=["billing"]).matches(a, me=WHO) is False
    assert CaseFilter(words="refund", queues=["general"]).matches(a, me=WHO) is None
    assert CaseFilter(words="refund", queues=["general"]).matches(
        a, me=WHO, visible_queues=["billing"]) is False
