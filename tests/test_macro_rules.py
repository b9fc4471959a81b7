"""Issue 25's macros as rules, without a server: one command made of the existing ones,
decided by their own rules and agent policies, all or nothing."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from workers import rules
from workers.model import (
    ApplyMacro,
    AttributeValue,
    Authority,
    MacroChanges,
    NewCase,
    SlaPolicy,
)

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
SLA = SlaPolicy([3600, 7200, 10800, 14400])
AGENT = Authority(role="agent", queues=["billing"])


def case(**overrides):
    state = rules.open_case("case-AAAAAAAA", NewCase(title="Broken", queue="billing",
                                                     tags=["old"]), "intake", SLA, NOW)
    for key, value in overrides.items():
        setattr(state, key, value)
    return state


def macro(**changes):
    return MacroChanges(**changes)


def test_a_macro_lands_its_reply_and_every_change_as_one_step():
    before = case(assignee="ann", status="in_progress")
    command = ApplyMacro(actor="ann", authority=AGENT, macro="Waiting on billing",
                         body="We asked billing.", changes=macro(
                             status="waiting", priority=1, add_tags=["billing"],
                             remove_tags=["old"],
                             attributes={"Region": AttributeValue("Keyword", "EU")}))
    effect = rules.decide(before, command, NOW, SLA)
    after = rules.apply(before, effect, "ann", NOW)
    assert (effect.kind, effect.detail) == ("macro", "Waiting on billing")
    assert after.version == before.version + 1
    assert after.status == "waiting" and after.priority == 1
    assert after.tags == ["billing"]
    assert after.attributes["Region"].value == "EU"
    assert [c.body for c in after.comments] == ["We asked billing."]
    assert after.due_at == rules.due_at(SLA, before.created_at, 1)
    assert rules.line_for("macro", effect.detail, "ann") == \
        "ann applied the macro Waiting on billing"


def test_an_agents_macro_closing_a_case_they_do_not_hold_is_refused_whole():
    before = case(assignee="bob", status="in_progress")
    command = ApplyMacro(actor="ann", authority=AGENT, macro="Close it", body="Bye",
                         changes=macro(status="closed"))
    with pytest.raises(rules.RuleError) as err:
        rules.decide(before, command, NOW, SLA)
    assert err.value.message == ("Close it: This case is held by bob; only they or a "
                                 "supervisor can do that.")


def test_a_macro_refuses_in_its_parts_own_words():
    before = case(assignee="ann", status="in_progress")
    command = ApplyMacro(actor="ann", macro="Bad", changes=macro(add_tags=["no spaces"]))
    with pytest.raises(rules.RuleError, match=r"^Bad: A tag uses letters"):
        rules.decide(before, command, NOW, SLA)


def test_a_macro_resolving_with_an_internal_note_does_not_make_the_note_the_resolution():
    before = case(assignee="ann", status="in_progress")
    command = ApplyMacro(actor="ann", macro="Done", body="secret", internal=True,
                         changes=macro(status="resolved"))
    after = rules.apply(before, rules.decide(before, command, NOW, SLA), "ann", NOW)
    assert after.status == "resolved" and after.comments[-1].internal
    assert after.resolution == "Resolved with the macro Done."


def test_parts_the_case_already_has_are_left_out_and_nothing_to_do_is_refused():
    before = case(assignee="ann", status="waiting", priority=2)
    with pytest.raises(rules.RuleError, match="already as this macro leaves it"):
        rules.decide(before, ApplyMacro(actor="ann", macro="Wait", changes=macro(
            status="waiting", priority=2, add_tags=["old"])), NOW, SLA)


@pytest.mark.parametrize(("changes", "field"), [
    (MacroChanges(status="gone"), "status"),
    (MacroChanges(priority=9), "priority"),
    (MacroChanges(add_tags="abc"), "add_tags"),
    (MacroChanges(assignee="no one"), "assignee"),
])
def test_a_macros_changes_are_checked_by_shape(changes, field):
    with pytest.raises(rules.RuleError) as err:
        rules.clean_macro_changes(changes)
    assert err.value.field == field


def test_a_macro_from_any_client_needs_a_name():
    with pytest.raises(rules.RuleError, match="needs its name"):
        rules.decide(case(), ApplyMacro(actor="ann", macro=" ", body="x"), NOW, SLA)
