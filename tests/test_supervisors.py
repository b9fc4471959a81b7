"""The queue's supervisors and the escalation target (issue 22, defect 6): who is told of a
breach (supervisors, admins among them), the same people the dashboard shows, and a breach
that never gives a case to someone who cannot see it. The real dev server and worker, a real
SMTP server (aiosmtpd), the real admin form."""

from __future__ import annotations

import re
from typing import Any

import pytest

from cases import temporal as gateway
from workers.model import NewCase

from .conftest import _persona, eventually, logged_in, run, timeline
from .test_notifications import smtp  # noqa: F401  (the SMTP sink fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def _open(queue: str = "technical", priority: int = 1, title: str = "Breach me") -> str:
    """Opened as the web form and the API open cases: with the queue's policy of now."""
    from cases.config.queue_policy import policy_of
    from cases.temporal.ids import new_case_id

    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(title=title, queue=queue, priority=priority),
                           "intake", policy=run(policy_of(queue))))
    return case_id


def _with_email(*users: Any) -> None:
    for user in users:
        user.email = f"{user.username}@example.com"
        user.save(update_fields=["email"])


def _breach_fast(settings: Any) -> None:
    settings.CASE_SLA_SECONDS = [2, 3600, 3600, 3600]
    settings.CASE_SLA_AT_RISK = [1, 1, 1, 1]  # no warning first


def test_supervisors_who_are_admins_are_told_of_a_breach(smtp, temporal, settings):  # noqa: F811
    """sue is a supervisor and a superuser, ada a supervisor in the Admin group too: both
    supervise, so both hear of the breach like sam; root, an admin who supervises nothing,
    does not (docs/decisions.md)."""
    from django.contrib.auth.models import Group

    from cases.models import Notification

    _breach_fast(settings)
    sam = _persona("sam", "Supervisor")
    sue = _persona("sue", "Supervisor", staff=True)
    ada = _persona("ada", "Supervisor")
    ada.groups.add(Group.objects.get_or_create(name="Admin")[0])
    root = _persona("root", "Admin", staff=True)
    _with_email(sam, sue, ada, root)
    case_id = _open()
    for name in ("sam", "sue", "ada"):
        mail = smtp.one_to(f"{name}@example.com", timeout=30)
        assert "SLA breached" in str(mail.get_body(preferencelist=("plain",)).get_content())

    def in_app() -> None:
        told = set(Notification.objects.filter(case_id=case_id, kind="sla_breached")
                   .values_list("user__username", flat=True))
        assert told == {"sam", "sue", "ada"}, told

    eventually(in_app, timeout=20, interval=0.2)
    assert smtp.to("root@example.com") == []


def _dashboard_supervisors(client: Any, queue_name: str) -> set[str]:
    page = client.get("/dashboard/").content.decode()
    row = re.search(rf'<th scope="row">{queue_name}</th>(.*?)</tr>', page, re.S)
    assert row is not None, page[:3000]
    cell = re.search(r'<td class="queue-supervisors">(.*?)</td>', row.group(1), re.S)
    assert cell is not None, row.group(1)
    text = cell.group(1).strip()
    return set() if text == "—" else {n.strip() for n in text.split(",")}


def test_the_dashboard_shows_the_supervisors_a_breach_tells(smtp, temporal,  # noqa: F811
                                                             settings):
    """One function says who the queue's supervisors are: the dashboard's per-queue row
    names exactly the people the breach then tells."""
    from cases.models import Notification

    _breach_fast(settings)
    sam = _persona("sam", "Supervisor")
    sue = _persona("sue", "Supervisor", staff=True)
    root = _persona("root", "Admin", staff=True)
    gone = _persona("gone", "Supervisor")
    gone.is_active = False
    gone.save(update_fields=["is_active"])
    _persona("alice", "Agent", queues=("technical",))
    _with_email(sam, sue, root)
    shown = _dashboard_supervisors(logged_in(root), "Technical")
    assert shown == {"sam", "sue"}
    case_id = _open()

    def told() -> set[str]:
        found = set(Notification.objects.filter(case_id=case_id, kind="sla_breached")
                    .values_list("user__username", flat=True))
        assert found == shown, found
        return found

    eventually(told, timeout=30, interval=0.2)


def _admin_change(client: Any, queue: Any, **changes: Any) -> Any:
    data = {"slug": queue.slug, "name": queue.name, "routing": queue.routing,
            "calendar": "", "agents": [u.pk for u in queue.agents.all()],
            "escalate_to_queue": "", "escalate_to": "", "email": queue.email,
            "reply_default": queue.reply_default}
    if queue.escalate_raise_priority:
        data["escalate_raise_priority"] = "on"
    data.update(changes)
    return client.post(f"/admin/cases/queue/{queue.pk}/change/", data)


def test_the_admin_form_refuses_an_escalation_target_who_cannot_see_the_target_queue(
        temporal):
    from cases.models import Queue

    root = _persona("root", "Admin", staff=True)
    carol = _persona("carol", "Agent", queues=("billing",))
    bob = _persona("bob", "Agent", queues=("technical",))
    sam = _persona("sam", "Supervisor")
    client = logged_in(root)
    technical = Queue.objects.get(slug="technical")
    billing = Queue.objects.get(slug="billing")
    # carol works billing only: technical's cases (no target queue: they stay in technical)
    # are not hers to see.
    refused = _admin_change(client, technical, escalate_to=carol.pk)
    assert refused.status_code == 200
    page = refused.content.decode()
    assert "carol cannot see the cases of Technical" in page, page[:3000]
    assert Queue.objects.get(slug="technical").escalate_to is None
    # Nor bob billing's, when the case moves there.
    refused = _admin_change(client, technical, escalate_to=bob.pk,
                            escalate_to_queue=billing.pk)
    assert "bob cannot see the cases of Billing" in refused.content.decode()
    assert Queue.objects.get(slug="technical").escalate_to is None
    # Made an agent of technical in the same save: accepted.
    saved = _admin_change(client, technical, escalate_to=carol.pk,
                          agents=[bob.pk, carol.pk])
    assert saved.status_code == 302, saved.content.decode()[:3000]
    assert Queue.objects.get(slug="technical").escalate_to == carol
    # Into billing to carol, and a supervisor anywhere: accepted.
    for person, target in ((carol, billing.pk), (sam, billing.pk), (sam, "")):
        saved = _admin_change(client, Queue.objects.get(slug="technical"),
                              escalate_to=person.pk, escalate_to_queue=target)
        assert saved.status_code == 302, saved.content.decode()[:3000]


def test_a_breach_never_gives_a_case_to_someone_who_cannot_see_it(temporal, settings):
    """Saved while bob worked technical; bob has left technical by the time the case
    breaches: the case stays in its queue with nobody, and the timeline says why. The
    history projection tells the same."""
    from cases.models import Queue

    settings.CASE_SLA_SECONDS = [3600, 3600, 1, 3600]
    settings.NOTIFY_QUIET_SECONDS = 0.2
    bob = _persona("bob", "Agent", queues=("technical",))
    alice = _persona("alice", "Agent", queues=("technical",))
    Queue.objects.filter(slug="technical").update(escalate_to=bob,
                                                  escalate_raise_priority=True)
    # The case keeps the policy it was opened under; the queue's agents change under it.
    case_id = _open(priority=3)
    Queue.objects.get(slug="technical").agents.remove(bob)
    from workers.model import Assign

    run(gateway.act(case_id, Assign(actor="sam", assignee=alice.username)))

    def escalated():
        state = run(gateway.get_case(case_id))
        assert state.sla_breached
        assert any(e.kind == "escalated" for e in timeline(case_id))
        return state

    state = eventually(escalated, timeout=20, interval=0.1)
    assert state.assignee is None and state.queue == "technical" and state.priority == 2
    lines = [e.text for e in timeline(case_id)]
    assert ("escalated on breach: priority 3 → 2, not to bob (bob cannot see the cases of "
            "Technical), left unassigned") in lines, lines
    projection = run(gateway.case_history(case_id)).projection
    entries = [e for e in projection.entries if e.kind != "notified"]
    assert [e.kind for e in entries][-2:] == ["sla breached", "escalated"]
    assert entries[-1].state == state and not any(e.diverged for e in entries)


def test_the_rule_gives_nobody_a_case_the_person_cannot_see():
    from datetime import UTC, datetime, timedelta
    from uuid import uuid4

    from workers import rules
    from workers.model import Escalation, SlaPolicy

    now = datetime(2026, 3, 2, 9, tzinfo=UTC)
    policy = SlaPolicy(escalation=Escalation(to_queue="billing", to_assignee="bob"))
    state = rules.open_case(f"case-{uuid4().hex[:8].upper()}",
                            NewCase(title="t", queue="technical"), "x", policy, now)
    state = rules.apply(state, rules.sla_breach(state, state.due_at + timedelta(seconds=1)),
                        "system", now)
    why = "bob cannot see the cases of Billing"
    effect = rules.escalation(state, policy, why)
    assert effect.changes == {"queue": "billing"}
    assert effect.detail == f"to queue billing, not to bob ({why})"
    # Nothing else to change: still a line, so the timeline says why nobody has it.
    alone = SlaPolicy(escalation=Escalation(to_assignee="bob"))
    effect = rules.escalation(state, alone, why)
    assert effect.changes == {} and effect.detail == f"not to bob ({why})"
    after = rules.apply(state, effect, "system", now)
    assert rules.notices_for(state, after, effect, "system") == []
    held = rules.apply(state, rules.Effect("assigned", "ann", {"assignee": "ann"}), "x", now)
    assert rules.escalation(held, alone, why).changes == {"assignee": None}
