"""The trust issue: replayed keys cannot show another queue's case, the workflow id is the
case id, a refusal under load says what happened, and one registry drives every command."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from cases import temporal as gateway
from cases.models import Queue
from cases.temporal.ids import new_case_id
from cases.web.forms import ACTION_FORMS
from workers import projection, rules
from workers.model import (
    AddComment,
    CaseInput,
    Claim,
    NewCase,
    Resolve,
    SlaPolicy,
)
from workers.workflows import CaseWorkflow

from .conftest import current_state, parse, run
from .test_custom_attributes import registered  # noqa: F401  (a fixture used by name)
from .test_history import _worked_then_orphaned

# --- 1. replayed action ids ----------------------------------------------------------------


def test_replaying_a_supervisors_bulk_key_shows_nothing_of_a_hidden_case(
        supervisor_client, agent_client, open_case):
    hidden = open_case(title="Billing secret", queue="billing")
    first = supervisor_client.post("/cases/bulk/", {"case": [hidden], "action": "add_tag",
                                                    "tag": "vip", "key": "k-super"})
    assert "1 done" in first.content.decode()
    # alice (technical, general) re-posts the same key against the same case.
    replay = agent_client.post("/cases/bulk/", {"case": [hidden], "action": "add_tag",
                                                "tag": "vip", "key": "k-super"})
    content = replay.content.decode()
    assert "Billing secret" not in content
    assert "0 done" in content and "1 refused" in content
    assert "No such case, or not one you can see." in content


def test_replaying_an_action_key_with_htmx_does_not_return_a_hidden_case(
        supervisor_client, agent_client, open_case):
    hidden = open_case(title="Billing secret", queue="billing")
    data = {"add_tag-tag": "vip", "add_tag-key": "k-replayed"}
    assert supervisor_client.post(f"/cases/{hidden}/add_tag/", data,
                                  HTTP_HX_REQUEST="true").status_code == 200
    replay = agent_client.post(f"/cases/{hidden}/add_tag/", data, HTTP_HX_REQUEST="true")
    assert replay.status_code == 404
    assert "Billing secret" not in replay.content.decode()
    assert current_state(hidden).tags == ["vip"]


def test_an_update_result_passes_the_access_rule_even_for_its_own_author(
        agent, agent_client, open_case):
    case_id = open_case(title="Moved away", queue="general")
    data = {"comment-body": "Before the move", "comment-key": "k-own"}
    assert agent_client.post(f"/cases/{case_id}/comment/", data,
                             HTTP_HX_REQUEST="true").status_code == 200
    Queue.objects.get(slug="general").agents.remove(agent)
    # The same user, key and case give the same Update id: Temporal answers with the first
    # outcome without asking the validator, so only the web's own check stands in the way.
    replay = agent_client.post(f"/cases/{case_id}/comment/", data, HTTP_HX_REQUEST="true")
    assert replay.status_code == 404 and "Moved away" not in replay.content.decode()
    assert len(current_state(case_id).comments) == 1


def test_update_ids_are_the_users_own():
    from cases.temporal.ids import update_id

    mine = update_id("alice", "case-AAAAAAAA", "comment", "k1")
    assert mine == update_id("alice", "case-AAAAAAAA", "comment", "k1")
    assert mine != update_id("bob", "case-AAAAAAAA", "comment", "k1")
    assert mine != update_id("alice", "case-BBBBBBBB", "comment", "k1")
    assert mine.startswith("comment-") and "k1" not in mine


# --- 9. the workflow's own id is the case id ------------------------------------------------


def test_a_case_started_with_a_different_input_id_is_named_by_its_workflow_id(
        temporal, tclient, supervisor_client):
    from django.conf import settings

    workflow_id, other = new_case_id(), new_case_id()
    run(tclient.start_workflow(
        "Case", CaseInput(case_id=other, actor="cli", new=NewCase(title="From the CLI",
                                                                   queue="general")),
        id=workflow_id, task_queue=settings.TEMPORAL_TASK_QUEUE))
    page = supervisor_client.get(f"/cases/{workflow_id}/").content.decode()
    assert f'action="/cases/{workflow_id}/claim/"' in page and other not in page
    claimed = supervisor_client.post(f"/cases/{workflow_id}/claim/", {"claim-key": "k"},
                                     HTTP_HX_REQUEST="true")
    assert claimed.status_code == 200 and "Claim: done." in claimed.content.decode()
    state = current_state(workflow_id)
    assert state.case_id == workflow_id and state.assignee == "sam"
    # The history is rebuilt under the same name.
    assert run(gateway.case_history(workflow_id)).projection.state.case_id == workflow_id


def test_a_workflow_whose_id_is_not_a_case_id_is_refused(temporal, tclient):
    from django.conf import settings
    from temporalio.client import WorkflowFailureError

    handle = run(tclient.start_workflow(
        "Case", CaseInput(case_id=new_case_id(), actor="cli",
                          new=NewCase(title="Odd", queue="general")),
        id=f"odd-{uuid.uuid4().hex[:8]}", task_queue=settings.TEMPORAL_TASK_QUEUE))
    with pytest.raises(WorkflowFailureError) as failed:
        run(handle.result())
    assert "is not a case id" in str(failed.value.cause)


# --- 7. a refusal whose re-read times out ---------------------------------------------------


def test_a_refusal_whose_re_read_times_out_says_refused_not_no_worker(
        agent_client, open_case, settings):
    case_id = open_case()
    run(gateway.act(case_id, Claim(actor="bob")))
    # The Update is answered (refused); the Query that re-reads the case then runs out of
    # time, as it does on a loaded cluster.
    settings.TEMPORAL_QUERY_TIMEOUT = 0.000001
    response = agent_client.post(
        f"/cases/{case_id}/comment/",
        {"comment-version": "1", "comment-body": "Typed while it changed"},
        HTTP_HX_REQUEST="true")
    content = response.content.decode()
    assert response.status_code == 200
    assert "Not applied: Changed by bob since you opened it" in content
    assert "could not be re-read" in content
    assert "No worker answered" not in content
    assert "Typed while it changed" in content  # handed back
    assert '<dd class="assignee">bob</dd>' in content  # the case, from its history


# --- 11. one command registry ---------------------------------------------------------------


def test_workflow_projection_gateway_and_forms_agree_with_the_registry():
    defn = CaseWorkflow.__temporal_workflow_definition
    registry = set(rules.COMMANDS)
    assert set(defn.updates) == registry
    assert set(projection.UPDATE_COMMANDS) == registry
    assert set(gateway.UPDATE_NAMES.values()) == registry
    for name, rule in rules.COMMANDS.items():
        update = defn.updates[name]
        assert update.arg_types == [rule.command] and update.validator is not None
    # Every command has a form, and every form sends a registered command.
    commands = {rule.command for rule in rules.COMMANDS.values()}
    assert {form.command_class for form in ACTION_FORMS.values()} == commands
    # Every effect kind a command produces has its own timeline words.
    for rule in rules.COMMANDS.values():
        for kind in rule.wording:
            line = rules.line_for(kind, "x_y", "ann")
            assert "ann" in line and not line.endswith(f"{kind} by ann")


def test_every_command_yields_only_effect_kinds_it_has_words_for():
    from datetime import timedelta

    from workers.model import (
        AddTag,
        ApplyMacro,
        Assign,
        Attach,
        AttributeValue,
        CaseTypeSpec,
        ChangeRequester,
        Close,
        FileRef,
        MacroChanges,
        ReceiveMail,
        RemoveTag,
        Reopen,
        SetAttributes,
        SetCaseType,
        SetDue,
        SetPriority,
        SetStatus,
        Unwatch,
        Watch,
    )

    now, sla = current_time(), SlaPolicy()
    fresh = rules.open_case("case-AAAAAAAA", NewCase(title="T", queue="general", tags=["a"]),
                            "ann", sla, now)
    held = dataclasses.replace(fresh, assignee="ann", status="in_progress")
    resolved = dataclasses.replace(held, status="resolved", resolved_at=now)
    # One accepted sample per registered command; a new command fails here until it has one.
    samples = {
        "claim": [(fresh, Claim(actor="ann"))],
        "assign": [(fresh, Assign(actor="ann", assignee="bob")),
                   (held, Assign(actor="ann", assignee=None))],
        "set_priority": [(held, SetPriority(actor="ann", priority=1))],
        "set_status": [(held, SetStatus(actor="ann", status="waiting"))],
        "comment": [(held, AddComment(actor="ann", body="b")),
                    (held, AddComment(actor="ann", body="b", internal=True))],
        "add_tag": [(held, AddTag(actor="ann", tag="b"))],
        "attach": [(held, Attach(actor="ann", files=[FileRef(
            "a.txt", 1, "text/plain", "0" * 64, rules.file_key("0" * 64))]))],
        "remove_tag": [(held, RemoveTag(actor="ann", tag="a"))],
        "set_due": [(held, SetDue(actor="ann", due_at=now + timedelta(days=1)))],
        "resolve": [(held, Resolve(actor="ann", resolution="r"))],
        "reopen": [(resolved, Reopen(actor="ann"))],
        "close": [(held, Close(actor="ann"))],
        "set_attributes": [(held, SetAttributes(actor="ann", values={
            "Region": AttributeValue("Keyword", "EU")}))],
        "change_requester": [(held, ChangeRequester(actor="ann", name="Grace",
                                                    email="grace@example.com"))],
        "watch": [(held, Watch(actor="ann"))],
        "unwatch": [(dataclasses.replace(held, watchers=["ann"]), Unwatch(actor="ann"))],
        "receive_mail": [
            (resolved, ReceiveMail(actor="mail", sender_name="", sender_email="a@b.example",
                                   message_id="<m@b.example>", body="b"))],
        "set_case_type": [(held, SetCaseType(actor="sam", case_type=CaseTypeSpec("refund")))],

        "apply_macro": [(held, ApplyMacro(actor="ann", macro="m", body="b", changes=MacroChanges(
            status="waiting", priority=1, add_tags=["x"])))],
    }
    assert set(samples) == set(rules.COMMANDS)
    for name, cases in samples.items():
        for state, command in cases:
            effect = rules.decide(state, command, now, sla)
            assert effect.kind in rules.COMMANDS[name].wording, (name, effect.kind)


def current_time():
    from datetime import UTC, datetime

    return datetime(2026, 1, 1, tzinfo=UTC)

def test_every_registry_entry_has_its_form_policy_bulk_and_hand_back():
    """One entry is all a command needs: each field of it is read by the part it drives."""
    from cases.web.bulk import BULK_ACTIONS, BulkForm

    base = {f.name for f in dataclasses.fields(rules.Command)}
    named = []
    for name, rule in rules.COMMANDS.items():
        assert rule.forms, name
        # The URL action of a command's first form is its Update name: no second name.
        assert not rule.forms[0].name and ACTION_FORMS[name].spec is rule.forms[0]
        needed = {f.name for f in dataclasses.fields(rule.command) if f.name not in base
                  and f.default is dataclasses.MISSING
                  and f.default_factory is dataclasses.MISSING}
        for spec in rule.forms:
            named.append(spec.name or name)
            assert ACTION_FORMS[spec.name or name].rule is rule
            inputs = {i.name for i in spec.inputs}
            # Each form fills the whole command, from inputs or fixed values, and no more.
            assert needed <= inputs | set(spec.fixed), (name, spec.label)
            assert inputs | set(spec.fixed) <= {f.name for f in dataclasses.fields(rule.command)}
            for inp in spec.inputs:
                assert inp.kind in rules.INPUT_KINDS, (name, inp.name)
                assert not inp.hand_back or inp.kind in ("text", "textarea"), (name, inp.name)
            # The page asks the rules with the form's blank input; that must build a command.
            assert isinstance(rule.probe(spec, "ann"), rule.command)
        # An agent policy that answers for a case the agent does not hold.
        state = rules.open_case("case-AAAAAAAA", NewCase(title="T", queue="general"), "ann",
                                SlaPolicy(), current_time())
        verdict = rule.agents(state, rule.probe(rule.forms[0], "alice"))
        assert verdict is None or isinstance(verdict, str)
    assert len(named) == len(set(named)) == len(ACTION_FORMS)
    # Bulk work offers exactly the entries with a bulk label, and has a field for each input.
    # (And a macro, issue 25: the one command made per case, its reply rendered for each.)
    assert BULK_ACTIONS == [*((n, r.bulk) for n, r in rules.COMMANDS.items() if r.bulk),
                            ("apply_macro", "Apply macro")]
    for name, rule in rules.COMMANDS.items():
        for inp in rule.forms[0].inputs if rule.bulk else ():
            assert BulkForm.INPUTS[inp.name] == inp, (name, inp.name)
            assert inp.name in BulkForm.base_fields


def test_the_timeline_shows_a_detail_exactly_when_its_words_leave_it_out():
    # Read from the wording: a line with {detail} says it; one without shows it beneath.
    for kind in ("assigned", "priority", "status", "tagged", "due", "attributes"):
        assert projection.says_detail(kind, "ann"), kind
    for kind in ("comment", "internal note", "resolved", "reopened", "sla breached"):
        assert not projection.says_detail(kind, "ann"), kind
    assert projection.says_detail("opened", "ann")
    assert projection.says_detail("closed", "system") and not projection.says_detail(
        "closed", "ann")



def test_a_resolved_case_offers_what_its_rules_accept(supervisor_client, open_case):
    case_id = open_case()
    run(gateway.act(case_id, Resolve(actor="sam", resolution="Done")))
    page = supervisor_client.get(f"/cases/{case_id}/").content.decode()
    # The rules take a tag, a comment, a reopen and a close on a resolved case...
    for action in ("add_tag", "comment", "reopen", "close"):
        assert f'action="/cases/{case_id}/{action}/"' in page, action
    # ...and refuse a claim, a status change or a second resolution.
    for action in ("claim", "set_status", "resolve", "set_priority"):
        assert f'action="/cases/{case_id}/{action}/"' not in page, action
    tagged = supervisor_client.post(f"/cases/{case_id}/add_tag/", {"add_tag-tag": "late"},
                                    HTTP_HX_REQUEST="true")
    assert "Add tag: done." in tagged.content.decode()


def test_offers_follow_the_rules_for_every_form():
    """Whatever a form is offered for, its probe is refused only on its input."""
    now = current_time()
    base = rules.open_case("case-AAAAAAAA", NewCase(title="T", queue="general"), "ann",
                           SlaPolicy(), now)
    for status in ("new", "in_progress", "resolved", "closed"):
        state = dataclasses.replace(base, status=status, assignee="ann")
        for name, form in ACTION_FORMS.items():
            probe = form.probe("ann")
            offered = rules.offers(state, probe, now, SlaPolicy())
            if status == "closed":
                assert not offered, name
            try:
                rules.decide(state, probe, now, SlaPolicy())
                refused_on_case = False
            except rules.RuleError as err:
                refused_on_case = err.field is None
            assert offered == (not refused_on_case), (status, name)


# --- 12 and 13: one door, one markup --------------------------------------------------------


def test_degraded_page_is_the_case_page_read_only(temporal, settings, agent_client):
    case_id = _worked_then_orphaned(
        temporal, settings, "Gone quiet", Claim(actor="alice"),
        AddComment(actor="alice", body="Seen from history"))
    settings.TEMPORAL_QUERY_TIMEOUT = 0.5
    html = agent_client.get(f"/cases/{case_id}/").content.decode()
    case = html.split('id="case"')[1]
    # The same facts, body and links as the live page, none of its actions.
    assert "Normal" in case and "Requester:" in case and "Full history" in case
    assert "Seen from history" in case and 'method="post"' not in case
    partial = agent_client.get(f"/cases/{case_id}/", HTTP_HX_REQUEST="true").content.decode()
    assert partial.lstrip().startswith('<article id="case" class="case degraded"')


def test_api_reads_a_case_whose_worker_is_gone_from_history(temporal, settings, agent):
    from django.test import Client

    from cases.models import ApiToken

    case_id = _worked_then_orphaned(temporal, settings, "API reads it", Claim(actor="alice"))
    settings.TEMPORAL_QUERY_TIMEOUT = 0.5
    key = ApiToken.issue(agent, "crm")[1]
    response = Client().get(f"/api/cases/{case_id}/", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 200, response.content
    assert response.json()["assignee"] == "alice"
    assert response["X-Case-Read-From"] == "history"


# --- 2. opening a case follows the agent-editable rule ---------------------------------------


@pytest.mark.usefixtures("registered")
def test_agents_cannot_set_supervisor_attributes_when_they_open_a_case(agent, agent_client):
    import re

    from cases.models import ApiToken

    page = agent_client.get("/cases/new/").content.decode()
    assert 'name="attr_CxRegion"' in page  # agent-editable
    assert 'name="attr_CxSeats"' not in page  # supervisors only
    case_id = re.search(r'name="case_id" value="(case-\w+)"', page).group(1)
    response = agent_client.post("/cases/new/", {
        "case_id": case_id, "title": "Seats please", "queue": "technical", "priority": "3",
        "attr_CxRegion": "EU", "attr_CxSeats": "500"})
    assert response.status_code == 302
    attributes = current_state(case_id).attributes
    assert attributes["CxRegion"].value == "EU" and "CxSeats" not in attributes

    from django.test import Client

    key = ApiToken.issue(agent, "crm")[1]
    api = Client().post("/api/cases/", {"title": "Via API", "queue": "technical",
                                        "attributes": {"CxRegion": "US", "CxSeats": 9}},
                        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert api.status_code == 403
    assert api.json()["fields"]["attributes"] == ["Only supervisors can set: CxSeats."]


# --- 15. one home per concept ----------------------------------------------------------------


def test_the_access_rule_does_not_import_the_request_configuration():
    """config.py builds Access; access.py must not reach back (not even lazily)."""
    import ast
    from pathlib import Path

    import cases.config.access

    tree = parse(Path(cases.config.access.__file__).read_text())
    imported = {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    assert not {m for m in imported if m.split(".")[-1] == "config"}, imported


def test_statuses_and_core_attributes_have_one_home():
    from cases.config import attributes
    from cases.templatetags import case_tags
    from cases.web import forms
    from workers import model, search_attributes

    assert dict(forms.STATUS_CHOICES) == model.STATUS_LABELS
    assert case_tags.status_label("in_progress") == model.STATUS_LABELS["in_progress"]
    assert [s for s, _ in rules.SETTABLE_STATUSES] == list(model.OPEN_STATUSES)
    assert {k.name for k in search_attributes.CORE_KEYS} == set(model.CORE_ATTRIBUTES)
    assert rules.CORE_ATTRIBUTE_NAMES == set(model.CORE_ATTRIBUTES)
    assert attributes.CORE_ATTRIBUTES is model.CORE_ATTRIBUTES
