"""The command registry and the system steps' words: one home each (issue 22).

Pure: no server. The pins below were taken from the code before the registry held who is
told and the system steps' words, so they prove moving those changed nothing."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from datetime import UTC, datetime, timedelta

from workers import projection, rules
from workers.model import (
    AddComment,
    AddTag,
    ApplyMacro,
    Assign,
    Attach,
    AttributeValue,
    CaseTypeSpec,
    ChangeRequester,
    Claim,
    Close,
    Escalation,
    FileRef,
    MacroChanges,
    NewCase,
    ReceiveMail,
    RemoveTag,
    Reopen,
    Requester,
    Resolve,
    SetAttributes,
    SetCaseType,
    SetDue,
    SetPriority,
    SetStatus,
    SlaPolicy,
    TypeField,
    Unwatch,
    Watch,
)

from .conftest import parse

NOW = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)
SLA = SlaPolicy(seconds_by_priority=[400, 800, 1600, 3200],
                at_risk_by_priority=[0.5, 0.75, 0.75, 1.0],
                escalation=Escalation(raise_priority=True, to_queue="tier2",
                                      to_assignee="esc"))


def _cases():
    """A case watched by two people, with a requester address, held by ann or nobody."""
    fresh = rules.open_case(
        "case-AAAAAAAA",
        NewCase(title="T", queue="general", tags=["a"], requester_name="Grace",
                requester_email="grace@example.com", priority=2),
        "intake", SLA, NOW)
    fresh = dataclasses.replace(fresh, watchers=["wat", "ann"])
    held = dataclasses.replace(fresh, assignee="ann", status="in_progress")
    resolved = dataclasses.replace(held, status="resolved", resolved_at=NOW)
    no_mail = dataclasses.replace(held, requester=Requester("Grace", ""))
    return fresh, held, resolved, no_mail


FILE = FileRef("shot.png", 2048, "image/png", "ab" * 32, rules.file_key("ab" * 32))


def _command_samples():
    fresh, held, resolved, no_mail = _cases()
    return [
        (fresh, Claim(actor="bob")),
        (fresh, Claim(actor="wat")),
        (fresh, Assign(actor="sam", assignee="bob")),
        (fresh, Assign(actor="sam", assignee="wat")),
        (held, Assign(actor="sam", assignee=None)),
        (held, SetPriority(actor="ann", priority=1)),
        (held, SetStatus(actor="ann", status="waiting")),
        (held, AddComment(actor="sam", body="@wat and @dee, see this")),
        (held, AddComment(actor="sam", body="@dee inside", internal=True)),
        (no_mail, AddComment(actor="sam", body="hello")),
        (held, AddComment(actor="ann", body="me, @ann")),
        (held, AddTag(actor="ann", tag="b")),
        (held, RemoveTag(actor="ann", tag="a")),
        (held, SetDue(actor="ann", due_at=NOW + timedelta(days=1))),
        (held, Resolve(actor="ann", resolution="Done, @wat")),
        (no_mail, Resolve(actor="ann", resolution="Done")),
        (resolved, Reopen(actor="ann", reason="Still broken")),
        (held, Close(actor="ann")),
        (held, SetAttributes(actor="ann", values={"Region": AttributeValue("Keyword", "EU")})),
        (held, ChangeRequester(actor="ann", name="Ada", email="ada@example.com")),
        (held, Watch(actor="bob")),
        (held, Unwatch(actor="wat")),
        (resolved, ReceiveMail(actor="mail", sender_name="Grace", sender_email="GRACE@example.com",
                               message_id="<1@example.com>", body="Thanks")),
        (held, ReceiveMail(actor="mail", sender_name="", sender_email="bob@example.org",
                           message_id="<2@example.org>", body="FYI @wat")),
        (held, Attach(actor="ann", files=[FILE])),
        (held, AddComment(actor="sam", body="See the screenshot", files=[FILE])),
        (held, AddComment(actor="sam", body="Log inside", internal=True, files=[FILE])),
        (held, SetCaseType(actor="sam", case_type=CaseTypeSpec("refund", "Refund", 2, [
            TypeField("Region", default={"type": "Keyword", "value": "EU"})]))),

        # Issue 25: one notice telling the union of its parts' (reply, assignment, resolution).
        (held, ApplyMacro(actor="ann", macro="Done", body="Fixed, @dee", changes=MacroChanges(
            status="resolved", priority=1, add_tags=["done"]))),
        (held, ApplyMacro(actor="sam", macro="Hand over", body="For @wat", internal=True,
                          changes=MacroChanges(status="waiting", assignee="bob"))),
        (held, ApplyMacro(actor="ann", macro="Internal resolve", body="inside", internal=True,
                          changes=MacroChanges(status="resolved"))),
    ]


def _system_samples():
    fresh, held, resolved, _ = _cases()
    due = held.due_at
    at_risk = held.at_risk_at
    breached = rules.apply(held, rules.sla_breach(held, due), "system", due)
    breached_fresh = rules.apply(fresh, rules.sla_breach(fresh, due), "system", due)
    return [
        (held, rules.sla_breach(held, due)),
        (fresh, rules.sla_breach(fresh, due)),
        (held, rules.sla_at_risk(held, at_risk)),
        (fresh, rules.sla_at_risk(fresh, at_risk)),
        (breached, rules.escalation(breached, SLA)),
        (breached_fresh, rules.escalation(breached_fresh, SLA)),
        (dataclasses.replace(breached, assignee="esc"), rules.escalation(
            dataclasses.replace(breached, assignee="esc"), SLA)),
        (fresh, rules.routed(fresh, "bob", "least busy")),
        (fresh, rules.routed(fresh, "wat", "round robin")),
        (resolved, rules.auto_close(resolved, NOW + timedelta(days=9), 3600)),
    ]


def _said(notices):
    """Each notice whole, its users in the order they were named."""
    return [(n.event, n.kind, n.actor, n.text, n.body, n.internal, tuple(n.users.items()),
             n.requester, n.supervisors_of, n.supervisors_why,
             *([tuple(f.name for f in n.files)] if n.files else [])) for n in notices]


def who_is_told():
    """Every command's and system step's effect on the sample cases, and whom it tells."""
    seen = []
    for before, command in _command_samples():
        effect = rules.decide(before, command, NOW, SLA)
        after = rules.apply(before, effect, command.actor, NOW)
        seen.append((effect.kind, _said(rules.notices_for(before, after, effect,
                                                          command.actor))))
    for before, effect in _system_samples():
        after = rules.apply(before, effect, "system", NOW)
        seen.append((effect.kind, _said(rules.notices_for(before, after, effect, "system"))))
    return seen


def timeline_line(kind, detail, actor, quiet_seconds):
    return rules.line_for(kind, detail, actor, quiet_seconds)


# Every effect kind a command or the workflow yields, what only the timeline says, and one
# kind nobody words (the fallback).
TIMELINE_KINDS = (
    "claimed", "assigned", "unassigned", "priority", "status", "comment", "internal note",
    "tagged", "untagged", "due", "resolved", "reopened", "closed", "attributes", "requester",
    "watched", "unwatched", "mail in", "mail note", "attached", "opened", "sla breached",
    "sla at risk", "escalated", "routed", "notified", "ended", "truncated", "continued",
    "changed", "retyped", "typed", "macro", "mystery",
)


def timeline():
    """Each kind's line and whether its detail shows beneath, by a person and by the system;
    the system's close names the case's quiet period."""
    lines = [(kind, actor, timeline_line(kind, "in_progress → x_y", actor, 7 * 86400),
              projection.says_detail(kind, actor))
             for kind in TIMELINE_KINDS for actor in ("ann", "system")]
    lines += [timeline_line("closed", "automatically after the quiet period", "system", quiet)
              for quiet in (0, 1, 90, 3600)]
    return lines


def test_who_is_told_of_each_change_is_as_it_was():
    assert who_is_told() == WHO_IS_TOLD


def test_every_timeline_line_is_worded_as_it_was():
    assert timeline() == TIMELINE



def _projection_kinds() -> set[str]:
    """The kinds the projection writes of its own accord: `self._add(event, actor, "kind", ...)`."""
    tree = parse(inspect.getsource(projection))
    return {call.args[2].value for call in ast.walk(tree)
            if isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
            and call.func.attr == "_add" and len(call.args) > 2
            and isinstance(call.args[2], ast.Constant)}


def test_the_registries_agree():
    """One entry per command, one per system step, and every part reads it from there."""
    from cases.temporal.cases import UPDATE_NAMES
    from cases.web.forms import ACTION_FORMS
    from workers.workflows import CaseWorkflow

    updates = CaseWorkflow.__temporal_workflow_definition.updates
    preferences = set(rules.NOTICE_KINDS)

    def valid(tells: rules.Tells) -> bool:
        named = {p for p in (tells.assignee, tells.supervisors) if p}
        return named <= preferences and tells.says in rules.NOTICE_TEXTS

    command_kinds: list[str] = []
    for name, rule in rules.COMMANDS.items():
        # Its Update, its gateway name, its form and its projection, all from this entry.
        assert rule.update == name and updates[name].arg_types == [rule.command], name
        assert UPDATE_NAMES[rule.command] == name and ACTION_FORMS[name].rule is rule, name
        assert projection.UPDATE_COMMANDS[name] is rule.command and rule.forms, name
        # Words for each effect kind; whom each tells is said only of kinds it words.
        assert rule.wording and set(rule.tells) <= set(rule.wording), name
        assert all(valid(t) for t in rule.tells.values()), name
        command_kinds += rule.wording
    assert len({r.command for r in rules.COMMANDS.values()}) == len(rules.COMMANDS)
    # No kind worded twice: the one table the timeline and the notices read would hide one.
    assert len(command_kinds) == len(set(command_kinds))
    assert not set(command_kinds) & set(rules.SYSTEM_STEPS)
    assert all(valid(step.tells) for step in rules.SYSTEM_STEPS.values())
    assert rules.WORDING == {**{k: t for r in rules.COMMANDS.values()
                                for k, t in r.wording.items()},
                             **{k: s.wording for k, s in rules.SYSTEM_STEPS.items()}}
    # Every sample command yields only kinds its own entry words; every command has a sample.
    assert {type(c) for _, c in _command_samples()} == {
        r.command for r in rules.COMMANDS.values()}
    for state, command in _command_samples():
        effect = rules.decide(state, command, NOW, SLA)
        assert effect.kind in rules.rule_for(type(command)).wording, effect.kind
    # The workflow's own steps: each kind the rules yield for it, and each the projection
    # writes itself, is a system step (the auto-close is the close command's kind).
    system = {e.kind for _, e in _system_samples()} - {"closed"}
    assert system | _projection_kinds() <= set(rules.SYSTEM_STEPS)
    # One home for the words: the projection repeats none of them, it asks the rules.
    strings = {n.value for n in ast.walk(parse(inspect.getsource(projection)))
               if isinstance(n, ast.Constant) and isinstance(n.value, str)}
    # ("{detail}", the end's whole line, is also the placeholder says_detail looks for.)
    assert not strings & {*rules.WORDING.values(), rules.AUTO_CLOSED} - {"{detail}"}
    # Every preference the settings page offers is one some change is told under.
    every = [rules.tells_for(kind) for kind in rules.WORDING]
    told_under = {p for t in every for p in (t.assignee, t.supervisors) if p}
    told_under |= {"watching"} if any(t.watchers for t in every) else set()
    told_under |= {"mentioned"} if any(t.mentioned for t in every) else set()
    assert told_under == preferences
    # ...and fits where a person's choice and their inbox keep it.
    from cases.models import Notification, NotificationPreference

    longest = max(map(len, preferences))
    assert longest <= NotificationPreference._meta.get_field("kind").max_length
    assert longest <= Notification._meta.get_field("kind").max_length


WHO_IS_TOLD = [
    ('claimed', [
        ('2', 'claimed', 'bob', 'bob claimed the case', '', False,
         (('wat', 'watching'), ('ann', 'watching')), False, '', 'sla_breached'),
    ]),
    ('claimed', [
        ('2', 'claimed', 'wat', 'wat claimed the case', '', False, (('ann', 'watching'),), False,
         '', 'sla_breached'),
    ]),
    ('assigned', [
        ('2', 'assigned', 'sam', 'sam assigned the case to bob', '', False,
         (('wat', 'watching'), ('ann', 'watching'), ('bob', 'assigned')), False, '',
         'sla_breached'),
    ]),
    ('assigned', [
        ('2', 'assigned', 'sam', 'sam assigned the case to wat', '', False,
         (('wat', 'assigned'), ('ann', 'watching')), False, '', 'sla_breached'),
    ]),
    ('unassigned', [
        ('2', 'unassigned', 'sam', 'sam unassigned the case (was ann)', '', False,
         (('wat', 'watching'), ('ann', 'watching')), False, '', 'sla_breached'),
    ]),
    ('priority', [
        ('2', 'priority', 'ann', 'priority 2 → 1 by ann', '', False, (('wat', 'watching'),), False,
         '', 'sla_breached'),
    ]),
    ('status', [
        ('2', 'status', 'ann', 'status in progress → waiting by ann', '', False,
         (('wat', 'watching'),), False, '', 'sla_breached'),
    ]),
    ('comment', [
        ('2', 'comment', 'sam', 'sam commented', '@wat and @dee, see this', False,
         (('wat', 'mentioned'), ('ann', 'watching'), ('dee', 'mentioned')), True, '',
         'sla_breached'),
    ]),
    ('internal note', [
        ('2', 'internal note', 'sam', 'sam added an internal note', '@dee inside', True,
         (('wat', 'watching'), ('ann', 'watching'), ('dee', 'mentioned')), False, '',
         'sla_breached'),
    ]),
    ('comment', [
        ('2', 'comment', 'sam', 'sam commented', 'hello', False,
         (('wat', 'watching'), ('ann', 'watching')), False, '', 'sla_breached'),
    ]),
    ('comment', [
        ('2', 'comment', 'ann', 'ann commented', 'me, @ann', False, (('wat', 'watching'),), True,
         '', 'sla_breached'),
    ]),
    ('tagged', [
        ('2', 'tagged', 'ann', 'ann tagged the case b', '', False, (('wat', 'watching'),), False,
         '', 'sla_breached'),
    ]),
    ('untagged', [
        ('2', 'untagged', 'ann', 'ann removed the tag a', '', False, (('wat', 'watching'),), False,
         '', 'sla_breached'),
    ]),
    ('due', [
        ('2', 'due', 'ann', 'ann set the due time to 2026-01-02T09:00+00:00', '', False,
         (('wat', 'watching'),), False, '', 'sla_breached'),
    ]),
    ('resolved', [
        ('2', 'resolved', 'ann', 'ann resolved the case', 'Done, @wat', False,
         (('wat', 'watching'),), True, '', 'sla_breached'),
    ]),
    ('resolved', [
        ('2', 'resolved', 'ann', 'ann resolved the case', 'Done', False, (('wat', 'watching'),),
         False, '', 'sla_breached'),
    ]),
    ('reopened', [
        ('2', 'reopened', 'ann', 'ann reopened the case', '', False, (('wat', 'watching'),), False,
         '', 'sla_breached'),
    ]),
    ('closed', [
        ('2', 'closed', 'ann', 'ann closed the case', '', False, (('wat', 'watching'),), False, '',
         'sla_breached'),
    ]),
    ('attributes', [
        ('2', 'attributes', 'ann', 'ann set Region = EU', '', False, (('wat', 'watching'),), False,
         '', 'sla_breached'),
    ]),
    ('requester', [
        ('2', 'requester', 'ann', 'ann changed the requester to Ada <ada@example.com>', '', False,
         (('wat', 'watching'),), False, '', 'sla_breached'),
    ]),
    ('watched', []),
    ('unwatched', []),
    ('mail in', [
        ('2', 'mail in', 'mail',
         'reply by mail from Grace <GRACE@example.com>, reopening the case', 'Thanks', False,
         (('wat', 'watching'), ('ann', 'watching')), False, '', 'sla_breached'),
    ]),
    # Someone else's mail is internal: never mailed to the requester.
    ('mail note', [
        ('2', 'mail note', 'mail', 'internal note by mail from bob@example.org',
         'Email from bob@example.org, not the requester:\n\nFYI @wat', True,
         (('wat', 'watching'), ('ann', 'watching')), False, '', 'sla_breached'),
    ]),
    ('attached', [
        ('2', 'attached', 'ann', 'ann attached shot.png', '', False, (('wat', 'watching'),),
         False, '', 'sla_breached'),
    ]),
    # The requester's mail carries a public comment's files; an internal note's never.
    ('comment', [
        ('2', 'comment', 'sam', 'sam commented', 'See the screenshot', False,
         (('wat', 'watching'), ('ann', 'watching')), True, '', 'sla_breached', ('shot.png',)),
    ]),
    ('internal note', [
        ('2', 'internal note', 'sam', 'sam added an internal note', 'Log inside', True,
         (('wat', 'watching'), ('ann', 'watching')), False, '', 'sla_breached'),
    ]),
    ('retyped', [
        ('2', 'retyped', 'sam', "sam changed the case's type to Refund", '', False,
         (('wat', 'watching'), ('ann', 'watching')), False, '', 'sla_breached'),
    ]),
    # Issue 25's macros: the union of their parts, one notice each.
    ('macro', [
        ('2', 'macro', 'ann', 'ann applied the macro Done', 'Fixed, @dee', False,
         (('wat', 'watching'), ('dee', 'mentioned')), True, '', 'sla_breached'),
    ]),
    ('macro', [
        ('2', 'macro', 'sam', 'sam applied the macro Hand over', 'For @wat', True,
         (('wat', 'mentioned'), ('ann', 'watching'), ('bob', 'assigned')), False, '',
         'sla_breached'),
    ]),
    ('macro', [
        # An internal note is never the resolution the requester is mailed.
        ('2', 'macro', 'ann', 'ann applied the macro Internal resolve',
         'Resolved with the macro Internal resolve.', False, (('wat', 'watching'),), True, '',
         'sla_breached'),
    ]),
    ('sla breached', [
        ('2', 'sla breached', 'system', 'SLA breached', '', False,
         (('wat', 'watching'), ('ann', 'watching')), False, 'general', 'sla_breached'),
    ]),
    ('sla breached', [
        ('2', 'sla breached', 'system', 'SLA breached', '', False,
         (('wat', 'watching'), ('ann', 'watching')), False, 'general', 'sla_breached'),
    ]),
    ('sla at risk', [
        ('2', 'sla at risk', 'system', 'SLA at risk (due 2026-01-01T09:13+00:00)', '', False,
         (('wat', 'watching'), ('ann', 'sla_at_risk')), False, 'general', 'sla_at_risk'),
    ]),
    ('sla at risk', [
        ('2', 'sla at risk', 'system', 'SLA at risk (due 2026-01-01T09:13+00:00)', '', False,
         (('wat', 'watching'), ('ann', 'watching')), False, 'general', 'sla_at_risk'),
    ]),
    ('escalated', [
        ('3', 'escalated', 'system', 'escalated on breach: priority 2 → 1, to queue tier2, to esc',
         '', False, (('wat', 'watching'), ('ann', 'watching'), ('esc', 'assigned')), False, '',
         'sla_breached'),
    ]),
    ('escalated', [
        ('3', 'escalated', 'system', 'escalated on breach: priority 2 → 1, to queue tier2, to esc',
         '', False, (('wat', 'watching'), ('ann', 'watching'), ('esc', 'assigned')), False, '',
         'sla_breached'),
    ]),
    ('escalated', [
        ('3', 'escalated', 'system', 'escalated on breach: priority 2 → 1, to queue tier2', '',
         False, (('wat', 'watching'), ('ann', 'watching')), False, '', 'sla_breached'),
    ]),
    ('routed', [
        ('2', 'routed', 'system', 'routed to bob (least busy)', '', False,
         (('wat', 'watching'), ('ann', 'watching'), ('bob', 'assigned')), False, '',
         'sla_breached'),
    ]),
    ('routed', [
        ('2', 'routed', 'system', 'routed to wat (round robin)', '', False,
         (('wat', 'assigned'), ('ann', 'watching')), False, '', 'sla_breached'),
    ]),
    ('closed', [
        ('2', 'closed', 'system', 'system closed the case', '', False,
         (('wat', 'watching'), ('ann', 'watching')), False, '', 'sla_breached'),
    ]),
]
TIMELINE = [
    ('claimed', 'ann', 'ann claimed the case', False),
    ('claimed', 'system', 'system claimed the case', False),
    ('assigned', 'ann', 'ann assigned the case to in_progress → x_y', True),
    ('assigned', 'system', 'system assigned the case to in_progress → x_y', True),
    ('unassigned', 'ann', 'ann unassigned the case (in_progress → x_y)', True),
    ('unassigned', 'system', 'system unassigned the case (in_progress → x_y)', True),
    ('priority', 'ann', 'priority in_progress → x_y by ann', True),
    ('priority', 'system', 'priority in_progress → x_y by system', True),
    ('status', 'ann', 'status in progress → x y by ann', True),
    ('status', 'system', 'status in progress → x y by system', True),
    ('comment', 'ann', 'ann commented', False),
    ('comment', 'system', 'system commented', False),
    ('internal note', 'ann', 'ann added an internal note', False),
    ('internal note', 'system', 'system added an internal note', False),
    ('tagged', 'ann', 'ann tagged the case in_progress → x_y', True),
    ('tagged', 'system', 'system tagged the case in_progress → x_y', True),
    ('untagged', 'ann', 'ann removed the tag in_progress → x_y', True),
    ('untagged', 'system', 'system removed the tag in_progress → x_y', True),
    ('due', 'ann', 'ann set the due time to in_progress → x_y', True),
    ('due', 'system', 'system set the due time to in_progress → x_y', True),
    ('resolved', 'ann', 'ann resolved the case', False),
    ('resolved', 'system', 'system resolved the case', False),
    ('reopened', 'ann', 'ann reopened the case', False),
    ('reopened', 'system', 'system reopened the case', False),
    ('closed', 'ann', 'ann closed the case', False),
    ('closed', 'system', 'closed automatically after 7 quiet days', True),
    ('attributes', 'ann', 'ann set in_progress → x_y', True),
    ('attributes', 'system', 'system set in_progress → x_y', True),
    ('requester', 'ann', 'ann changed the requester to in_progress → x_y', True),
    ('requester', 'system', 'system changed the requester to in_progress → x_y', True),
    ('watched', 'ann', 'ann started watching the case', False),
    ('watched', 'system', 'system started watching the case', False),
    ('unwatched', 'ann', 'ann stopped watching the case', False),
    ('unwatched', 'system', 'system stopped watching the case', False),
    ('mail in', 'ann', 'reply by ann from in_progress → x_y', True),
    ('mail in', 'system', 'reply by system from in_progress → x_y', True),
    ('mail note', 'ann', 'internal note by ann from in_progress → x_y', True),
    ('mail note', 'system', 'internal note by system from in_progress → x_y', True),
    ('attached', 'ann', 'ann attached in_progress → x_y', True),
    ('attached', 'system', 'system attached in_progress → x_y', True),
    ('opened', 'ann', 'ann opened the case', True),
    ('opened', 'system', 'system opened the case', True),
    ('sla breached', 'ann', 'SLA breached', False),
    ('sla breached', 'system', 'SLA breached', False),
    ('sla at risk', 'ann', 'SLA at risk (in_progress → x_y)', True),
    ('sla at risk', 'system', 'SLA at risk (in_progress → x_y)', True),
    ('escalated', 'ann', 'escalated on breach: in_progress → x_y', True),
    ('escalated', 'system', 'escalated on breach: in_progress → x_y', True),
    ('routed', 'ann', 'routed to in_progress → x_y', True),
    ('routed', 'system', 'routed to in_progress → x_y', True),
    ('notified', 'ann', 'notified in_progress → x_y', True),
    ('notified', 'system', 'notified in_progress → x_y', True),
    ('ended', 'ann', 'in_progress → x_y', True),
    ('ended', 'system', 'in_progress → x_y', True),
    ('truncated', 'ann', 'earlier history is past retention and not archived', False),
    ('truncated', 'system', 'earlier history is past retention and not archived', False),
    ('continued', 'ann', 'continued by ann', False),
    ('continued', 'system', 'continued by system', False),
    ('changed', 'ann', 'changed by ann', False),
    ('changed', 'system', 'changed by system', False),
    ('retyped', 'ann', "ann changed the case's type to in_progress → x_y", True),
    ('retyped', 'system', "system changed the case's type to in_progress → x_y", True),
    ('typed', 'ann', 'typed as in_progress → x_y', True),
    ('typed', 'system', 'typed as in_progress → x_y', True),

    ('macro', 'ann', 'ann applied the macro in_progress → x_y', True),
    ('macro', 'system', 'system applied the macro in_progress → x_y', True),
    ('mystery', 'ann', 'mystery by ann', False),
    ('mystery', 'system', 'mystery by system', False),
    'closed automatically after 0 quiet seconds',
    'closed automatically after 1 quiet second',
    'closed automatically after 90 quiet seconds',
    'closed automatically after 1 quiet hour',
]
