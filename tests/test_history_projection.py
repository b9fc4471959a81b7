"""The case rebuilt from its event history by the workflow's own rules, on the real server."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings

from cases import temporal as gateway
from cases.temporal.ids import new_case_id
from workers.model import (
    AddComment,
    AddTag,
    ApplyMacro,
    Assign,
    Attach,
    Authority,
    CaseInput,
    CaseState,
    ChangeRequester,
    Claim,
    Close,
    FileRef,
    MacroChanges,
    NewCase,
    QueuePolicy,
    ReceiveMail,
    RemoveTag,
    Reopen,
    Resolve,
    SetDue,
    SetPriority,
    SetStatus,
    Unwatch,
    Watch,
)
from workers.rules import MAIL_ACTOR, file_key

from .conftest import _persona, eventually, run

AGENT = Authority(role="agent", queues=["technical", "general"])


def _scripted_commands(files: list | None = None) -> list:
    """About forty actions of every kind, by several people, with and without authority;
    given kept files (issue 23), some attached on their own and some with comments."""
    alice = {"actor": "alice", "authority": AGENT}
    commands: list = [Claim(**alice), Watch(actor="bob"), Watch(**alice)]
    if files:
        commands += [
            Attach(**alice, files=files[:2]),
            AddComment(**alice, body="The screenshot", files=files[2:3]),
            AddComment(actor="bob", body="Log", internal=True, files=files[1:3]),
        ]
    for i in range(6):
        commands.append(AddComment(**alice, body=f"Looked at it, step {i}", internal=i % 2 == 1))
    commands += [
        AddTag(**alice, tag="printer"),
        AddTag(**alice, tag="fire"),
        SetStatus(**alice, status="waiting"),
        AddComment(actor="intake", body="Customer replied"),
        SetStatus(**alice, status="in_progress"),
        RemoveTag(**alice, tag="fire"),
        SetPriority(actor="sam", priority=2),
        ChangeRequester(**alice, name="Grace Hopper", email="grace@example.com"),
        Assign(actor="sam", assignee="bob"),
        AddComment(actor="bob", body="Taking over, @sam"),
        Unwatch(actor="bob"),
        SetPriority(actor="sam", priority=4),
        Assign(actor="sam", assignee=None),
        Claim(actor="alice", authority=AGENT),
    ]
    for i in range(8):
        commands.append(AddComment(**alice, body=f"Progress {i}"))
    commands += [
        AddTag(**alice, tag="hardware"),
        Resolve(**alice, resolution="Replaced the fuser."),
        Reopen(actor="intake", reason="Still smoking"),
        AddComment(**alice, body="Back on it"),
        SetStatus(**alice, status="waiting"),
        SetStatus(**alice, status="in_progress"),
        RemoveTag(**alice, tag="hardware"),
        ChangeRequester(actor="sam", name="Grace B. Hopper", email="gbh@example.com"),
        # Mail in (issue 23): the requester's reply, someone else's (an internal note), and a
        # reply that reopens the resolved case.
        ReceiveMail(actor=MAIL_ACTOR, sender_name="Grace", sender_email="GBH@example.com",
                    message_id="<r1@example.com>", body="Thanks",
                    original=FileRef("message.eml", 120, "message/rfc822", "0" * 64,
                                     file_key("0" * 64))),
        ReceiveMail(actor=MAIL_ACTOR, sender_name="", sender_email="bob@elsewhere.example",
                    message_id="<r2@elsewhere.example>", body="FYI"),
        Resolve(**alice, resolution="Replaced the fuser, again."),
        ReceiveMail(actor=MAIL_ACTOR, sender_name="Grace", sender_email="gbh@example.com",
                    message_id="<r3@example.com>", body="Still smoking"),
        # Issue 25: macros, a reply and several changes in one Update each.
        ApplyMacro(**alice, macro="Waiting on the customer", body="Could you send a photo?",
                   changes=MacroChanges(status="waiting", priority=3, add_tags=["photo"])),
        ApplyMacro(**alice, macro="Got it", body="Photo came, @bob", internal=True,
                   changes=MacroChanges(status="in_progress", remove_tags=["photo"],
                                        assignee="alice")),
    ]
    return commands


def test_time_travel_equals_the_live_case_after_every_event(temporal, settings,
                                                            transactional_db):
    # Priority 1 is due a second after opening, so raising priority late breaches at once
    # (no timer); a due time set a moment ahead breaches by timer. Quiet period: 1 s.
    settings.CASE_SLA_SECONDS = [1, 3600, 3600, 3600]
    # A due time set two seconds ahead is at risk after a quarter of them (issue 17).
    settings.CASE_SLA_AT_RISK = [0.25, 0.75, 0.75, 0.75]
    settings.CASE_AUTO_CLOSE_SECONDS = 1
    # Notifications on: deliveries go on the timeline between the changes, which the
    # projection must replay without disturbing a single state.
    settings.NOTIFY_QUIET_SECONDS = 0.2
    _persona("alice", "Agent", queues=("technical", "general"))
    _persona("bob", "Agent", queues=("technical",))
    _persona("sam", "Supervisor")
    from cases.files import store
    kept = [store.keep(f"file {n}\n".encode(), f"note-{n}.txt") for n in range(4)]
    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(title="Printer on fire", queue="technical",
                                            files=kept[3:]), "intake"))
    seen: dict[int, CaseState] = {}

    def observe(state: CaseState) -> None:
        live = run(gateway.get_case(case_id))
        seen[state.version] = state
        seen[live.version] = live

    observe(run(gateway.get_case(case_id)))

    def took_its_queues_rules() -> None:
        # Opened without its queue's policy, it asks (issue 22) and takes it as a version of
        # its own: seen live before any command, so every version is.
        live = run(gateway.get_case(case_id))
        seen[live.version] = live
        assert live.version >= 2

    eventually(took_its_queues_rules, timeout=20, interval=0.05)
    commands = _scripted_commands(kept)
    for command in commands:
        observe(run(gateway.act(case_id, command)))
    # A macro refused whole (bob may not close alice's case) records nothing: no version.
    with pytest.raises(gateway.ActionRefused, match=r"^Close: This case is held by alice"):
        run(gateway.act(case_id, ApplyMacro(actor="bob", authority=AGENT, macro="Close",
                                            body="Closing.", changes=MacroChanges(
                                                status="closed"))))
    time.sleep(1.1)
    observe(run(gateway.act(case_id, SetPriority(actor="sam", priority=1))))
    assert seen[max(seen)].sla_breached, "raising the priority past its due time breaches"
    observe(run(gateway.act(case_id, SetDue(
        actor="sam", due_at=datetime.now(UTC) + timedelta(seconds=2)))))

    def at_risk_by_timer() -> None:
        live = run(gateway.get_case(case_id))
        assert live.at_risk
        seen[live.version] = live

    eventually(at_risk_by_timer, timeout=20, interval=0.05)
    def breached_by_timer() -> None:
        live = run(gateway.get_case(case_id))
        assert live.sla_breached
        seen[live.version] = live

    eventually(breached_by_timer, timeout=20, interval=0.1)
    observe(run(gateway.act(case_id, Resolve(actor="alice", authority=AGENT,
                                               resolution="Fixed for good."))))
    handle = temporal.client.get_workflow_handle(case_id, result_type=CaseState)
    final = run(handle.result())
    seen[final.version] = final
    assert final.status == "closed"

    projection = run(gateway.case_history(case_id)).projection
    changes = [e for e in projection.entries if e.kind != "notified"]
    versions = [e.state.version for e in changes if e.state is not None]
    # One entry per change, every change seen live, and each equal to what was seen.
    assert versions == list(range(1, final.version + 1))
    assert sorted(seen) == versions
    # Opened, the scripted commands, priority, due time, two breaches, resolved, closed, the
    # due time's at-risk warning (issue 17) before its breach, and the queue's rules the case
    # asked for, started without them (issue 22).
    assert len(versions) == 1 + len(commands) + 8
    attached = next(e for e in projection.entries if e.kind == "attached")
    assert attached.text == "alice attached note-0.txt, note-1.txt"
    assert [e.kind for e in changes][1] == "queue rules"
    for entry in projection.entries:
        if entry.kind == "notified":
            # A delivery marks the public comments it emailed (Comment.mailed_to) without a
            # new version: the rest is the version as seen live, the marks are checked below.
            assert _unmarked(entry.state) == _unmarked(seen[entry.state.version]), entry.text
        else:
            assert entry.state == seen[entry.state.version], entry.text
        assert not entry.diverged
    # The requester's emails, marked on the comments they carried, as the workflow marked them.
    marked = [c for c in final.comments if c.mailed_to]
    assert marked and not any(c.internal or c.via for c in marked)
    assert {a for c in marked for a in c.mailed_to} <= {"grace@example.com", "gbh@example.com"}
    # Who was told, as the deliveries answered: bob of his assignment (and as a watcher,
    # before he stopped), sam of his mention and the breaches, alice as a watcher.
    told = [e.detail for e in projection.entries if e.kind == "notified"]
    assert told and all(d for d in told)
    assert {"alice (in-app)", "bob (in-app)", "sam (in-app)"} <= {
        part for d in told for part in d.split(", ")}
    kinds = [e.kind for e in changes]
    assert {"watched", "unwatched", "attached"} <= set(kinds)
    # Files at opening, on their own, with a comment and with a note: numbered in order.
    assert [(a.id, a.file.name, a.comment) for a in final.attachments] == [
        ("a1", "note-3.txt", None), ("a2", "note-0.txt", None), ("a3", "note-1.txt", None),
        ("a4", "note-2.txt", 0), ("a5", "note-1.txt", 1), ("a6", "note-2.txt", 1),
        ("a7", "message.eml", 19)]  # the requester's mail as received (issue 23)
    assert [c.attachments for c in final.comments[:2]] == [["a4"], ["a5", "a6"]]
    mails = [c for c in final.comments if c.via == "email"]
    assert [(c.internal, c.original, c.message_id) for c in mails] == [
        (False, "a7", "<r1@example.com>"), (True, "", "<r2@elsewhere.example>"),
        (False, "", "<r3@example.com>")]
    assert kinds.count("mail in") == 2 and kinds.count("mail note") == 1
    assert kinds.count("sla breached") == 2 and kinds[-1] == "closed"
    assert kinds.count("sla at risk") == 1
    assert kinds[-4:] == ["sla at risk", "sla breached", "resolved", "closed"]
    changed = [e for e in projection.entries if e.kind == "requester"]
    assert [e.text for e in changed] == [
        "alice changed the requester to Grace Hopper <grace@example.com>",
        "sam changed the requester to Grace B. Hopper <gbh@example.com>"]
    assert [e.note for e in changed] == ["", ""]
    assert final.requester.email == "gbh@example.com"
    macros = [e for e in changes if e.kind == "macro"]
    assert [e.text for e in macros] == ["alice applied the macro Waiting on the customer",
                                        "alice applied the macro Got it"]
    assert "Closing." not in [c.body for c in final.comments]


def _unmarked(state: CaseState) -> CaseState:
    return replace(state, comments=[replace(c, mailed_to=[]) for c in state.comments])


def _continued_case(temporal, title: str, event_limit: int, *commands) -> tuple[str, str]:
    """A case that continues as new every `event_limit` events, worked by `commands` until
    it has; returns its id and its first run's id."""
    case_id = new_case_id()
    handle = run(temporal.client.start_workflow(
        "Case",
        CaseInput(case_id=case_id, actor="intake", new=NewCase(title=title, queue="general"),
                  policy=QueuePolicy("general"), history_event_limit=event_limit),
        id=case_id, task_queue=settings.TEMPORAL_TASK_QUEUE,
    ))
    first_run = handle.result_run_id
    assert first_run is not None
    for command in commands:
        run(gateway.act(case_id, command))

    def continued() -> None:
        assert run(temporal.client.get_workflow_handle(case_id).describe()).run_id != first_run

    eventually(continued, timeout=20)
    return case_id, first_run


def test_continued_as_new_case_has_one_continuous_timeline(temporal):
    case_id, first_run = _continued_case(
        temporal, "Long running", 25, Claim(actor="alice"),
        *(AddComment(actor="alice", body=f"note {i}") for i in range(14)))
    run(gateway.act(case_id, AddTag(actor="alice", tag="long")))
    live = run(gateway.get_case(case_id))

    projection = run(gateway.case_history(case_id)).projection
    assert len(projection.run_ids) >= 2 and projection.run_ids[0] == first_run
    assert [e.state.version for e in projection.entries] == list(range(1, live.version + 1))
    assert projection.entries[0].text == "intake opened the case"
    assert projection.entries[-1].text == "alice tagged the case long"
    assert projection.state == live
    assert not projection.truncated and not any(e.diverged for e in projection.entries)
    # Entries from the first run point into the first run.
    assert projection.entries[0].run_id == first_run
    order = [projection.run_ids.index(e.run_id) for e in projection.entries]
    assert order == sorted(order) and order[-1] >= 1
    run(gateway.act(case_id, Close(actor="alice")))


def test_where_todays_rules_disagree_with_the_record_the_record_wins(open_case, monkeypatch):
    from dataclasses import replace

    from workers import rules

    case_id = open_case(queue="general")
    run(gateway.act(case_id, AddTag(actor="alice", tag="vip")))
    run(gateway.act(case_id, AddComment(actor="alice", body="after the tag")))
    live = run(gateway.get_case(case_id))
    original = rules.rule_for(AddTag)

    def shouting(state, command, now, sla):  # a rule change made after the fact
        effect = original.decide(state, command, now, sla)
        return replace(effect, changes={"tags": [t.upper() for t in effect.changes["tags"]]})

    monkeypatch.setitem(rules._BY_COMMAND, AddTag, replace(original, decide=shouting))
    projection = run(gateway.case_history(case_id)).projection
    tagged = next(e for e in projection.entries if e.kind == "tagged")
    assert tagged.diverged and tagged.state.tags == ["vip"]
    assert not projection.entries[-1].diverged and projection.state == live


def test_earlier_runs_past_retention_start_the_timeline_where_history_is_kept(temporal,
                                                                             monkeypatch):
    from temporalio.client import WorkflowHandle
    from temporalio.service import RPCError, RPCStatusCode

    case_id, first_run = _continued_case(
        temporal, "Older than retention", 20,
        *(AddComment(actor="alice", body=f"note {i}") for i in range(6)))
    run(gateway.act(case_id, AddTag(actor="alice", tag="kept")))
    live = run(gateway.get_case(case_id))
    # What retention does to a run that continued as new (the dev server will not delete
    # one on request): GetWorkflowExecutionHistory answers NOT_FOUND for it.
    fetch = WorkflowHandle.fetch_history

    async def past_retention(self, **kwargs):
        if self.run_id == first_run:
            raise RPCError("workflow execution not found", RPCStatusCode.NOT_FOUND, b"")
        return await fetch(self, **kwargs)

    monkeypatch.setattr(WorkflowHandle, "fetch_history", past_retention)
    projection = run(gateway.case_history(case_id)).projection
    assert first_run not in projection.run_ids and projection.truncated
    assert projection.entries[0].text == "earlier history is past retention and not archived"
    assert projection.entries[0].state.version > 1  # the state the kept run started from
    assert projection.state == live and projection.entries[-1].text == "alice tagged the case kept"
    versions = [e.state.version for e in projection.entries]
    assert versions == list(range(versions[0], live.version + 1))
    run(gateway.act(case_id, Close(actor="alice")))
