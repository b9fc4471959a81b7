"""The admin's search-attribute registry, against the session's real Temporal dev server.

The server is shared by every test of the session, so each test uses names of its own, works
out its expectations from the live namespace, and removes what it registered.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.test import Client

from cases import temporal as gateway
from cases.admin import CaseAttributeForm
from cases.config import attributes
from cases.config.attributes import (
    CORE_ATTRIBUTES,
    SQL_LIMITS,
    check_capacity,
    remaining,
    validate_name,
)
from cases.models import CaseAttribute
from workers.search_attributes import CORE_KEYS

from .conftest import TemporalHarness, logged_in, run

URL = "/admin/cases/caseattribute/"


# --- helpers -----------------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def row(name: str, type_name: str, **fields: Any) -> CaseAttribute:
    """A registry row saved directly (bypassing the admin form, like a data migration could)."""
    fields.setdefault("label", name)
    return CaseAttribute.objects.create(name=name, type=type_name, **fields)


def custom() -> dict[str, str]:
    return run(gateway.namespace_attributes()).custom


def act(client: Client, action: str, rows: list[CaseAttribute], **extra: Any) -> Any:
    """Run an admin action and follow its redirect, so its messages are shown (and used up)
    on the page that follows, as in a browser."""
    return client.post(URL, {"action": action, "_selected_action": [r.pk for r in rows],
                             **extra}, follow=True)


def redirected(response: Any) -> bool:
    return bool(response.redirect_chain) and response.redirect_chain[-1][1] == 302


def texts(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def errors(response: Any) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request) if m.level_tag == "error"]


@pytest.fixture
def staff(admin_user: User) -> Client:
    return logged_in(admin_user)


@pytest.fixture
def cleanup(temporal: TemporalHarness) -> Iterator[list[str]]:
    """Names to remove from the shared namespace after the test, whatever happened."""
    names: list[str] = []
    yield names
    present = [n for n in names if n in custom()]
    if present:
        run(gateway.remove_attributes(present))


# --- pure rules --------------------------------------------------------------------------------


def test_core_attributes_match_the_workers_core_keys() -> None:
    assert {k.name: k._metadata_type for k in CORE_KEYS} == CORE_ATTRIBUTES


@pytest.mark.parametrize("name", [
    "Region", "region", "Region_2", "CaseRegion", "Temp", "a" * 64, "X",
])
def test_good_names(name: str) -> None:
    validate_name(name)


@pytest.mark.parametrize("name, words", [
    ("", "Enter a name"),
    ("1Region", "start with a letter"),
    ("_Region", "start with a letter"),
    ("Ärger", "start with a letter"),
    ("Sales Region", "space"),
    ("sales-region", "'-'"),
    ("Régión", "'é'"),
    ("a" * 65, "at most 64"),
    ("TemporalRegion", "reserved by Temporal"),
    ("temporalregion", "reserved by Temporal"),
    ("WorkflowId", "system attribute WorkflowId"),
    ("workflowid", "system attribute WorkflowId"),
    ("ExecutionStatus", "system attribute"),
    ("Memo", "system attribute"),
    ("CaseStatus", "core case attribute CaseStatus"),
    ("casestatus", "core case attribute CaseStatus"),
    ("CASETAGS", "core case attribute CaseTags"),
])
def test_bad_names_are_refused_with_a_reason(name: str, words: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_name(name)
    assert words in " ".join(info.value.messages)


def test_extra_reserved_names_are_refused() -> None:
    with pytest.raises(ValidationError, match="system attribute NewSystemThing"):
        validate_name("newsystemthing", also_reserved=["NewSystemThing"])


def test_every_live_system_attribute_is_reserved(temporal: TemporalHarness) -> None:
    system = run(gateway.namespace_attributes()).system
    assert "WorkflowId" in system
    for name in system:
        with pytest.raises(ValidationError):
            validate_name(name)
    # The static list covers what the server reports (the prefix covers Temporal*), so the
    # form, which does not ask Temporal, refuses the same names as the Register action.
    unprefixed = {n for n in system if not n.startswith(attributes.RESERVED_PREFIX)}
    assert unprefixed - attributes.RESERVED_NAMES == set()


def test_remaining_counts_core_and_custom_attributes() -> None:
    free = remaining({**CORE_ATTRIBUTES, "Region": "Keyword", "Score": "Double"})
    assert free == {"Keyword": 6, "Text": 2, "Int": 2, "Double": 2, "Bool": 1,
                    "Datetime": 1, "KeywordList": 2}
    assert remaining({}) == SQL_LIMITS


def test_check_capacity_explains_each_type_that_would_overflow() -> None:
    present = {**CORE_ATTRIBUTES, "A": "Datetime"}  # Datetime: 3 of 3 used
    assert check_capacity({"Region": "Keyword"}, present) == []
    assert check_capacity({"A": "Datetime"}, present) == []  # already there: no new slot
    reasons = check_capacity({"Due2": "Datetime", "S1": "Double", "S2": "Double",
                              "S3": "Double", "S4": "Double"}, present)
    assert len(reasons) == 2
    assert "Cannot register 1 Datetime attribute (Due2): 0 of 3 Datetime slots are left" \
        in reasons[0]
    assert "Cannot register 4 Double attributes (S1, S2, S3, S4): only 3 of 3" in reasons[1]


# --- the admin form ----------------------------------------------------------------------------


def form(**data: Any) -> CaseAttributeForm:
    base = {"name": "Region", "type": "Keyword", "label": "Region", "help_text": "",
            "choices": "", "filterable": True, "agent_editable": False}
    return CaseAttributeForm(data={**base, **data})


@pytest.mark.django_db
def test_form_validates_the_name() -> None:
    assert form().is_valid()
    f = form(name="Sales Region")
    assert not f.is_valid()
    assert "space" in f.errors["name"][0]
    f = form(name="CaseQueue")
    assert not f.is_valid()
    assert "core case attribute" in f.errors["name"][0]
    f = form(name="TemporalThing")
    assert not f.is_valid()
    assert "reserved by Temporal" in f.errors["name"][0]


@pytest.mark.django_db
def test_form_refuses_a_name_differing_only_in_case() -> None:
    row("Region", "Keyword")
    f = form(name="region")
    assert not f.is_valid()
    assert "already has" in f.errors["name"][0]


@pytest.mark.django_db
def test_choices_only_for_keyword() -> None:
    assert form(choices="north, south").is_valid()
    f = form(type="Int", choices="1, 2")
    assert not f.is_valid()
    assert "only for Keyword" in f.errors["choices"][0]


def test_admin_add_page_shows_the_name_error(staff: Client) -> None:
    response = staff.post(URL + "add/", {
        "name": "WorkflowId", "type": "Keyword", "label": "Workflow", "filterable": "on"})
    assert response.status_code == 200
    assert "system attribute WorkflowId" in response.content.decode()
    assert not CaseAttribute.objects.filter(name="WorkflowId").exists()


# --- register ------------------------------------------------------------------------------


def test_register_adds_the_search_attribute(staff: Client, cleanup: list[str]) -> None:
    a, b = row(unique("Region"), "Keyword"), row(unique("Score"), "KeywordList")
    cleanup += [a.name, b.name]

    response = act(staff, "register_in_temporal", [a, b])

    assert redirected(response)
    assert any("Registered in Temporal" in t and a.name in t and b.name in t
               for t in texts(response))
    assert errors(response) == []
    found = custom()
    assert found[a.name] == "Keyword"
    assert found[b.name] == "KeywordList"
    for r in (a, b):
        r.refresh_from_db()
        assert r.state == CaseAttribute.REGISTERED
        assert r.temporal_type == r.type
        assert r.checked is not None


def test_registering_again_is_fine(staff: Client, cleanup: list[str]) -> None:
    a = row(unique("Region"), "Keyword")
    b = row(unique("Segment"), "Keyword")  # registered outside the admin
    cleanup += [a.name, b.name]
    run(gateway.register_attributes({b.name: "Keyword"}))
    assert redirected(act(staff, "register_in_temporal", [a]))

    response = act(staff, "register_in_temporal", [a, b])

    assert errors(response) == []
    assert any("Already registered" in t and a.name in t and b.name in t
               for t in texts(response))
    for r in (a, b):
        r.refresh_from_db()
        assert r.state == CaseAttribute.REGISTERED
    assert custom()[a.name] == "Keyword"


def test_register_refuses_a_name_temporal_has_with_another_type(
    staff: Client, cleanup: list[str]
) -> None:
    a = row(unique("Weight"), "Double")
    cleanup.append(a.name)
    run(gateway.register_attributes({a.name: "Int"}))

    response = act(staff, "register_in_temporal", [a])

    assert any(f"{a.name} already exists in Temporal as Int, not Double" in t
               for t in errors(response))
    assert custom()[a.name] == "Int"
    a.refresh_from_db()
    assert (a.state, a.temporal_type) == (CaseAttribute.MISMATCH, "Int")


def test_register_refuses_an_invalid_name_without_calling_temporal(
    staff: Client, cleanup: list[str]
) -> None:
    bad = row(unique("bad-name-"), "Keyword")  # the dev server itself would accept it
    cleanup.append(bad.name)

    response = act(staff, "register_in_temporal", [bad])

    assert any(bad.name in t and "letters, digits and underscores" in t
               for t in errors(response))
    assert bad.name not in custom()
    bad.refresh_from_db()
    assert bad.state == CaseAttribute.UNKNOWN


def test_temporal_refusal_becomes_a_readable_message(
    staff: Client, cleanup: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Skip our own name check so the real server's refusal is what the admin shows.
    monkeypatch.setattr(attributes, "validate_name", lambda name, also_reserved=(): None)
    name = unique("TemporalThing")
    r = row(name, "Keyword")
    cleanup.append(name)

    response = act(staff, "register_in_temporal", [r])

    assert any(t.startswith("Temporal refused:") and "reserved" in t for t in errors(response))
    assert name not in custom()


def test_register_refuses_what_would_exceed_the_limit(
    staff: Client, cleanup: list[str]
) -> None:
    free = remaining(custom())["Double"]
    rows = [row(unique(f"Measure{i}_"), "Double") for i in range(free + 1)]
    cleanup += [r.name for r in rows]

    # All at once: one too many, so nothing is registered.
    response = act(staff, "register_in_temporal", rows)
    refusals = errors(response)
    assert any(f"Cannot register {free + 1} Double attribute" in t for t in refusals)
    assert any("of 3 Double slots" in t for t in refusals)
    assert not {r.name for r in rows} & set(custom())

    # Fill what is left, then the next one is refused with the reason and not registered.
    if free:
        response = act(staff, "register_in_temporal", rows[:free])
        assert errors(response) == []
        assert all(custom().get(r.name) == "Double" for r in rows[:free])
    assert remaining(custom())["Double"] == 0
    page = staff.get(URL)
    assert page.context["slots"][3] == {"type": "Double", "used": 3, "core": 0, "limit": 3,
                                        "remaining": 0}

    last = rows[-1]
    response = act(staff, "register_in_temporal", [last])
    assert any("0 of 3 Double slots are left on SQL visibility" in t
               for t in errors(response))
    assert last.name not in custom()
    last.refresh_from_db()
    assert last.state != CaseAttribute.REGISTERED


# --- sync --------------------------------------------------------------------------------------


def test_sync_marks_registered_missing_and_mismatch_and_lists_extras(
    staff: Client, cleanup: list[str]
) -> None:
    registered = row(unique("Region"), "Keyword")
    missing = row(unique("Channel"), "Keyword")
    mismatch = row(unique("Weight"), "Double")
    extra = unique("Orphan")
    cleanup += [registered.name, mismatch.name, extra]
    run(gateway.register_attributes({registered.name: "Keyword", mismatch.name: "Int",
                                     extra: "Bool"}))

    response = act(staff, "sync_from_temporal", [registered, missing, mismatch])

    assert redirected(response)
    for r in (registered, missing, mismatch):
        r.refresh_from_db()
        assert r.checked is not None
    assert (registered.state, registered.temporal_type) == (CaseAttribute.REGISTERED, "Keyword")
    assert (missing.state, missing.temporal_type) == (CaseAttribute.MISSING, "")
    assert (mismatch.state, mismatch.temporal_type) == (CaseAttribute.MISMATCH, "Int")
    all_text = texts(response)
    assert any(f"Type mismatch: {mismatch.name} is Int in Temporal but Double here" in t
               for t in all_text)
    assert any(f"Missing in Temporal: {missing.name}" in t for t in all_text)
    extras = [t for t in all_text if t.startswith("In Temporal but not in the registry")]
    assert len(extras) == 1
    assert f"{extra} (Bool)" in extras[0]
    assert registered.name not in extras[0]
    assert "CaseStatus" not in extras[0]  # core attributes are not extras

    page = staff.get(URL).content.decode()
    assert "Type mismatch (Int in Temporal)" in page
    assert "Missing in Temporal" in page


# --- remove ------------------------------------------------------------------------------------


def test_remove_asks_for_confirmation_then_removes(staff: Client, cleanup: list[str]) -> None:
    a = row(unique("Region"), "Keyword")
    never = row(unique("Channel"), "Keyword")
    cleanup.append(a.name)
    act(staff, "register_in_temporal", [a])
    assert a.name in custom()

    confirm = act(staff, "remove_from_temporal", [a, never])

    assert confirm.status_code == 200 and not confirm.redirect_chain
    assert "admin/cases/caseattribute/remove_confirmation.html" in [
        t.name for t in confirm.templates]
    page = confirm.content.decode()
    assert a.name in page and never.name in page
    assert 'name="post" value="yes"' in page
    assert 'name="action" value="remove_from_temporal"' in page
    assert f'name="_selected_action" value="{a.pk}"' in page
    assert a.name in custom()  # nothing happens before the confirmation

    response = act(staff, "remove_from_temporal", [a, never], post="yes")

    assert redirected(response)
    assert a.name not in custom()
    assert any(f"Removed from Temporal: {a.name}" in t for t in texts(response))
    assert any(f"nothing to remove: {never.name}" in t for t in texts(response))
    for r in (a, never):
        r.refresh_from_db()
        assert r.state == CaseAttribute.MISSING


def test_remove_refuses_core_attributes(staff: Client, temporal: TemporalHarness) -> None:
    core = row("CaseStatus", "Keyword")  # only possible around the form, but still refused
    try:
        response = act(staff, "remove_from_temporal", [core])
        assert redirected(response)  # no confirmation page
        assert any("Core case attributes are never removed: CaseStatus" in t
                   for t in errors(response))
        response = act(staff, "remove_from_temporal", [core], post="yes")
        assert any("never removed" in t for t in errors(response))
        assert custom()["CaseStatus"] == "Keyword"
    finally:
        # Should the refusal ever break, put the core attributes back for the other tests.
        run(gateway.setup_namespace(settings.TEMPORAL_RETENTION_DAYS))


def test_remove_confirmation_leaves_core_rows_out(
    staff: Client, cleanup: list[str]
) -> None:
    core = row("CaseQueue", "Keyword")
    a = row(unique("Region"), "Keyword")
    cleanup.append(a.name)
    run(gateway.register_attributes({a.name: "Keyword"}))

    confirm = act(staff, "remove_from_temporal", [core, a])

    page = confirm.content.decode()
    assert confirm.status_code == 200 and not confirm.redirect_chain
    assert f'name="_selected_action" value="{a.pk}"' in page
    assert f'name="_selected_action" value="{core.pk}"' not in page
    assert "Not removed (core case attributes): CaseQueue" in page


# --- Temporal down and the slots table -------------------------------------------------------


def test_temporal_down_gives_readable_errors(staff: Client, temporal: TemporalHarness) -> None:
    a = row(unique("Region"), "Keyword")
    address = settings.TEMPORAL_ADDRESS
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"
    gateway.reset_client()
    try:
        for action, extra in (("register_in_temporal", {}), ("sync_from_temporal", {}),
                              ("remove_from_temporal", {"post": "yes"})):
            response = act(staff, action, [a], **extra)
            assert redirected(response), action
            assert any("Cannot reach Temporal at 127.0.0.1:1" in t for t in errors(response)), \
                action
        a.refresh_from_db()
        assert a.state == CaseAttribute.UNKNOWN

        page = staff.get(URL)
        assert page.status_code == 200
        html = page.content.decode()
        assert "Temporal is unreachable, so free slots are unknown" in html
        assert a.name in html  # the registry itself still lists
    finally:
        settings.TEMPORAL_ADDRESS = address
        gateway.reset_client()
    assert a.name not in custom()


def test_changelist_shows_remaining_slots(staff: Client, temporal: TemporalHarness) -> None:
    page = staff.get(URL)

    assert page.status_code == 200
    live = custom()
    free = remaining(live)
    slots = {s["type"]: s for s in page.context["slots"]}
    assert list(slots) == list(SQL_LIMITS)
    for type_name, limit in SQL_LIMITS.items():
        assert slots[type_name]["limit"] == limit
        assert slots[type_name]["remaining"] == free[type_name]
        assert slots[type_name]["used"] == limit - free[type_name]
    assert slots["Keyword"]["core"] == 3
    html = page.content.decode()
    assert 'id="attribute-slots"' in html
    assert '<tr class="slot-KeywordList">' in html
    assert "Custom search attribute slots in Temporal" in html
