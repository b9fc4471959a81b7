"""Macros (issue 25) against the real dev server: one Update, all or nothing, per queue,
their templates checked when saved, their uses counted from the case export."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime

import pytest
from django.core.exceptions import ValidationError
from temporalio.api.enums.v1 import EventType

from cases import temporal as gateway
from cases.analytics.macro_uses import macro_uses
from cases.analytics.schema import EventFact
from cases.analytics.store import Store
from cases.models import CaseAttribute, Macro, Queue
from cases.web.macros import MyMacroForm
from workers.model import Claim

from .conftest import TEMPORAL_BIN, _persona, eventually, logged_in, run
from .test_analytics_store import case as case_facts

UPDATE_EVENTS = (EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
                 EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED)


def _updates(temporal, case_id: str) -> list[int]:
    """The Update events in the case's history (accepted and completed)."""
    handle = temporal.client.get_workflow_handle(case_id)

    async def fetch() -> list[int]:
        return [e.event_type async for e in handle.fetch_history_events()
                if e.event_type in UPDATE_EVENTS]

    return run(fetch())


def _macro(**fields) -> Macro:
    macro = Macro(**fields)
    macro.full_clean()
    macro.save()
    return macro


@pytest.fixture
def region(temporal, db):
    # A real search attribute: the macro's attribute change upserts it as set_attributes does.
    if "MacroRegion" not in run(gateway.namespace_attributes()).custom:
        run(gateway.register_attributes({"MacroRegion": "Keyword"}))

        def usable() -> None:
            try:
                run(gateway.count_cases("MacroRegion = 'EU'"))
            except gateway.TemporalUnavailable as err:
                raise AssertionError(err) from err

        eventually(usable, timeout=30, interval=0.2)
    return CaseAttribute.objects.create(name="MacroRegion", type="Keyword",
                                        state=CaseAttribute.REGISTERED, agent_editable=True)


def test_a_macro_with_variables_and_three_changes_is_one_update(temporal, agent, open_case,
                                                                region):
    agent.first_name = "Alice"
    agent.save()
    technical = Queue.objects.get(slug="technical")
    macro = _macro(name="Waiting on the customer", queue=technical,
                   body="Hello {{ requester.name }}, about {{ case.id }} ({{ attr.MacroRegion }}): "
                        "could you send a photo? {{ agent.first_name }}",
                   status="waiting", priority=1, add_tags="photo needs-info",
                   attributes={"MacroRegion": "EU"})
    case_id = open_case(requester_name="Grace")
    run(gateway.act(case_id, Claim(actor="alice")))
    before = run(gateway.get_case(case_id))
    updates_before = len(_updates(temporal, case_id))
    client = logged_in(agent)
    page = client.get(f"/cases/{case_id}/").content.decode()
    assert "Waiting on the customer" in page and 'role="listbox"' in page
    preview = client.get(f"/cases/{case_id}/macros/{macro.pk}/preview/").content.decode()
    assert f"Hello Grace, about {case_id} ():" in preview and "Alice" in preview
    response = client.post(f"/cases/{case_id}/macros/apply/", {
        "macro": macro.pk, "version": before.version, "key": "k1"}, HTTP_HX_REQUEST="true")
    assert "Applied the macro Waiting on the customer." in response.content.decode()
    after = run(gateway.get_case(case_id))
    # One Update: accepted and completed once, one version on.
    assert len(_updates(temporal, case_id)) - updates_before == 2
    assert after.version == before.version + 1
    assert after.status == "waiting" and after.priority == 1
    assert {"photo", "needs-info"} <= set(after.tags)
    assert after.attributes["MacroRegion"].value == "EU"
    # ...and the list finds it by the attribute the macro set (its search attribute).
    eventually(lambda: run(gateway.count_cases(
        f"MacroRegion = 'EU' AND WorkflowId = '{case_id}'")) == 1 or None, timeout=20)
    # Variables rendered for this case and person, as of before the macro's changes.
    assert after.comments[-1].body == (f"Hello Grace, about {case_id} (): could you send a "
                                       "photo? Alice")
    entries = run(gateway.case_history(case_id)).projection.entries
    assert [e.text for e in entries if e.kind == "macro"] == [
        "alice applied the macro Waiting on the customer"]


def test_a_refused_macro_changes_nothing(temporal, agent, open_case):
    macro = _macro(name="Close it", body="Closing now.", status="closed")
    case_id = open_case()
    run(gateway.act(case_id, Claim(actor="bob")))
    before = run(gateway.get_case(case_id))
    client = logged_in(agent)
    response = client.post(f"/cases/{case_id}/macros/apply/", {
        "macro": macro.pk, "version": before.version, "key": "k2",
        "typed": "Half a reply"}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    # Refused whole, in the part's own words, with the typed text back in the comment box.
    assert "Close it: This case is held by bob; only they or a supervisor can do that." in page
    assert "Half a reply</textarea>" in page
    after = run(gateway.get_case(case_id))
    assert after.version == before.version and after.status == before.status
    assert "Closing now." not in [c.body for c in after.comments]


def test_what_was_typed_beside_an_applied_macro_stays_in_the_comment_box(temporal, agent,
                                                                         open_case):
    # The picker takes the "/word" out of the box; the rest of what was typed is the
    # person's and is not sent with the macro: it must not be lost when the macro applies.
    macro = _macro(name="Tag it", body="", add_tags="seen")
    case_id = open_case()
    run(gateway.act(case_id, Claim(actor="alice")))
    before = run(gateway.get_case(case_id))
    response = logged_in(agent).post(f"/cases/{case_id}/macros/apply/", {
        "macro": macro.pk, "version": before.version, "key": "k3",
        "typed": "Still typing this"}, HTTP_HX_REQUEST="true")
    page = response.content.decode()
    assert "Applied the macro Tag it." in page
    assert "Still typing this</textarea>" in page
    assert "seen" in run(gateway.get_case(case_id)).tags


def test_a_queues_macros_are_not_offered_in_another_queues_case(temporal, agent, open_case):
    billing = Queue.objects.get(slug="billing")
    general = Queue.objects.get(slug="general")
    refund = _macro(name="Refund issued", queue=billing, body="Refunded.")
    _macro(name="General greeting", queue=general, body="Hi.")
    everywhere = _macro(name="Thanks everywhere", body="Thanks.")
    mine = _macro(name="My own sign-off", owner=agent, body="Alice")
    _macro(name="Bobs own", owner=_persona("bob", "Agent", queues=("technical",)), body="B")
    case_id = open_case(queue="technical")
    client = logged_in(agent)
    page = client.get(f"/cases/{case_id}/").content.decode()
    assert "Thanks everywhere" in page and "My own sign-off" in page
    assert "Refund issued" not in page and "General greeting" not in page
    assert "Bobs own" not in page
    assert client.get(f"/cases/{case_id}/macros/{refund.pk}/preview/").status_code == 404
    assert client.post(f"/cases/{case_id}/macros/apply/",
                       {"macro": refund.pk, "key": "k3"}).status_code == 404
    assert client.get(f"/cases/{case_id}/macros/{everywhere.pk}/preview/").status_code == 200
    assert mine.pk
    assert run(gateway.get_case(case_id)).version == 1


@pytest.mark.parametrize(("body", "said"), [
    ("Your password: {{ requester.password }}", "Unknown variable {{ requester.password }}"),
    ("{% load static %}hi", "The reply cannot use that"),
    ("{% include 'base.html' %}", "The reply cannot use that"),
    ("{{ case.id|safe }}", "The reply cannot use that"),
    ("{{ case.title|default:requester.secret }}", "Unknown variable {{ requester.secret }}"),
    ("{{ attr.Nope }}", "Unknown variable {{ attr.Nope }}"),
])
def test_saving_a_macro_with_an_unknown_variable_or_a_forbidden_tag_is_refused(db, body, said):
    with pytest.raises(ValidationError) as err:
        Macro(name="Bad", body=body).full_clean()
    assert said in " ".join(err.value.message_dict["body"])
    # The personal page's form says the same, naming the field.
    form = MyMacroForm({"name": "Bad", "body": body, "attributes": "{}"},
                       instance=Macro(owner=_persona("zed", "Agent")))
    assert not form.is_valid() and said in " ".join(form.errors["body"])


def test_a_macros_changes_are_checked_by_the_rules_when_saved(db):
    with pytest.raises(ValidationError) as err:
        Macro(name="Bad tags", add_tags="ok bad!tag").full_clean()
    assert "A tag uses letters" in " ".join(err.value.message_dict["add_tags"])
    with pytest.raises(ValidationError) as err:
        Macro(name="Bad attr", attributes={"Nope": "x"}).full_clean()
    assert "Not a registered attribute: Nope" in " ".join(err.value.message_dict["attributes"])


def test_the_admin_lists_shared_macros_with_their_uses_from_the_export(
        db, admin_user, settings, tmp_path):
    settings.ANALYTICS_URI = str(tmp_path)
    _macro(name="Refund issued", body="Refunded.")
    _macro(name="Unused", body="x")
    _macro(name="Personal", owner=admin_user, body="x")
    at = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)

    def event(case_id: str, seq: int, kind: str, detail: str) -> EventFact:
        return EventFact(case_id=case_id, version=1, history_events=9, seq=seq, run_id="r1",
                         event_id=seq * 5, at=at, actor="amy", kind=kind, detail=detail,
                         text=kind, state_version=seq, status="new", queue="billing",
                         assignee="", priority=3)

    store = Store(str(tmp_path))
    store.write([case_facts("case-A", 1, 9), case_facts("case-B", 1, 9)],
                [event("case-A", 1, "macro", "Refund issued"),
                 event("case-A", 2, "macro", "Refund issued"),
                 event("case-B", 1, "macro", "Refund issued"),
                 event("case-B", 2, "tagged", "Refund issued")])
    # Written again (a retried export): deduplicated by the export's view, not counted twice.
    store.write([case_facts("case-A", 1, 9)], [event("case-A", 1, "macro", "Refund issued")])
    assert macro_uses(store.snapshot().db.cursor()) == {"Refund issued": 3}
    page = logged_in(admin_user).get("/admin/cases/macro/").content.decode()
    assert "Refund issued" in page and "Unused" in page and "Personal" not in page
    assert '<td class="field-uses">3</td>' in page
    assert '<td class="field-uses">0</td>' in page
    help_page = logged_in(admin_user).get("/admin/cases/macro/add/").content.decode()
    assert "{{ requester.name }}" in help_page and "{{ agent.first_name }}" in help_page


@pytest.mark.django_db(transaction=True)
def test_the_temporal_cli_applies_a_macro_as_one_update(temporal, settings, open_case):
    case_id = open_case()
    payload = {"actor": "sam", "macro": "From the CLI", "body": "Sent from a script.",
               "changes": {"status": "waiting", "add_tags": ["cli"]}}
    done = subprocess.run([
        TEMPORAL_BIN, "workflow", "update", "execute", "--address", temporal.address,
        "--namespace", settings.TEMPORAL_NAMESPACE, "--workflow-id", case_id,
        "--name", "apply_macro", "--input", json.dumps(payload)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    after = run(gateway.get_case(case_id))
    assert after.status == "waiting" and "cli" in after.tags
    assert after.comments[-1].body == "Sent from a script."
    refused = subprocess.run([
        TEMPORAL_BIN, "workflow", "update", "execute", "--address", temporal.address,
        "--namespace", settings.TEMPORAL_NAMESPACE, "--workflow-id", case_id,
        "--name", "apply_macro", "--input", json.dumps({**payload, "changes": {
            "status": "nowhere"}})], capture_output=True, text=True, timeout=60)
    assert refused.returncode != 0 and "'nowhere' is not a status." in refused.stderr + \
        refused.stdout
    assert run(gateway.get_case(case_id)).version == after.version


def test_bulk_applies_a_macro_per_case_rendered_for_each(supervisor_client, open_case):
    technical = Queue.objects.get(slug="technical")
    macro = _macro(name="Thanks", queue=technical, body="Thanks, {{ requester.name }}.",
                   add_tags="thanked")
    grace = open_case(requester_name="Grace")
    ada = open_case(requester_name="Ada")
    billing = open_case(queue="billing", requester_name="Bea")
    response = supervisor_client.post("/cases/bulk/", {
        "case": [grace, ada, billing], "action": "apply_macro", "macro": macro.pk,
        "key": "bulk1"})
    content = response.content.decode()
    assert "2 done" in content and "1 refused" in content
    assert run(gateway.get_case(grace)).comments[-1].body == "Thanks, Grace."
    assert run(gateway.get_case(ada)).comments[-1].body == "Thanks, Ada."
    other = content.split(f'id="outcome-{billing}"')[1].split("</tr>")[0]
    assert "The macro Thanks is not for the billing queue." in other
    assert run(gateway.get_case(billing)).version == 1
    page = supervisor_client.get("/cases/").content.decode()
    assert '<option value="apply_macro">Apply macro…</option>' in page
    assert f'<option value="{macro.pk}">Thanks</option>' in page


def test_my_macros_keeps_a_persons_own_and_refuses_a_bad_template(db, agent):
    client = logged_in(agent)
    page = client.get("/macros/").content.decode()
    assert "{{ requester.name }}" in page  # the variables, from their one list
    bad = client.post("/macros/", {"name": "Sneaky", "body": "{{ requester.password }}",
                                   "attributes": "{}"})
    assert bad.status_code == 400
    assert "Unknown variable {{ requester.password }}" in bad.content.decode()
    good = client.post("/macros/", {"name": "Sign-off", "body": "— {{ agent.username }}",
                                    "attributes": "{}"})
    assert good.status_code == 302
    mine = Macro.objects.get(name="Sign-off")
    assert mine.owner == agent and mine.queue is None
    # Someone else's is not theirs to open.
    other = _macro(name="Bobs", owner=_persona("bob", "Agent"), body="b")
    assert client.get(f"/macros/{other.pk}/").status_code == 404
