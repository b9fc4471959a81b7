"""The pure case rules, without a server: what the workflow's validators decide."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from workers import rules
from workers.model import (
    AddComment,
    AddTag,
    Assign,
    Authority,
    ChangeRequester,
    Claim,
    Close,
    FileRef,
    NewCase,
    ReceiveMail,
    RemoveTag,
    Reopen,
    Requester,
    Resolve,
    SetDue,
    SetPriority,
    SetStatus,
    SlaPolicy,
)

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
SLA = SlaPolicy([3600, 7200, 10800, 14400])


def new_state(**overrides):
    state = rules.open_case("case-AAAAAAAA", NewCase(title="Broken", queue="billing"), "intake",
                            SLA, NOW)
    for key, value in overrides.items():
        setattr(state, key, value)
    return state


def step(state, command, now=NOW):
    effect = rules.decide(state, command, now, SLA)
    return rules.apply(state, effect, command.actor, now)


def test_open_case_sets_due_from_policy():
    state = new_state()
    assert state.status == "new"
    assert state.due_at == NOW + timedelta(seconds=10800)
    assert state.version == 1


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (NewCase(title=" ", queue="billing"), "title is required"),
        (NewCase(title="x" * 201, queue="billing"), "at most 200"),
        (NewCase(title="ok", queue="billing", description="x" * 10_001), "at most 10,000"),
        (NewCase(title="ok", queue="Bad Queue"), "Choose a queue"),
        (NewCase(title="ok", queue="billing", priority=5), "Priority is 1"),
        (NewCase(title="ok", queue="billing", requester_email="nope"), "valid email"),
        (NewCase(title="ok", queue="billing", tags=[f"t{i}" for i in range(21)]), "at most 20"),
        (NewCase(title="ok", queue="billing", tags=["a b"]), "A tag uses"),
    ],
)
def test_new_case_validation(new, message):
    with pytest.raises(rules.RuleError, match=message):
        rules.validate_new_case(new)


def test_claim_then_second_claim_names_holder():
    state = step(new_state(), Claim(actor="alice"))
    assert state.assignee == "alice"
    assert state.status == "in_progress"
    assert state.version == 2
    with pytest.raises(rules.RuleError, match="Already claimed by alice"):
        rules.decide(state, Claim(actor="bob"), NOW, SLA)
    with pytest.raises(rules.RuleError, match="already hold"):
        rules.decide(state, Claim(actor="alice"), NOW, SLA)


def test_stale_version_is_refused_with_who_changed_it():
    state = step(new_state(), Claim(actor="alice"))
    with pytest.raises(rules.StaleError, match="Changed by alice since you opened it"):
        rules.decide(state, AddComment(actor="bob", body="hi", expected_version=1), NOW, SLA)
    # The current version passes.
    rules.decide(state, AddComment(actor="bob", body="hi", expected_version=2), NOW, SLA)


@pytest.mark.parametrize(
    ("start", "target", "ok"),
    [
        ("new", "in_progress", True),
        ("new", "waiting", True),
        ("in_progress", "waiting", True),
        ("waiting", "in_progress", True),
        ("waiting", "new", False),
        ("new", "resolved", False),
        ("new", "closed", False),
        ("resolved", "in_progress", False),
        ("closed", "new", False),
        ("in_progress", "in_progress", False),
    ],
)
def test_status_transitions(start, target, ok):
    state = new_state(status=start)
    if ok:
        assert step(state, SetStatus(actor="alice", status=target)).status == target
    else:
        with pytest.raises(rules.RuleError):
            rules.decide(state, SetStatus(actor="alice", status=target), NOW, SLA)


def test_resolve_requires_resolution_and_reopen_only_when_resolved():
    state = new_state()
    with pytest.raises(rules.RuleError, match="resolution is required"):
        rules.decide(state, Resolve(actor="alice", resolution="  "), NOW, SLA)
    with pytest.raises(rules.RuleError, match="Only a resolved case"):
        rules.decide(state, Reopen(actor="alice"), NOW, SLA)
    state = step(state, Resolve(actor="alice", resolution="Done"))
    assert (state.status, state.resolution, state.resolved_at) == ("resolved", "Done", NOW)
    state = step(state, Reopen(actor="alice", reason="not done"))
    assert state.status == "new" and state.resolved_at is None


def test_tags_comments_priority_due_and_close():
    state = step(new_state(), AddTag(actor="a", tag="vip"))
    assert state.tags == ["vip"]
    with pytest.raises(rules.RuleError, match="Already tagged"):
        rules.decide(state, AddTag(actor="a", tag="vip"), NOW, SLA)
    state = step(state, RemoveTag(actor="a", tag="vip"))
    assert state.tags == []
    with pytest.raises(rules.RuleError, match="not tagged"):
        rules.decide(state, RemoveTag(actor="a", tag="vip"), NOW, SLA)
    state = step(state, AddComment(actor="a", body="psst", internal=True))
    assert state.comments[0].internal and state.comments[0].body == "psst"
    with pytest.raises(rules.RuleError, match="cannot be empty"):
        rules.decide(state, AddComment(actor="a", body=""), NOW, SLA)
    state = step(state, SetPriority(actor="a", priority=1))
    assert state.priority == 1 and state.due_at == NOW + timedelta(seconds=3600)
    with pytest.raises(rules.RuleError, match="must be in the future"):
        rules.decide(state, SetDue(actor="a", due_at=NOW - timedelta(minutes=1)), NOW, SLA)
    state = step(state, Assign(actor="sup", assignee="bob"))
    assert state.assignee == "bob"
    state = step(state, Assign(actor="sup", assignee=None))
    assert state.assignee is None
    state = step(state, Close(actor="sup"))
    assert state.status == "closed"
    with pytest.raises(rules.RuleError, match="closed"):
        rules.decide(state, AddComment(actor="a", body="late"), NOW, SLA)


def test_sla_breach_and_auto_close_deadlines():
    state = new_state()
    assert rules.next_deadline(state, 60) == state.due_at
    assert rules.sla_breach(state, NOW) is None
    breach = rules.sla_breach(state, state.due_at)
    assert breach is not None
    state = rules.apply(state, breach, "system", state.due_at)
    assert state.sla_breached
    assert rules.next_deadline(state, 60) is None
    state = step(state, Resolve(actor="a", resolution="ok"), now=state.due_at)
    assert rules.next_deadline(state, 60) == state.resolved_at + timedelta(seconds=60)
    assert rules.auto_close(state, state.resolved_at, 60) is None
    closing = rules.auto_close(state, state.resolved_at + timedelta(seconds=60), 60)
    assert closing is not None and closing.changes["status"] == "closed"


def test_change_requester_takes_a_name_and_a_valid_email_until_the_case_closes():
    def change(state, name="Grace Hopper", email="grace@example.com", **kw):
        return rules.decide(state, ChangeRequester(actor="sam", name=name, email=email, **kw),
                            NOW, SLA)

    state = new_state()
    effect = change(state, name="  Grace Hopper ", email=" grace@example.com")
    assert effect.kind == "requester" and effect.detail == "Grace Hopper <grace@example.com>"
    after = rules.apply(state, effect, "sam", NOW)
    assert (after.requester.name, after.requester.email) == ("Grace Hopper", "grace@example.com")
    for name, email, message, field in [
        ("  ", "grace@example.com", "The requester needs a name.", "name"),
        ("x" * (rules.MAX_NAME + 1), "grace@example.com", "at most", "name"),
        ("Grace", "grace@", "Enter a valid email address.", "email"),
        ("Grace", "", "Enter a valid email address.", "email"),
        ("Grace", "g@example.com" + "m" * rules.MAX_NAME, "Enter a valid email", "email"),
    ]:
        with pytest.raises(rules.RuleError, match=message) as err:
            change(state, name=name, email=email)
        assert err.value.field == field
    with pytest.raises(rules.RuleError, match="already the requester") as err:
        change(after)
    assert err.value.field == "name"
    # Still changeable once resolved (a reply may come from someone else); not once closed.
    assert change(new_state(status="resolved")).kind == "requester"
    with pytest.raises(rules.RuleError, match="This case is closed") as err:
        change(new_state(status="closed"))
    assert err.value.field is None


def test_agents_change_the_requester_only_on_cases_they_hold():
    agent = Authority(role="agent", queues=["billing"])
    command = ChangeRequester(actor="alice", authority=agent, name="Grace",
                              email="grace@example.com")
    with pytest.raises(rules.RuleError, match="Claim this case"):
        rules.decide(new_state(), command, NOW, SLA)
    with pytest.raises(rules.RuleError, match="held by bob"):
        rules.decide(new_state(assignee="bob"), command, NOW, SLA)
    assert rules.decide(new_state(assignee="alice"), command, NOW, SLA).kind == "requester"


# --- watchers, mentions and who is told (issue 16) ---------------------------------------------


def test_watch_and_unwatch_are_refused_twice_and_on_closed_cases():
    from workers.model import Unwatch, Watch

    state = step(new_state(), Watch(actor="bob"))
    assert state.watchers == ["bob"]
    with pytest.raises(rules.RuleError, match="already watch"):
        rules.decide(state, Watch(actor="bob"), NOW, SLA)
    state = step(state, Watch(actor="sam"))
    state = step(state, Unwatch(actor="bob"))
    assert state.watchers == ["sam"]
    with pytest.raises(rules.RuleError, match="do not watch"):
        rules.decide(state, Unwatch(actor="bob"), NOW, SLA)
    closed = step(state, Close(actor="sam"))
    with pytest.raises(rules.RuleError, match="closed"):
        rules.decide(closed, Watch(actor="bob"), NOW, SLA)
    # An agent of another queue cannot watch what they cannot see.
    with pytest.raises(rules.NotVisibleError):
        rules.decide(state, Watch(actor="al", authority=Authority("agent", ["technical"])),
                     NOW, SLA)


def test_mentions_are_names_after_an_at_sign_not_email_addresses():
    assert rules.mentions("@bob, ask @alice. Mail x@y.com or @bob again; @sam!") == [
        "bob", "alice", "sam"]
    assert rules.mentions("no one here; a@b and @") == []
    assert rules.mentions("(@first.last) @a-b_c") == ["first.last", "a-b_c"]


def _told(before, command, now=NOW):
    effect = rules.decide(before, command, now, SLA)
    after = rules.apply(before, effect, command.actor, now)
    return rules.notices_for(before, after, effect, command.actor)


def test_who_is_told_of_each_change():
    from workers.model import Watch

    state = new_state(requester=rules.Requester("Grace", "grace@example.com"))
    # Assigned by someone else: the assignee; claiming tells nobody.
    [notice] = _told(state, Assign(actor="sam", assignee="bob"))
    assert notice.users == {"bob": "assigned"} and not notice.requester
    assert notice.event == str(state.version + 1)
    assert notice.text == "sam assigned the case to bob"
    assert _told(state, Claim(actor="bob")) == []
    # Watchers follow every change but not their own, nor watching itself.
    watched = step(step(state, Watch(actor="ann")), Watch(actor="bob"))
    [notice] = _told(watched, AddTag(actor="bob", tag="x"))
    assert notice.users == {"ann": "watching"}
    assert _told(watched, Watch(actor="cy")) == []
    # A public comment tells the requester and the mentioned; an internal note never the
    # requester; a mention outranks watching as the reason.
    [notice] = _told(watched, AddComment(actor="sam", body="@ann and @dee, see this"))
    assert notice.users == {"ann": "mentioned", "bob": "watching", "dee": "mentioned"}
    assert notice.requester and notice.body == "@ann and @dee, see this"
    [notice] = _told(watched, AddComment(actor="sam", body="@dee inside", internal=True))
    assert notice.internal and not notice.requester and notice.users["dee"] == "mentioned"
    # Resolution tells the requester; one without a requester address tells nobody there.
    [notice] = _told(step(state, Claim(actor="bob")), Resolve(actor="bob", resolution="Done"))
    assert notice.requester and notice.body == "Done" and notice.kind == "resolved"
    assert _told(new_state(), AddComment(actor="sam", body="hello")) == []


def test_an_sla_breach_tells_the_queues_supervisors():
    state = new_state()
    breach = rules.sla_breach(state, state.due_at)
    after = rules.apply(state, breach, "system", state.due_at)
    [notice] = rules.notices_for(state, after, breach, "system")
    assert notice.supervisors_of == "billing" and notice.kind == "sla breached"


# --- at risk (issue 17) --------------------------------------------------------------------------


RISKY = SlaPolicy(seconds_by_priority=[400, 800, 1600, 3200],
                  at_risk_by_priority=[0.5, 0.75, 0.75, 1.0])


def test_a_case_is_at_risk_at_its_priority_s_share_of_the_time_to_due():
    from workers.model import NewCase, SetDue, SetPriority

    state = rules.open_case("case-abcd1234", NewCase(title="t", queue="general", priority=1),
                            "x", RISKY, NOW)
    assert state.at_risk_at == NOW + timedelta(seconds=200)
    assert rules.next_deadline(state, 60) == state.at_risk_at
    assert rules.sla_at_risk(state, NOW + timedelta(seconds=199)) is None
    effect = rules.sla_at_risk(state, NOW + timedelta(seconds=200))
    assert effect is not None and effect.kind == "sla at risk" and effect.changes == {
        "at_risk": True}
    risky = rules.apply(state, effect, "system", NOW + timedelta(seconds=200))
    assert rules.sla_at_risk(risky, NOW + timedelta(seconds=300)) is None  # once
    assert rules.next_deadline(risky, 60) == state.due_at
    # The breach takes the warning down.
    breach = rules.sla_breach(risky, NOW + timedelta(seconds=400))
    assert breach is not None and breach.changes == {"sla_breached": True, "at_risk": False}
    # A new due time or priority re-arms the warning.
    later = NOW + timedelta(seconds=1000)
    due = rules.decide(risky, SetDue(actor="x", due_at=later), NOW + timedelta(seconds=200),
                       RISKY)
    assert due.changes["at_risk"] is False
    assert due.changes["at_risk_at"] == NOW + timedelta(seconds=600)
    prio = rules.decide(risky, SetPriority(actor="x", priority=2), NOW, RISKY)
    assert prio.changes["at_risk_at"] == NOW + timedelta(seconds=600)


def test_a_share_of_one_and_a_policy_without_shares_never_warn():
    from workers.model import NewCase

    low = rules.open_case("case-abcd1234", NewCase(title="t", queue="general", priority=4),
                          "x", RISKY, NOW)
    assert low.at_risk_at == low.due_at and rules.next_deadline(low, 60) == low.due_at
    assert rules.sla_at_risk(low, low.due_at) is None
    old = rules.open_case("case-abcd1234", NewCase(title="t", queue="general"), "x",
                          SlaPolicy(), NOW)
    assert old.at_risk_at is None and rules.sla_at_risk(old, NOW + timedelta(days=9)) is None


def test_at_risk_tells_the_holder_and_the_queue_s_supervisors():
    from workers.model import NewCase

    state = rules.open_case("case-abcd1234", NewCase(title="t", queue="general", priority=1),
                            "x", RISKY, NOW)
    state = rules.apply(state, rules.Effect("assigned", "bob", {"assignee": "bob"}), "sam", NOW)
    effect = rules.sla_at_risk(state, NOW + timedelta(seconds=250))
    after = rules.apply(state, effect, "system", NOW)
    [notice] = rules.notices_for(state, after, effect, "system")
    assert notice.users == {"bob": "sla_at_risk"}
    assert (notice.supervisors_of, notice.supervisors_why) == ("general", "sla_at_risk")
    assert notice.text.startswith("SLA at risk")


# --- mail in (issue 23) ------------------------------------------------------------------


def _mail(**overrides):
    fields = {"actor": rules.MAIL_ACTOR, "sender_name": "Ada", "sender_email": "ADA@example.com",
              "message_id": "<1@example.com>", "body": "Thanks"}
    return ReceiveMail(**{**fields, **overrides})


def test_a_mail_from_the_requester_is_a_public_comment_with_its_message_kept():
    state = new_state(requester=Requester("Ada", "ada@example.com"))
    eml = FileRef("message.eml", 10, "message/rfc822", "0" * 64, rules.file_key("0" * 64))
    after = step(state, _mail(original=eml))
    comment = after.comments[-1]
    assert (comment.body, comment.internal, comment.via) == ("Thanks", False, "email")
    assert comment.sender == "Ada <ADA@example.com>" and comment.message_id == "<1@example.com>"
    assert after.attachments[-1].file == eml and comment.original == after.attachments[-1].id
    assert comment.attachments == []


def test_a_mail_from_anyone_else_is_an_internal_note_saying_who():
    state = new_state(requester=Requester("Ada", "ada@example.com"))
    comment = step(state, _mail(sender_email="bob@example.org", sender_name="Bob")).comments[-1]
    assert comment.internal and comment.body.startswith("Email from Bob <bob@example.org>")


def test_a_mail_already_on_the_case_is_refused():
    after = step(new_state(), _mail())
    with pytest.raises(rules.RuleError, match=rules.MAIL_ALREADY_HERE):
        rules.decide(after, _mail(body="again"), NOW, SLA)


def test_a_mail_reopens_a_resolved_case_and_a_closed_one_refuses_it():
    resolved = new_state(status="resolved", resolved_at=NOW, assignee="ann")
    after = step(resolved, _mail())
    assert (after.status, after.resolved_at) == ("in_progress", None)
    with pytest.raises(rules.RuleError, match="closed"):
        rules.decide(new_state(status="closed"), _mail(), NOW, SLA)


def test_only_the_intake_records_received_mail():
    """A person (any authority, a supervisor's too) cannot make up a customer's mail."""
    for role in ("agent", "supervisor", "admin"):
        with pytest.raises(rules.RuleError, match="mail intake only") as err:
            rules.decide(new_state(), _mail(authority=Authority(role=role)), NOW, SLA)
        assert err.value.field is None  # about the actor: the page never offers it


def test_a_follow_up_names_a_case():
    assert rules.open_case("case-BBBBBBBB", NewCase(title="t", queue="billing",
                                                    follows="case-AAAAAAAA"),
                           "mail", SLA, NOW).follows == "case-AAAAAAAA"
    with pytest.raises(rules.RuleError, match="follow-up"):
        rules.validate_new_case(NewCase(title="t", queue="billing", follows="nope"))


def _ref(name="shot.png", size=10, content_type="image/png", data=b"x"):
    import hashlib
    sha = hashlib.sha256(data).hexdigest()
    return FileRef(name, size, content_type, sha, rules.file_key(sha))


@pytest.mark.parametrize("ref,problem", [
    (_ref(), None),
    (_ref(name="../etc/passwd"), "path separators"),
    (_ref(name="a\x00b"), "control characters"),
    (_ref(name="invoice\u202egpj.exe"), "control characters"),  # shows as "exe.jpg"
    (_ref(name="résumé 2026.pdf"), None),
    (_ref(name=""), "1 to 255"),
    (_ref(name="x" * 256), "1 to 255"),
    (_ref(size=-1), "whole number"),
    (_ref(size=True), "whole number"),
    (_ref(size=2**41), "whole number"),
    (_ref(content_type="text/html; charset=utf-8"), "media type"),
    (_ref(content_type="x" * 101), "media type"),
    (FileRef("a", 1, "a/b", "A" * 64, rules.file_key("A" * 64)), "lowercase"),
    (FileRef("a", 1, "a/b", "a" * 64, "../../secret"), "store's key"),
])
def test_a_file_reference_from_outside_is_checked_for_shape(ref, problem):
    found = rules.file_problem(ref)
    assert (found is None) if problem is None else (problem in found)


def test_attachment_ids_are_never_reused_and_bounded():
    state = new_state()
    first = rules.new_attachments(state, [_ref(), _ref(data=b"y")], "bob", NOW)
    assert [a.id for a in first] == ["a1", "a2"]
    # A gap (an id given and since gone) is never filled: numbering follows the highest.
    later = rules.new_attachments(replace(state, attachments=[first[1]]), [_ref()], "bob", NOW,
                                  comment=0)
    assert [(a.id, a.comment) for a in later] == [("a3", 0)]
    with pytest.raises(rules.RuleError, match="At most 20 files"):
        rules.new_attachments(state, [_ref()] * (rules.MAX_FILES_PER_COMMAND + 1), "bob", NOW)
    full = replace(state, attachments=[replace(first[0], id=f"a{n}")
                                       for n in range(1, rules.MAX_ATTACHMENTS + 1)])
    with pytest.raises(rules.RuleError, match="at most 200 files"):
        rules.new_attachments(full, [_ref()], "bob", NOW)
    with pytest.raises(rules.RuleError, match="store's key") as err:
        rules.new_attachments(state, [replace(_ref(), key="x")], "bob", NOW)
    assert err.value.field == "files"


def test_a_kept_name_is_always_one_the_rules_take():
    for given in ("../../etc/passwd", "C:\\Users\\ada\\shot.png", "\u202eevil.exe", "..",
                  "", "a" * 300 + ".png", "x\r\nBcc: y"):
        name = rules.clean_file_name(given)
        assert rules.file_problem(replace(_ref(), name=name)) is None, (given, name)
    assert rules.clean_file_name("a" * 300 + ".png").endswith(".png")
    assert rules.clean_file_name("C:\\Users\\ada\\shot.png") == "shot.png"


# --- case types (issue 25) --------------------------------------------------------------------


def _refund(version: int = 1):
    from workers.model import CaseTypeSpec, TypeField

    return CaseTypeSpec("refund", "Refund", version, [
        TypeField("OrderNumber", required=True),
        TypeField("Region", default={"type": "Keyword", "value": "EU"})])


def test_a_typed_case_needs_its_required_fields_and_gets_its_defaults():
    from workers.model import AttributeValue, NewCase

    types = {"refund": _refund()}
    new = NewCase(title="T", queue="billing", case_type="refund")
    with pytest.raises(rules.RuleError) as refused:
        rules.open_case("case-AAAAAAAA", new, "ann", SLA, NOW, types)
    assert (refused.value.message, refused.value.field) == (
        "Order number is required for a refund.", "OrderNumber")
    new.attributes = {"OrderNumber": AttributeValue("Keyword", "A-1")}
    state = rules.open_case("case-AAAAAAAA", new, "ann", SLA, NOW, types)
    assert state.case_type == types["refund"]
    assert state.attributes["Region"] == AttributeValue("Keyword", "EU")
    # Without the queue's types (a client gave no policy) the type waits for its queue.
    assert rules.open_case("case-AAAAAAAA", new, "ann", SLA, NOW).case_type is None
    with pytest.raises(rules.RuleError, match="not a case type of this queue"):
        rules.open_case("case-AAAAAAAA", replace(new, case_type="other"), "ann", SLA, NOW,
                        types)
    with pytest.raises(rules.RuleError, match="Choose a case type"):
        rules.validate_new_case(replace(new, case_type="Not A Slug"))


def test_set_case_type_is_for_supervisors_and_refused_whole_without_required_fields():
    from workers.model import Authority, SetCaseType

    state = new_state()
    agent = Authority(role="agent", queues=None)
    with pytest.raises(rules.RuleError, match=r"Only supervisors can change a case's type\."):
        rules.decide(replace(state, assignee="ann"),
                     SetCaseType(actor="ann", authority=agent, case_type=_refund()), NOW, SLA)
    with pytest.raises(rules.RuleError) as refused:
        rules.decide(state, SetCaseType(actor="sam", case_type=_refund()), NOW, SLA)
    assert refused.value.message == "Order number is required for a refund."
    with pytest.raises(rules.RuleError, match="Choose a case type"):
        rules.decide(state, SetCaseType(actor="sam", case_type=None), NOW, SLA)


@pytest.mark.parametrize("spec, words", [
    ({"name": "Bad!"}, "A case type's name is a slug"),
    ({"version": 0}, "A case type's version is a whole number from 1."),
    ({"version": True}, "A case type's version is a whole number from 1."),
    ({"label": 5}, "A case type's label is text"),
    ({"fields": "x"}, "A case type has a list of at most 50 fields."),
])
def test_a_malformed_case_type_is_named_for_what_is_wrong(spec, words):
    assert rules.type_problem(replace(_refund(), **spec)).startswith(words)


def test_malformed_type_fields_are_refused_never_a_crash():
    from workers.model import TypeField

    for field, words in (
            (TypeField("Bad name"), "A case type's field names a registered attribute."),
            ("not a field", "A case type's field names a registered attribute."),
            (TypeField("CaseStatus"), "A case type's field names a registered attribute."),
            (TypeField("X", required="yes"), "Whether X is required is true or false."),
            (TypeField("X", default=[1]), "The default of X is a value with its type."),
            (TypeField("X", default={"type": "Int", "value": "x"}), "X takes a whole number."),
            (TypeField("X", default={"type": "Nope", "value": 1}), "X has an unknown type")):
        spec = replace(_refund(), fields=[field])
        assert rules.type_problem(spec).startswith(words), field
    twice = replace(_refund(), fields=[TypeField("X"), TypeField("X")])
    assert rules.type_problem(twice) == "A case type names X once."
    assert rules.types_problem({"other": _refund()}) == \
        "policy.case_types names each type by its own name."
    assert rules.types_problem([]).startswith("policy.case_types maps")


def test_a_required_field_is_refused_in_its_registry_label_saved_with_the_type():
    """The words are the label the attribute had when the type's version was saved; a
    version saved before labels were kept says words made from the name."""
    from workers.model import NewCase, TypeField

    labelled = replace(_refund(), fields=[TypeField("OrderNumber", required=True,
                                                    label="Order no. (from the shop)")])
    new = NewCase(title="T", queue="billing", case_type="refund")
    with pytest.raises(rules.RuleError) as refused:
        rules.open_case("case-AAAAAAAA", new, "ann", SLA, NOW, {"refund": labelled})
    assert refused.value.message == "Order no. (from the shop) is required for a refund."
    assert rules.type_problem(labelled) is None
    assert rules.type_problem(replace(labelled, fields=[TypeField("OrderNumber", label=7)])) \
        == "A field's label is text of at most 100 characters."
    assert rules.type_problem(replace(labelled, fields=[
        TypeField("OrderNumber", label="x" * 101)])) is not None
