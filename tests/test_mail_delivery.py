"""Issue 22, the delivery of notices by email: the ledger on a real PostgreSQL, a real SMTP
server (aiosmtpd) that refuses one recipient, and a real worker process killed between
sending and recording. Each mail is sent once, or refused once and said so on the timeline."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from typing import Any

import pytest

from cases import temporal as gateway
from workers.model import AddComment, Assign, Authority, Claim, Watch

from .conftest import eventually, manage, manage_in_background, run, timeline
from .test_notifications import (  # noqa: F401 (fixtures)
    ALICE,
    Inbox,
    _assert,
    _notified,
    _open,
    _text,
    people,
    serve_smtp,
    smtp,
    worker_env,
)

pytestmark = pytest.mark.django_db(transaction=True)
BOB = Authority(role="agent", queues=["technical"])


class RefusingInbox(Inbox):
    """An SMTP server that answers RCPT for some addresses with a permanent refusal (5xx),
    and for others with a temporary one (4xx) a given number of times."""

    def __init__(self, refused: dict[str, str], deferred: dict[str, int] | None = None
                 ) -> None:
        super().__init__()
        self.refused = refused
        self.deferred = dict(deferred or {})
        self.asked: list[str] = []  # every RCPT, in order

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        with self.lock:
            self.asked.append(address)
            if address in self.refused:
                return self.refused[address]
            if self.deferred.get(address, 0) > 0:
                self.deferred[address] -= 1
                return "451 4.3.0 Try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


REFUSAL = "550 5.1.1 <grace@example.net>: Recipient address rejected: no such mailbox"


def _refusals(case_id: str) -> list[str]:
    return [e.text for e in timeline(case_id) if e.kind == "mail refused"]


def test_one_refused_recipient_does_not_end_the_batch(settings, people):  # noqa: F811
    """Defect 2: the requester's mailbox does not exist (550 at RCPT). The others of the
    same batch get their mail once, the refusal is on the case's timeline once, and the
    delivery completes instead of retrying."""
    from cases.models import EmailDelivery

    inbox = RefusingInbox({"grace@example.net": REFUSAL})
    controller = serve_smtp(settings, inbox)
    settings.NOTIFY_QUIET_SECONDS = 2.0
    try:
        case_id = _open(requester_name="Grace", requester_email="grace@example.net")
        run(gateway.act(case_id, Claim(actor="bob", authority=BOB)))
        # The first notice tells the requester alone: her mail is the batch's first.
        run(gateway.act(case_id, AddComment(actor="bob", body="We are on it.", authority=BOB)))
        run(gateway.act(case_id, Watch(actor="alice", authority=ALICE)))
        run(gateway.act(case_id, AddComment(actor="bob", body="@sam have a look",
                                            authority=BOB)))
        inbox.one_to("alice@example.com", about=case_id)
        inbox.one_to("sam@example.com", about=case_id)
        eventually(lambda: _assert(len(_notified(case_id)) == 1), timeout=20, interval=0.2)
        assert _notified(case_id) == ["alice (email, in-app), sam (email, in-app)"]
        assert _refusals(case_id) == [f"mail to grace@example.net was refused: {REFUSAL}"]
        # Hers was asked before the others' (mail of earlier tests' cases may be in between).
        last = {a: i for i, a in enumerate(inbox.asked)}
        assert last["grace@example.net"] < min(last["alice@example.com"], last["sam@example.com"])
        assert inbox.to("grace@example.net", case_id) == []
        [row] = EmailDelivery.objects.filter(case_id=case_id, recipient="grace@example.net")
        assert row.outcome == "refused" and row.reply == REFUSAL
        time.sleep(2)  # a retry, were there one, would have asked again by now
        assert inbox.asked.count("grace@example.net") == 1
        assert len(inbox.to("alice@example.com", case_id)) == 1
        assert len(inbox.to("sam@example.com", case_id)) == 1
    finally:
        controller.stop()


def test_a_temporary_refusal_retries_that_mail_alone(settings, people):  # noqa: F811
    """A 451 for one address: the others are sent and recorded, the retry sends only the
    deferred one, and the timeline tells of all of them once."""
    inbox = RefusingInbox({}, deferred={"alice@example.com": 1})
    controller = serve_smtp(settings, inbox)
    settings.NOTIFY_QUIET_SECONDS = 1.0
    try:
        case_id = _open()
        run(gateway.act(case_id, Watch(actor="alice", authority=ALICE)))
        run(gateway.act(case_id, AddComment(actor="bob", body="@sam look")))
        inbox.one_to("sam@example.com", about=case_id)
        inbox.one_to("alice@example.com", about=case_id)
        eventually(lambda: _assert(len(_notified(case_id)) == 1), timeout=20, interval=0.2)
        assert _notified(case_id) == ["alice (email, in-app), sam (email, in-app)"]
        assert _refusals(case_id) == []
        assert inbox.asked.count("alice@example.com") == 2
        assert inbox.asked.count("sam@example.com") == 1
    finally:
        controller.stop()


def test_a_batch_is_bounded_and_the_rest_follows_in_the_next(
        smtp, people, settings):  # noqa: F811
    """Defect 1's bound: 30 comments of 10,000 characters in one quiet period are more than
    one delivery carries (250,000 characters); they go in two, each comment told once."""
    settings.NOTIFY_QUIET_SECONDS = 4.0
    case_id = _open()
    run(gateway.act(case_id, Watch(actor="alice", authority=ALICE)))
    for i in range(30):
        run(gateway.act(case_id, AddComment(actor="bob", body=f"Long {i} " + "x" * 9_990)))
    eventually(lambda: _assert(len(_notified(case_id)) == 2), timeout=60, interval=0.2)
    mails = smtp.to("alice@example.com")
    assert len(mails) == 2
    told = [line.split()[1] for mail in mails for line in _text(mail).splitlines()
            if line.startswith("Long ")]
    assert told == [str(i) for i in range(30)]


class SlowInbox(Inbox):
    """A mail server that takes its time over each step of one email (each well inside
    EMAIL_TIMEOUT), so the whole send takes longer than the activity's heartbeat timeout."""

    STEP = 12.0

    async def handle_MAIL(self, server: Any, session: Any, envelope: Any, address: str,
                          mail_options: list[str]) -> str:
        await asyncio.sleep(self.STEP)
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          rcpt_options: list[str]) -> str:
        await asyncio.sleep(self.STEP)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(self.STEP)
        return await super().handle_DATA(server, session, envelope)


def test_a_send_slower_than_the_heartbeat_timeout_is_not_retried_beside_itself(
        settings, people, temporal):  # noqa: F811
    """The activity beats while an email is being sent: a live send of 36 s (three SMTP
    steps of 12 s; the heartbeat timeout is 30 s) is not taken for a dead worker, so no
    retry sends the same email beside it."""
    inbox = SlowInbox()
    controller = serve_smtp(settings, inbox)
    settings.NOTIFY_QUIET_SECONDS = 0.5
    try:
        case_id = _open()
        run(gateway.act(case_id, Assign(actor="sam", assignee="bob")))
        eventually(lambda: _assert(_notified(case_id) == ["bob (email, in-app)"]),
                   timeout=120, interval=0.5)
        assert len(inbox.to("bob@example.com", case_id)) == 1
        # The first attempt completed: no retry was started while it was sending.
        history = run(temporal.client.get_workflow_handle(case_id).fetch_history())
        [started] = [e.activity_task_started_event_attributes for e in history.events
                     if e.HasField("activity_task_started_event_attributes")]
        assert started.attempt == 1
    finally:
        controller.stop()


def _answered(case_id: str) -> None:
    """The worker process took the case (it may still be starting on a busy machine)."""
    try:
        run(gateway.get_case(case_id))
    except Exception as err:  # no worker yet: the Query times out
        raise AssertionError(err) from err


def _stop(*procs: Any) -> None:
    for proc in procs:
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        if proc is not None and proc.stdout is not None and not proc.stdout.closed:
            print(proc.stdout.read())  # the worker's log, shown when the test fails


PEOPLE_ON_POSTGRES = """
from django.contrib.auth.models import Group, User
from cases.models import Queue
technical = Queue.objects.get_or_create(slug="technical", defaults={"name": "Technical"})[0]
for name, role in (("alice", "Agent"), ("sam", "Supervisor")):
    user = User.objects.create_user(name, email=f"{name}@example.com")
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    if role == "Agent":
        technical.agents.add(user)
print("ok")
"""


def test_the_ledger_on_postgresql_takes_a_batch_of_sixty_changes_and_mails_each_once(
        smtp, settings, tmp_path, temporal, postgres_server):  # noqa: F811
    """Defect 1: a watched case told of 60 comments in one quiet period. The worker keeps
    its ledger on PostgreSQL (a process of its own, as production runs it): the row is
    written, the delivery completes, and each person has exactly one mail telling all 60."""
    import psycopg

    database = postgres_server.new_database()
    env = worker_env(settings, database, tmp_path, temporal)
    made = manage(["shell", "-c", PEOPLE_ON_POSTGRES], env)
    assert made.returncode == 0, made.stderr
    queue = f"notify-pg-{uuid.uuid4().hex[:6]}"
    settings.TEMPORAL_TASK_QUEUE = queue
    settings.NOTIFY_QUIET_SECONDS = 5.0  # the 60 comments land in one quiet period
    worker = manage_in_background(["run_worker", "--task-queue", queue, "--wait", "30"], env)
    try:
        case_id = _open(requester_name="Grace", requester_email="grace@example.net")
        eventually(lambda: _answered(case_id), timeout=60, interval=0.5)
        run(gateway.act(case_id, Watch(actor="alice", authority=ALICE)))
        for i in range(60):
            run(gateway.act(case_id, AddComment(actor="bob", body=f"Change {i}")))
        eventually(lambda: _assert(len(_notified(case_id)) == 1), timeout=120, interval=0.5)
        for address in ("alice@example.com", "grace@example.net"):
            [mail] = smtp.to(address)
            lines = {line.strip() for line in _text(mail).splitlines()}
            assert {f"Change {i}" for i in range(60)} <= lines, address
        assert _notified(case_id) == ["alice (email, in-app), grace@example.net (email)"]
        with psycopg.connect(database) as db:
            rows = db.execute("SELECT recipient, message_id, outcome FROM cases_emaildelivery"
                              " WHERE case_id = %s ORDER BY recipient", (case_id,)).fetchall()
        assert [(r, o) for r, _, o in rows] == [("alice", "sent"),
                                                ("grace@example.net", "sent")]
        assert {m for _, m, _ in rows} == {
            smtp.to(a)[0]["Message-ID"].strip() for a in ("alice@example.com",
                                                           "grace@example.net")}
        time.sleep(2)
        assert len(smtp.to("alice@example.com")) == len(smtp.to("grace@example.net")) == 1
    finally:
        _stop(worker)


def test_a_worker_killed_between_sending_and_recording_does_not_send_twice(
        smtp, settings, tmp_path, temporal):  # noqa: F811
    """The ledger's row is claimed before the send and marked sent after it: the worker
    (a process of its own) sends and dies before marking; the worker that takes over finds
    the claim and sends nothing (first wins). The SMTP server has the Message-ID once."""
    import sqlite3

    database = tmp_path / "worker.sqlite3"
    env = worker_env(settings, f"sqlite:///{database}", tmp_path, temporal)
    queue = f"notify-kill-{uuid.uuid4().hex[:6]}"
    settings.TEMPORAL_TASK_QUEUE = queue
    worker_args = ["run_worker", "--task-queue", queue, "--wait", "30"]
    faulty = manage_in_background(worker_args, {**env, "NOTIFY_FAULT": "exit-after-send"})
    healthy = None
    try:
        case_id = _open(requester_name="Grace", requester_email="grace@example.net")
        eventually(lambda: _answered(case_id), timeout=60, interval=0.5)
        run(gateway.act(case_id, AddComment(actor="intake", body="Once, please.")))
        out, _ = faulty.communicate(timeout=60)
        assert faulty.returncode == 3, out  # os._exit right after the send
        [first] = smtp.to("grace@example.net")
        mid = first["Message-ID"].strip()
        with sqlite3.connect(database) as db:
            assert db.execute("SELECT outcome FROM cases_emaildelivery WHERE message_id = ?",
                              (mid,)).fetchall() == [("sending",)]
        healthy = manage_in_background(worker_args, env)
        eventually(lambda: _assert(_notified(case_id) == ["grace@example.net (email)"]),
                   timeout=90, interval=0.5)
        assert [m["Message-ID"].strip() for m in smtp.to("grace@example.net")] == [mid]
    finally:
        _stop(faulty, healthy)
