"""Issue 25: case types. A queue's types say which registered attributes its cases show,
which are required and their defaults; the workflow's rules check them, so the new-case form,
the intake API and any Temporal client (the real `temporal` CLI) are refused in the same
words. Types are versioned: a change applies to new cases, an open case keeps its version.
The real dev server and worker; the worker reads the queues' configuration on its own
threads, so these tests commit (transactional_db)."""

from __future__ import annotations

import json
import re
import subprocess
from typing import Any

import pytest

from cases import temporal as gateway
from cases.config import case_types
from cases.config.queue_policy import queue_policy
from cases.models import CaseAttribute, CaseType, CaseTypeField, Queue
from cases.temporal.ids import new_case_id
from workers.model import (
    AddComment,
    AttributeValue,
    Authority,
    CaseState,
    CaseTypeSpec,
    Claim,
    Close,
    NewCase,
    SetAttributes,
    SetCaseType,
    TypeField,
)

from .conftest import TEMPORAL_BIN, _persona, current_state, eventually, logged_in, run
from .test_inputs import _cli_start, _refusal

pytestmark = pytest.mark.django_db(transaction=True)

REQUIRED = "Order number is required for a refund."
ATTRS = [("OrderNumber", "Keyword", "Order number"), ("CxRegion", "Keyword", "Region")]


@pytest.fixture
def refund(temporal):
    """billing's default type "refund": OrderNumber required, CxRegion defaulting to EU;
    and "inquiry" (nothing required), "chargeback" (OrderNumber required, no default)."""
    present = run(gateway.namespace_attributes()).custom
    wanted = {n: t for n, t, _ in ATTRS if n not in present}
    if wanted:
        run(gateway.register_attributes(wanted))
    attrs = {}
    for name, kind, label in ATTRS:
        attrs[name] = CaseAttribute.objects.create(
            name=name, type=kind, label=label, agent_editable=True,
            state=CaseAttribute.REGISTERED)

    def usable() -> None:
        try:
            run(gateway.count_cases("OrderNumber = 'x' AND CxRegion = 'EU'"))
        except gateway.TemporalUnavailable as err:
            raise AssertionError(err) from err

    eventually(usable, timeout=30, interval=0.3)
    billing = Queue.objects.get_or_create(slug="billing", defaults={"name": "Billing"})[0]
    made = {}
    for name, label, fields, default in (
            ("refund", "Refund", [("OrderNumber", True, ""), ("CxRegion", False, "EU")], True),
            ("inquiry", "Inquiry", [("CxRegion", False, "")], False),
            ("chargeback", "Chargeback", [("OrderNumber", True, "")], False)):
        t = CaseType.objects.create(queue=billing, name=name, label=label, is_default=default)
        for pos, (attr, required, text) in enumerate(fields):
            CaseTypeField.objects.create(case_type=t, attribute=attrs[attr], required=required,
                                         default=text, position=pos)
        case_types.save_version(t)
        made[name] = t
    return made


def _api(token: str, payload: dict[str, Any]) -> Any:
    from django.test import Client

    return Client().post("/api/cases/", json.dumps(payload), content_type="application/json",
                         HTTP_AUTHORIZATION=f"Bearer {token}")


def _form_post(client: Any, **fields: str) -> Any:
    page = client.get("/cases/new/").content.decode()
    case_id = re.search(r'name="case_id" value="(case-\w+)"', page).group(1)
    return case_id, client.post("/cases/new/", {
        "case_id": case_id, "title": "Refund please", "queue": "billing", "priority": "3",
        **fields})


def _typed(case_id: str, version: int) -> CaseState:
    def check() -> CaseState:
        state = run(gateway.get_case(case_id))
        assert state.case_type is not None and state.case_type.version == version, state
        return state
    return eventually(check, timeout=20, interval=0.1)


def test_a_missing_required_field_is_refused_alike_by_the_form_the_api_and_the_cli(
        refund, supervisor_client, api_token, temporal, settings):
    # The form: the type picked, the order number left out; said by its field.
    case_id, response = _form_post(supervisor_client, case_type="refund")
    assert response.status_code == 400
    page = response.content.decode()
    assert REQUIRED in page
    assert re.search(r'class="field invalid">\s*<label for="id_attr_OrderNumber"', page)
    with pytest.raises(gateway.CaseNotFound):
        run(gateway.get_case(case_id))
    # The API: no type named is the queue's default type.
    response = _api(api_token, {"title": "Refund please", "queue": "billing"})
    assert response.status_code == 400, response.content
    assert response.json()["fields"]["attributes.OrderNumber"] == [REQUIRED]
    # The CLI, without the queue's policy: the case asks its queue, then is refused.
    cli_id = new_case_id()
    _cli_start(temporal, settings, cli_id, {
        "case_id": cli_id, "actor": "cli",
        "new": {"title": "Refund please", "queue": "billing", "case_type": "refund"}})
    message, task_failures = run(_refusal(temporal, cli_id))
    assert message == f"Rejected: {REQUIRED}" and not task_failures
    # ... and with a policy it gives, refused at once in the same words.
    given = new_case_id()
    _cli_start(temporal, settings, given, {
        "case_id": given, "actor": "cli", "policy": _as_json(queue_policy("billing")),
        "new": {"title": "Refund please", "queue": "billing", "case_type": "refund"}})
    message, task_failures = run(_refusal(temporal, given))
    assert message == f"Rejected: {REQUIRED}" and not task_failures
    # A type the queue does not have is refused too.
    other = new_case_id()
    _cli_start(temporal, settings, other, {
        "case_id": other, "actor": "cli",
        "new": {"title": "x", "queue": "general", "case_type": "refund"}})
    message, _ = run(_refusal(temporal, other))
    assert message == "Rejected: 'refund' is not a case type of this queue."


def _as_json(value: Any) -> Any:
    from temporalio.converter import default as default_converter

    return json.loads(default_converter().payload_converter.to_payloads([value])[0].data)


def test_defaults_fill_and_a_type_change_applies_to_new_cases_only(
        refund, supervisor_client, api_token, temporal, settings):
    response = _api(api_token, {"title": "Refund one", "queue": "billing",
                                "attributes": {"OrderNumber": "A-1"}})
    assert response.status_code == 201, response.content
    first = _typed(response.json()["id"], 1)
    assert first.case_type.name == "refund"
    assert {n: a.value for n, a in first.attributes.items()} == {
        "OrderNumber": "A-1", "CxRegion": "EU"}
    # The form shows the type's fields, the required one marked, the default filled in.
    page = supervisor_client.get("/cases/new/?queue=billing&case_type=refund").content.decode()
    assert "Order number (required)" in page and 'aria-required="true"' in page
    assert re.search(r'<option value="EU" selected|name="attr_CxRegion" value="EU"', page)
    assert 'name="attr_CxRegion"' in page
    # The admin changes the type: a new version; the label and the default change.
    t = refund["refund"]
    t.label = "Refund request"
    t.save()
    CaseTypeField.objects.filter(case_type=t, attribute__name="CxRegion").update(default="US")
    assert case_types.save_version(t).version == 2
    assert case_types.save_version(t).version == 2  # nothing changed: no new version
    case_id, response = _form_post(supervisor_client, case_type="refund",
                                   attr_OrderNumber="B-2")
    assert response.status_code == 302, response.content.decode()[:2000]
    second = _typed(case_id, 2)
    assert second.attributes["CxRegion"].value == "US"
    # A case any client starts without the policy gets the newest version when it asks.
    cli_id = new_case_id()
    _cli_start(temporal, settings, cli_id, {
        "case_id": cli_id, "actor": "cli", "new": {
            "title": "From the CLI", "queue": "billing", "case_type": "refund",
            "attributes": {"OrderNumber": {"type": "Keyword", "value": "C-3"}}}})
    third = _typed(cli_id, 2)
    assert third.attributes["CxRegion"].value == "US"
    # The open case keeps showing the version it was opened with.
    old_page = supervisor_client.get(f"/cases/{first.case_id}/").content.decode()
    assert "Refund <span class=\"muted\">(version 1)</span>" in old_page
    new_page = supervisor_client.get(f"/cases/{case_id}/").content.decode()
    assert "Refund request <span class=\"muted\">(version 2)</span>" in new_page
    assert run(gateway.get_case(first.case_id)).case_type.version == 1


def test_set_case_type_by_a_supervisor_and_refused_to_an_agent(refund, supervisor_client,
                                                               temporal, settings):
    alice = _persona("alice", "Agent", queues=("billing",))
    case_id, response = _form_post(supervisor_client, case_type="inquiry")
    assert response.status_code == 302
    _typed(case_id, 1)
    run(gateway.act(case_id, Claim(actor="alice", authority=Authority(
        role="agent", queues=["billing"]))))
    # An agent is refused, holding the case or not.
    chargeback = queue_policy("billing").case_types["chargeback"]
    with pytest.raises(gateway.ActionRefused) as refused:
        run(gateway.act(case_id, SetCaseType(
            actor="alice", authority=Authority(role="agent", queues=["billing"]),
            case_type=chargeback)))
    assert str(refused.value) == "Only supervisors can change a case's type."
    agent_page = logged_in(alice).get(f"/cases/{case_id}/").content.decode()
    assert "Change type" not in agent_page
    # The supervisor's form: a type whose required field the case lacks is refused whole.
    page = supervisor_client.get(f"/cases/{case_id}/").content.decode()
    assert "Change type" in page and '<option value="chargeback">' in page
    response = supervisor_client.post(f"/cases/{case_id}/set_case_type/", {
        "set_case_type-case_type": "chargeback", "set_case_type-version": ""})
    body = response.content.decode()
    assert "Order number is required for a chargeback." in body, re.findall(
        r'class="errorlist[^>]*>.*?</ul>|refusal[^<]*<[^<]*', body)
    state = run(gateway.get_case(case_id))
    assert state.case_type.name == "inquiry"
    # ... and a type it can take is taken, with its defaults.
    response = supervisor_client.post(f"/cases/{case_id}/set_case_type/", {
        "set_case_type-case_type": "refund", "set_case_type-version": ""})
    assert REQUIRED in response.content.decode()
    run(gateway.act(case_id, AddComment(actor="sam", body="order A-9")))
    run(gateway.act(case_id, SetAttributes(actor="sam", values={
        "OrderNumber": AttributeValue("Keyword", "A-9")})))
    response = supervisor_client.post(f"/cases/{case_id}/set_case_type/", {
        "set_case_type-case_type": "refund", "set_case_type-version": ""})
    assert response.status_code in (200, 302), response.content.decode()[:2000]
    state = run(gateway.get_case(case_id))
    assert state.case_type.name == "refund" and state.attributes["CxRegion"].value == "EU"
    page = supervisor_client.get(f"/cases/{case_id}/").content.decode()
    assert "Refund <span class=\"muted\">(version 1)</span>" in page
    lines = [e.text for e in run(gateway.case_history(case_id)).projection.entries]
    assert "sam changed the case's type to Refund" in lines


def _cli_update(temporal: Any, settings: Any, case_id: str, name: str,
                payload: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([
        TEMPORAL_BIN, "workflow", "update", "execute", "--address", temporal.address,
        "--namespace", settings.TEMPORAL_NAMESPACE, "--workflow-id", case_id,
        "--name", name, "--input", json.dumps(payload),
    ], capture_output=True, text=True, timeout=60)


def test_a_malformed_case_type_from_a_client_is_refused_with_a_clear_message(
        refund, temporal, settings):
    bad_policy = _as_json(queue_policy("billing"))
    bad_policy["case_types"]["refund"]["fields"][0]["name"] = "no such attribute!"
    case_id = new_case_id()
    _cli_start(temporal, settings, case_id, {
        "case_id": case_id, "actor": "cli", "policy": bad_policy,
        "new": {"title": "x", "queue": "billing", "case_type": "refund"}})
    message, task_failures = run(_refusal(temporal, case_id))
    assert message == "Rejected: A case type's field names a registered attribute."
    assert not task_failures
    # A type named by another name than its own, and a default of no type.
    for broken, words in (
            (lambda p: p["case_types"].update(other=p["case_types"]["refund"]),
             "policy.case_types names each type by its own name."),
            (lambda p: p["case_types"]["refund"]["fields"][1].update(default="EU"),
             "The default of CxRegion is a value with its type.")):
        policy = _as_json(queue_policy("billing"))
        broken(policy)
        case_id = new_case_id()
        _cli_start(temporal, settings, case_id, {
            "case_id": case_id, "actor": "cli", "policy": policy,
            "new": {"title": "x", "queue": "billing"}})
        message, task_failures = run(_refusal(temporal, case_id))
        assert message == f"Rejected: {words}" and not task_failures
    # An Update with a malformed type: refused, the case unchanged and still answering.
    case_id = new_case_id()
    _cli_start(temporal, settings, case_id, {
        "case_id": case_id, "actor": "cli", "new": {"title": "x", "queue": "billing"}})
    done = _cli_update(temporal, settings, case_id, "set_case_type", {
        "actor": "sam", "case_type": {"name": "Refund!", "version": 1, "fields": []}})
    assert done.returncode != 0
    assert "A case type's name is a slug" in done.stdout + done.stderr
    done = _cli_update(temporal, settings, case_id, "set_case_type", {
        "actor": "sam", "case_type": {"name": "refund", "version": 0}})
    assert "A case type's version is a whole number from 1." in done.stdout + done.stderr
    assert run(gateway.get_case(case_id)).case_type is None


def test_time_travel_equals_the_live_case_with_types(refund, temporal):
    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(
        title="Typed late", queue="billing", case_type="refund",
        attributes={"OrderNumber": AttributeValue("Keyword", "T-1")}), "intake"))
    typed = _typed(case_id, 1)
    seen = {typed.version: typed}
    inquiry = CaseTypeSpec("inquiry", "Inquiry", 1, [TypeField("CxRegion")])
    for command in (
            AddComment(actor="sam", body="looking"),
            SetCaseType(actor="sam", case_type=inquiry),
            SetCaseType(actor="sam", case_type=queue_policy("billing").case_types["refund"]),
            Close(actor="sam")):
        state = run(gateway.act(case_id, command))
        seen[state.version] = state
    handle = temporal.client.get_workflow_handle(case_id, result_type=CaseState)
    final = run(handle.result())
    projection = run(gateway.case_history(case_id)).projection
    changes = [e for e in projection.entries if e.kind != "notified"]
    kinds = [e.kind for e in changes]
    assert kinds[:3] == ["opened", "queue rules", "typed"] or kinds[:2] == ["opened", "typed"]
    assert kinds.count("retyped") == 2 and kinds[-1] == "closed"
    for entry in changes:
        assert not entry.diverged, entry.text
        if entry.state.version in seen:
            assert entry.state == seen[entry.state.version], entry.text
    assert changes[-1].state == final
    assert [e.state.version for e in changes] == list(range(1, final.version + 1))
    typed_entry = next(e for e in changes if e.kind == "typed")
    assert typed_entry.state.case_type.name == "refund"
    assert typed_entry.state.attributes["CxRegion"].value == "EU"


def test_mail_opens_the_queue_s_default_type_only_when_its_defaults_suffice(refund, temporal):
    from .test_mailin import mail, opened

    Queue.objects.filter(slug="billing").update(email="billing@example.com")
    # refund needs an order number a mail cannot give: the case opens untyped, and says why.
    state = current_state(opened(mail(subject="Refund?")))
    assert state.case_type is None
    assert f"[opened without a type: {REQUIRED}]" in state.description
    # inquiry, the default now, needs nothing: the mail's case is one, with its defaults.
    CaseType.objects.filter(queue__slug="billing").update(is_default=False)
    CaseType.objects.filter(name="inquiry").update(is_default=True)
    CaseTypeField.objects.filter(case_type__name="inquiry").update(default="APAC")
    case_types.save_version(refund["inquiry"])
    state = _typed(opened(mail(subject="Question")), 2)
    assert state.case_type.name == "inquiry" and state.attributes["CxRegion"].value == "APAC"


def test_the_admin_saves_a_type_as_a_new_version_and_checks_defaults(refund, admin_user):
    from django.test import Client

    client = Client()
    client.force_login(admin_user)
    t = refund["chargeback"]
    field = CaseTypeField.objects.get(case_type=t)
    region = CaseAttribute.objects.get(name="CxRegion")

    def post(default: str) -> Any:
        return client.post(f"/admin/cases/casetype/{t.pk}/change/", {
            "queue": t.queue_id, "name": "chargeback", "label": "Chargeback",
            "fields-TOTAL_FORMS": "2", "fields-INITIAL_FORMS": "1",
            "fields-0-id": field.pk, "fields-0-case_type": t.pk,
            "fields-0-attribute": field.attribute_id, "fields-0-required": "on",
            "fields-0-position": "0",
            "fields-1-case_type": t.pk, "fields-1-attribute": region.pk,
            "fields-1-default": default, "fields-1-position": "1",
            "versions-TOTAL_FORMS": "1", "versions-INITIAL_FORMS": "1",
            "versions-0-id": t.versions.get().pk, "versions-0-case_type": t.pk,
        })

    # A default the attribute cannot hold is refused in the rules' words; nothing saved.
    response = post("x" * 300)
    assert response.status_code == 200
    assert "CxRegion takes text of at most 256 characters." in response.content.decode()
    assert t.versions.count() == 1
    response = post("US")
    assert response.status_code == 302, response.content.decode()[:3000]
    assert [v.version for v in t.versions.all()] == [2, 1]
    newest = queue_policy("billing").case_types["chargeback"]
    assert newest.version == 2 and [f.name for f in newest.fields] == ["OrderNumber", "CxRegion"]


def test_one_default_type_per_queue_and_each_version_once_hold_on_postgresql(
        postgres_server, tmp_path):
    """The constraints are the database's, not only the admin's: on PostgreSQL (a partial
    unique index for the default) a second default type of a queue, or a version written
    twice, is refused whoever writes the rows."""
    from psycopg.errors import UniqueViolation

    url, _ = postgres_server.migrated(tmp_path)
    with postgres_server.connect(url) as db:
        queue = db.execute("SELECT id FROM cases_queue WHERE slug = 'billing'").fetchone()[0]
        insert = ("INSERT INTO cases_casetype (queue_id, name, label, is_default) "
                  "VALUES (%s, %s, %s, %s) RETURNING id")
        refund = db.execute(insert, (queue, "refund", "Refund", True)).fetchone()[0]
        db.execute(insert, (queue, "invoice", "Invoice", False))  # not a default: fine
        with pytest.raises(UniqueViolation):
            db.execute(insert, (queue, "dispute", "Dispute", True))
        version = ("INSERT INTO cases_casetypeversion (case_type_id, version, spec, saved) "
                   "VALUES (%s, 1, '{}', now())")
        db.execute(version, (refund,))
        with pytest.raises(UniqueViolation):
            db.execute(version, (refund,))


def test_a_saved_version_keeps_each_fields_registry_label_for_its_refusals(refund):
    spec = case_types.current_types("billing")["refund"]
    assert [(f.name, f.label) for f in spec.fields] == [("OrderNumber", "Order number"),
                                                        ("CxRegion", "Region")]
    # A version saved before labels were kept reads as one without them.
    old = case_types.spec_json(spec)
    for f in old["fields"]:
        del f["label"]
    assert [f.label for f in case_types.spec_from_json(old).fields] == ["", ""]
