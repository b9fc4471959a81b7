"""Admin-registered attributes flow through forms, the workflow, filters, columns and the
dashboard — and removing one breaks neither a page nor a running case."""

from __future__ import annotations

import re

import pytest

from cases import temporal as gateway
from cases.models import CaseAttribute
from workers.model import AddComment, AttributeValue, Claim, SetAttributes

from .conftest import eventually, run, timeline

ATTRS = [
    # name, type, label, choices, agent_editable
    ("CxRegion", "Keyword", "Region", "EU,US,APAC", True),
    ("CxSeats", "Int", "Seats", "", False),
    ("CxRenewal", "Datetime", "Renewal", "", False),
    ("CxSkills", "KeywordList", "Skills", "", True),
]


@pytest.fixture
def registered(temporal, db):
    present = run(gateway.namespace_attributes()).custom
    wanted = {n: t for n, t, *_ in ATTRS if n not in present}
    if wanted:
        run(gateway.register_attributes(wanted))
    for name, kind, label, choices, editable in ATTRS:
        CaseAttribute.objects.create(name=name, type=kind, label=label, choices=choices,
                                     agent_editable=editable, state=CaseAttribute.REGISTERED)

    def usable() -> None:
        try:
            run(gateway.count_cases("CxRegion = 'EU' AND CxSeats = 1 AND CxSkills = 'x'"))
        except gateway.TemporalUnavailable as err:
            raise AssertionError(err) from err

    eventually(usable, timeout=30, interval=0.3)
    return ATTRS


def _new_case(client, **extra: str) -> str:
    page = client.get("/cases/new/").content.decode()
    case_id = re.search(r'name="case_id" value="(case-\w+)"', page).group(1)
    data = {"case_id": case_id, "title": "Renewal question", "queue": "technical",
            "priority": "3", **extra}
    response = client.post("/cases/new/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    return case_id


def test_fields_flow_from_form_to_workflow_to_filters(registered, supervisor_client):
    page = supervisor_client.get("/cases/new/").content.decode()
    assert 'name="attr_CxRegion"' in page and '<option value="APAC">' in page
    case_id = _new_case(supervisor_client, attr_CxRegion="EU", attr_CxSeats="40",
                        attr_CxRenewal="2027-03-01T09:00", attr_CxSkills="sql, python")
    state = run(gateway.get_case(case_id))
    assert state.attributes["CxRegion"] == AttributeValue("Keyword", "EU")
    assert state.attributes["CxSeats"] == AttributeValue("Int", 40)
    assert state.attributes["CxSkills"].value == ["sql", "python"]
    assert state.attributes["CxRenewal"].value.startswith("2027-03-01T09:00")

    def filtered() -> None:
        for params in ("a_CxRegion=EU", "a_CxSeats=40", "a_CxSkills=python",
                       "a_CxRenewal=2027-03-02"):
            assert case_id in supervisor_client.get(f"/cases/?{params}").content.decode(), params
        assert case_id not in supervisor_client.get("/cases/?a_CxRegion=US").content.decode()
        assert case_id not in supervisor_client.get(
            "/cases/?a_CxRenewal=2027-03-01").content.decode()

    eventually(filtered)
    listed = supervisor_client.get("/cases/?a_CxRegion=EU&cols=CxSeats&cols=CxSkills")
    content = listed.content.decode()
    assert "<th>Seats</th>" in content and "<th>Skills</th>" in content
    row = content.split(f'id="row-{case_id}"')[1].split("</tr>")[0]
    assert '<td class="attr">40</td>' in row and '<td class="attr">sql, python</td>' in row
    detail = supervisor_client.get(f"/cases/{case_id}/").content.decode()
    assert "<dt>Region</dt><dd>EU</dd>" in detail


def test_case_page_sets_attributes_through_an_update(registered, supervisor_client,
                                                     open_case):
    case_id = open_case()
    response = supervisor_client.post(
        f"/cases/{case_id}/set_attributes/",
        {"set_attributes-version": "1", "set_attributes-attr_CxRegion": "US",
         "set_attributes-attr_CxSeats": "7"}, HTTP_HX_REQUEST="true")
    assert "Save attributes: done." in response.content.decode()
    state = run(gateway.get_case(case_id))
    assert state.attributes["CxRegion"].value == "US" and state.attributes["CxSeats"].value == 7
    last = timeline(case_id)[-1]
    assert last.text == "sam set CxRegion = US; CxSeats = 7"
    assert last.state == state and not last.diverged  # the projection applies the same rule
    eventually(lambda: _in(case_id, supervisor_client.get("/cases/?a_CxSeats=7")))
    # Clearing a field unsets the attribute, in the state and in Visibility.
    supervisor_client.post(
        f"/cases/{case_id}/set_attributes/",
        {"set_attributes-attr_CxRegion": "US", "set_attributes-attr_CxSeats": ""},
        HTTP_HX_REQUEST="true")
    assert "CxSeats" not in run(gateway.get_case(case_id)).attributes
    eventually(lambda: _not_in(case_id, supervisor_client.get("/cases/?a_CxSeats=7")))


def _in(case_id: str, response) -> None:
    assert case_id in response.content.decode()


def _not_in(case_id: str, response) -> None:
    assert case_id not in response.content.decode()


def test_invalid_values_are_inline_errors(registered, supervisor_client, open_case):
    case_id = open_case()
    response = supervisor_client.post(
        f"/cases/{case_id}/set_attributes/",
        {"set_attributes-attr_CxSeats": "many", "set_attributes-attr_CxSkills": 'a"b'},
        HTTP_HX_REQUEST="true")
    content = response.content.decode()
    assert "Enter a whole number." in content
    response = supervisor_client.post(
        f"/cases/{case_id}/set_attributes/", {"set_attributes-attr_CxSkills": 'a"b'},
        HTTP_HX_REQUEST="true")
    assert "values are short text without quotes" in response.content.decode()
    assert run(gateway.get_case(case_id)).attributes == {}


def test_agents_edit_only_agent_editable_attributes_on_their_cases(registered, agent,
                                                                   agent_client, open_case):
    case_id = open_case(queue="technical")
    page = agent_client.get(f"/cases/{case_id}/").content.decode()
    assert "set_attributes-attr_CxRegion" not in page  # not theirs yet
    run(gateway.act(case_id, Claim(actor="alice")))
    page = agent_client.get(f"/cases/{case_id}/").content.decode()
    assert "set_attributes-attr_CxRegion" in page and "set_attributes-attr_CxSeats" not in page
    response = agent_client.post(f"/cases/{case_id}/set_attributes/",
                                 {"set_attributes-attr_CxRegion": "APAC"}, HTTP_HX_REQUEST="true")
    assert "Save attributes: done." in response.content.decode()
    # The workflow itself refuses what the page would not offer.
    from cases.config.access import Access

    authority = Access("alice", "agent", ("technical",), ("CxRegion", "CxSkills")).authority
    with pytest.raises(gateway.ActionRefused, match="Only supervisors can set those"):
        run(gateway.act(case_id, SetAttributes(
            actor="alice", authority=authority,
            values={"CxSeats": AttributeValue("Int", 3)})))


def test_dashboard_breaks_down_keyword_attributes_with_choices(registered, supervisor_client):
    case_id = _new_case(supervisor_client, attr_CxRegion="APAC", title="Dash region case")
    assert case_id

    def broken_down() -> None:
        content = supervisor_client.get("/dashboard/?q=dash+region").content.decode()
        assert "Open by Region" in content
        match = re.search(r'href="([^"]+)" class="bar[^"]*">\s*<title>APAC: (\d+)</title>',
                          content)
        assert match and match.group(2) == "1"
        assert "a_CxRegion=APAC" in match.group(1)

    eventually(broken_down)


def test_removing_an_attribute_breaks_nothing(temporal, db, supervisor_client, open_case):
    name = "CxTransient"
    if name not in run(gateway.namespace_attributes()).custom:
        run(gateway.register_attributes({name: "Keyword"}))
    attr = CaseAttribute.objects.create(name=name, type="Keyword", label="Transient",
                                        state=CaseAttribute.REGISTERED)
    case_id = open_case()

    def set_value() -> None:
        try:
            run(gateway.act(case_id, SetAttributes(
                actor="sam", values={name: AttributeValue("Keyword", "soon gone")})))
        except gateway.GatewayError as err:
            raise AssertionError(err) from err

    eventually(set_value, timeout=30, interval=0.3)
    run(gateway.remove_attributes([name]))
    attr.state = CaseAttribute.MISSING
    attr.save()
    # Pages still render; the value stays visible as retired; the form no longer offers it.
    detail = supervisor_client.get(f"/cases/{case_id}/").content.decode()
    assert "soon gone" in detail and "custom-attr retired" in detail
    assert "attr_CxTransient" not in detail
    assert supervisor_client.get("/cases/?a_CxTransient=x&cols=CxTransient").status_code == 200
    assert supervisor_client.get("/dashboard/").status_code == 200
    # The running case keeps working: later updates do not re-upsert the removed attribute.
    state = run(gateway.act(case_id, AddComment(actor="sam", body="still alive")))
    assert state.comments[-1].body == "still alive"
    assert run(gateway.get_case(case_id)).attributes[name].value == "soon gone"


def test_intake_api_sets_registered_attributes(registered, supervisor):
    import json

    from django.test import Client

    from cases.models import ApiToken

    key = ApiToken.issue(supervisor, "crm")[1]

    def post(attributes: dict[str, object]):
        return Client().post("/api/cases/", json.dumps(
            {"title": "From the CRM", "queue": "billing", "attributes": attributes}),
            content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")

    response = post({"CxRegion": "US", "CxSeats": 12, "CxSkills": ["go", "sql"]})
    assert response.status_code == 201, response.content
    state = run(gateway.get_case(response.json()["id"]))
    assert state.attributes["CxRegion"].value == "US"
    assert state.attributes["CxSeats"].value == 12
    assert state.attributes["CxSkills"].value == ["go", "sql"]
    bad = post({"CxSeats": "lots"})
    assert bad.status_code == 400 and "attributes.CxSeats" in bad.json()["fields"]
    unknown = post({"NoSuchThing": "x"})
    assert unknown.status_code == 400
    assert "Not a registered attribute: NoSuchThing." in unknown.json()["fields"]["attributes"]
