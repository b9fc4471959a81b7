"""Notifications (issue 16) end to end: the real dev server and worker, and a real SMTP
server on loopback (aiosmtpd). The worker's delivery reads users from the database on its
own threads, so these tests commit (transactional_db)."""

from __future__ import annotations

import email
import email.policy
import json
import os
import signal
import subprocess
import threading
import time
from datetime import timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from cases import temporal as gateway
from cases.mailin import tokens
from workers.model import (
    AddComment,
    Assign,
    Authority,
    Claim,
    NewCase,
    Resolve,
    Watch,
)

from .conftest import (
    TEMPORAL_BIN,
    _persona,
    eventually,
    free_port,
    logged_in,
    manage,
    run,
    timeline,
)

pytestmark = pytest.mark.django_db(transaction=True)
ALICE = Authority(role="agent", queues=["technical", "general"])


class Inbox:
    """What the SMTP server received, as parsed messages."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.messages: list[EmailMessage] = []
        self.cases: set[str] = set()  # the cases this test opened with `_open`

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.original_content or envelope.content,
                                          policy=email.policy.default)
        with self.lock:
            self.messages.append(parsed)  # type: ignore[arg-type]
        return "250 OK"

    def to(self, address: str, about: str = "") -> list[EmailMessage]:
        """Mail to `address` about the case `about`, or else about the cases this test
        opened (once it has opened one): cases of earlier tests on the same server may still
        be telling the same people (CI: an earlier test's case mailed bob in the middle of
        another test's `one_to("bob@…")`)."""
        def ours(subject: str) -> bool:
            if about:
                return about in subject
            return not self.cases or any(case_id in subject for case_id in self.cases)

        with self.lock:
            return [m for m in self.messages if address in str(m["To"])
                    and ours(str(m["Subject"]))]

    def one_to(self, address: str, timeout: float = 20, about: str = "") -> EmailMessage:
        def arrived() -> EmailMessage:
            found = self.to(address, about)
            assert len(found) == 1, [m["Subject"] for m in found]
            return found[0]

        return eventually(arrived, timeout=timeout, interval=0.1)


def serve_smtp(settings: Any, inbox: Inbox) -> Controller:
    """A real SMTP server on a free port handing what it takes to `inbox`, and Django's
    mail settings pointed at it."""
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = False
    settings.SITE_URL = "https://desk.example.org"
    settings.DEFAULT_FROM_EMAIL = "Tracerail <help@example.org>"
    return controller


def worker_env(settings: Any, database_url: str, tmp_path: Any, temporal: Any
                ) -> dict[str, str]:
    """The environment of a worker process of its own (production settings, a database of
    its own at `database_url`, this test's Temporal and SMTP), its database migrated."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tracerail.settings",
           "TRACERAIL_VAR_DIR": str(tmp_path), "DATABASE_URL": database_url,
           "TEMPORAL_ADDRESS": temporal.address, "EMAIL_HOST": "127.0.0.1",
           "EMAIL_PORT": str(settings.EMAIL_PORT), "SITE_URL": settings.SITE_URL,
           "DEFAULT_FROM_EMAIL": settings.DEFAULT_FROM_EMAIL, "REDIS_URL": ""}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    migrated = manage(["migrate", "--noinput"], env)
    assert migrated.returncode == 0, migrated.stderr
    return env


@pytest.fixture
def smtp(settings: Any) -> Any:
    inbox = Inbox()
    controller = serve_smtp(settings, inbox)
    _SINKS.append(inbox)
    settings.NOTIFY_QUIET_SECONDS = 0.5
    try:
        yield inbox
    finally:
        _SINKS.remove(inbox)
        controller.stop()


_SINKS: list[Inbox] = []  # the running test's SMTP sink, told of the cases `_open` opens


@pytest.fixture
def people(temporal: Any) -> dict[str, Any]:
    """alice (technical, general), bob (technical), carol (billing only), sam (supervisor);
    each with <name>@example.com."""
    found = {
        "alice": _persona("alice", "Agent", queues=("technical", "general")),
        "bob": _persona("bob", "Agent", queues=("technical",)),
        "carol": _persona("carol", "Agent", queues=("billing",)),
        "sam": _persona("sam", "Supervisor"),
    }
    for name, user in found.items():
        user.email = f"{name}@example.com"
        user.save(update_fields=["email"])
    return found


def _open(title: str = "Printer on fire", queue: str = "technical", **fields: Any) -> str:
    from cases.config.queue_policy import queue_policy
    from cases.temporal.ids import new_case_id

    case_id = new_case_id()
    # With its queue's policy, as the web opens a case (one without asks for it: issue 22).
    for sink in _SINKS:
        sink.cases.add(case_id)
    run(gateway.start_case(case_id, NewCase(title=title, queue=queue, **fields), "intake",
                           queue_policy(queue)))
    return case_id


def _notified(case_id: str) -> list[str]:
    return [e.detail for e in timeline(case_id) if e.kind == "notified"]


def _text(message: EmailMessage) -> str:
    part = message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def test_an_assignment_by_someone_else_mails_and_notifies_the_assignee(smtp, people):
    from cases.models import EmailDelivery, Notification

    case_id = _open(title="Toner everywhere")
    run(gateway.act(case_id, Claim(actor="alice", authority=ALICE)))  # by oneself: nobody
    run(gateway.act(case_id, Assign(actor="sam", assignee="bob")))
    mail = smtp.one_to("bob@example.com")
    assert mail["Subject"] == f"[{case_id}] Toner everywhere"
    thread = f"<{case_id}@desk.example.org>"
    assert mail["In-Reply-To"] == thread and mail["References"] == thread
    assert mail["Message-ID"].startswith(f"<{case_id}.v") and "@desk.example.org>" in \
        mail["Message-ID"]
    text = _text(mail)
    assert "sam assigned the case to bob" in text
    assert f"https://desk.example.org/cases/{case_id}/" in text
    assert "https://desk.example.org/notifications/settings/" in text
    html = mail.get_body(preferencelist=("html",))
    assert html is not None and f'href="https://desk.example.org/cases/{case_id}/"' in \
        str(html.get_content())
    assert smtp.to("alice@example.com") == []
    note = Notification.objects.get(user=people["bob"], case_id=case_id)
    assert note.kind == "assigned" and note.read_at is None
    # Recorded right after the send (the mail can arrive a moment before).
    eventually(lambda: _assert(EmailDelivery.objects.filter(
        message_id=mail["Message-ID"]).exists()))
    eventually(lambda: _assert(_notified(case_id) == ["bob (email, in-app)"]), timeout=10)


def _assert(condition: bool) -> None:
    assert condition


def test_watchers_and_mentions_are_told_and_a_mention_outside_the_queue_is_not(smtp, people):
    from cases.models import Notification

    case_id = _open()
    run(gateway.act(case_id, Watch(actor="alice", authority=ALICE)))
    run(gateway.act(case_id, AddComment(actor="bob", body="@carol and @sam, look")))
    to_alice = smtp.one_to("alice@example.com")
    assert "bob commented" in _text(to_alice) and "@carol and @sam, look" in _text(to_alice)
    assert Notification.objects.get(user=people["alice"], case_id=case_id).kind == "watching"
    assert Notification.objects.get(user=people["sam"], case_id=case_id).kind == "mentioned"
    smtp.one_to("sam@example.com")
    # carol works billing only: the technical case is not hers to see, so she is told nothing.
    time.sleep(1.5)
    assert smtp.to("carol@example.com") == []
    assert not Notification.objects.filter(user=people["carol"]).exists()
    assert smtp.to("bob@example.com") == []  # nobody is told of their own doing
    [line] = _notified(case_id)
    assert "carol" not in line and "alice (email, in-app)" in line


def test_the_requester_hears_of_public_comments_and_resolution_never_internal_notes(
        smtp, people):
    case_id = _open(requester_name="Grace", requester_email="grace@example.net")
    run(gateway.act(case_id, Claim(actor="alice", authority=ALICE)))
    run(gateway.act(case_id, AddComment(actor="alice", body="We are on it.",
                                        authority=ALICE)))
    mail = smtp.one_to("grace@example.net")
    assert "We are on it." in _text(mail)
    # Her reply address names the case with a signature only this site can make (issue 23).
    assert mail["Reply-To"] == f"help+{tokens.token(case_id)}@example.org"
    assert tokens.case_of_address(str(mail["Reply-To"])) == case_id
    assert "/notifications/settings/" not in _text(mail)  # she has no account
    # An internal note that tells someone else (a mention): a delivery runs, not to her.
    run(gateway.act(case_id, AddComment(actor="alice", body="Secret: @sam", internal=True,
                                        authority=ALICE)))
    smtp.one_to("sam@example.com")
    assert len(smtp.to("grace@example.net")) == 1
    run(gateway.act(case_id, Resolve(actor="alice", resolution="Replaced the drum.",
                                     authority=ALICE)))
    eventually(lambda: _assert(len(smtp.to("grace@example.net")) == 2), timeout=20)
    first, second = smtp.to("grace@example.net")
    assert "Replaced the drum." in _text(second)
    # Two emails of one case: their own Message-IDs, one thread.
    assert first["Message-ID"] != second["Message-ID"]
    assert first["References"] == second["References"] == f"<{case_id}@desk.example.org>"
    assert all("Secret" not in _text(m) for m in smtp.to("grace@example.net"))


def test_an_sla_breach_tells_the_supervisors(smtp, people, settings):
    settings.CASE_SLA_SECONDS = [2, 3600, 3600, 3600]
    settings.CASE_SLA_AT_RISK = [1, 1, 1, 1]  # no warning first (tested below)
    case_id = _open(priority=1)
    mail = smtp.one_to("sam@example.com", timeout=30)
    assert "SLA breached" in _text(mail)
    assert smtp.to("alice@example.com") == []
    from cases.models import Notification

    assert Notification.objects.get(user=people["sam"], case_id=case_id).kind == "sla_breached"


def test_each_person_chooses_per_kind(smtp, people):
    from cases.models import Notification, NotificationPreference

    NotificationPreference.objects.create(user=people["bob"], kind="assigned", channel="in-app")
    NotificationPreference.objects.create(user=people["alice"], kind="watching", channel="none")
    NotificationPreference.objects.create(user=people["sam"], kind="mentioned", channel="email")
    case_id = _open()
    run(gateway.act(case_id, Watch(actor="alice", authority=ALICE)))
    run(gateway.act(case_id, Assign(actor="sam", assignee="bob")))
    run(gateway.act(case_id, AddComment(actor="bob", body="@sam fyi")))
    smtp.one_to("sam@example.com")
    eventually(lambda: _assert(Notification.objects.filter(user=people["bob"]).count() == 1))
    assert smtp.to("bob@example.com") == []
    assert smtp.to("alice@example.com") == []
    assert not Notification.objects.filter(user=people["alice"]).exists()
    assert not Notification.objects.filter(user=people["sam"]).exists()


def test_a_burst_of_ten_comments_is_one_email_after_the_quiet_period(smtp, people, settings):
    settings.NOTIFY_QUIET_SECONDS = 2.0
    case_id = _open()
    run(gateway.act(case_id, Watch(actor="alice", authority=ALICE)))
    for i in range(10):
        run(gateway.act(case_id, AddComment(actor="bob", body=f"Burst {i}")))
    mail = smtp.one_to("alice@example.com")
    text = _text(mail)
    assert all(f"Burst {i}" in text for i in range(10))
    time.sleep(3)
    assert len(smtp.to("alice@example.com")) == 1
    assert len(_notified(case_id)) == 1


def test_a_change_through_the_temporal_cli_tells_the_same_people(smtp, people, temporal,
                                                                  settings):
    case_id = _open(title="From the CLI")
    done = subprocess.run([
        TEMPORAL_BIN, "workflow", "update", "execute", "--address", temporal.address,
        "--namespace", settings.TEMPORAL_NAMESPACE, "--workflow-id", case_id,
        "--name", "assign", "--input", json.dumps({"actor": "sam", "assignee": "bob"}),
    ], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    mail = smtp.one_to("bob@example.com")
    assert mail["Subject"] == f"[{case_id}] From the CLI"
    assert "sam assigned the case to bob" in _text(mail)
    # The delivery completes (its rows written) before the test's database goes away.
    eventually(lambda: _assert(_notified(case_id) == ["bob (email, in-app)"]), timeout=30)


def test_a_worker_killed_between_sending_and_completing_does_not_send_twice(
        smtp, settings, tmp_path, temporal):
    """The worker (a process of its own, as `make run` runs it) sends, records the send and
    dies before the activity completes; the worker that takes over retries the delivery,
    finds it recorded and sends nothing: the SMTP server has the Message-ID once."""
    import sqlite3
    import uuid

    from .conftest import manage_in_background

    database = tmp_path / "worker.sqlite3"
    env = worker_env(settings, f"sqlite:///{database}", tmp_path, temporal)
    queue = f"notify-kill-{uuid.uuid4().hex[:6]}"
    settings.TEMPORAL_TASK_QUEUE = queue
    worker_args = ["run_worker", "--task-queue", queue, "--wait", "30"]
    faulty = manage_in_background(worker_args, {**env, "NOTIFY_FAULT": "exit-after-record"})
    healthy = None
    try:
        case_id = _open(requester_name="Grace", requester_email="grace@example.net")
        try:
            # A wait, not a speed goal: at the end of CI's whole suite a fresh worker once
            # took over 30 s to answer its first Query.
            eventually(lambda: run(gateway.get_case(case_id)), timeout=90, interval=0.5)
        except Exception:
            faulty.kill()
            said, _ = faulty.communicate(timeout=10)
            raise AssertionError(f"the worker never answered; it said:\n{said}") from None
        run(gateway.act(case_id, AddComment(actor="intake", body="Once, please.")))
        out, _ = faulty.communicate(timeout=60)
        assert faulty.returncode == 3, out  # os._exit right after recording the send
        [first] = smtp.to("grace@example.net")
        mid = first["Message-ID"]
        with sqlite3.connect(database) as db:
            assert db.execute("SELECT count(*) FROM cases_emaildelivery WHERE message_id = ?",
                              (mid,)).fetchone() == (1,)
        healthy = manage_in_background(worker_args, env)
        # The retry (after the dead attempt's heartbeat times out) completes the delivery.
        eventually(lambda: _assert(_notified(case_id) == ["grace@example.net (email)"]),
                   timeout=90, interval=0.5)
        assert [m["Message-ID"] for m in smtp.to("grace@example.net")] == [mid]
    finally:
        for proc in (faulty, healthy):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)


# --- the pages ---------------------------------------------------------------------------------


def test_the_case_page_offers_watching_lists_watchers_and_suggests_who_can_see(people):
    from .conftest import current_state, logged_in

    case_id = _open()
    alice = logged_in(people["alice"])
    page = alice.get(f"/cases/{case_id}/").content.decode()
    assert f'action="/cases/{case_id}/watch/"' in page
    assert f'action="/cases/{case_id}/unwatch/"' not in page
    datalist = page.split('<datalist id="mentionable">')[1].split("</datalist>")[0]
    assert all(f'value="{n}"' in datalist for n in ("alice", "bob", "sam"))
    assert 'value="carol"' not in datalist  # billing only: cannot see a technical case
    response = alice.post(f"/cases/{case_id}/watch/", {"watch-version": "1"},
                          HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<span class="watcher">alice</span>' in page
    assert f'action="/cases/{case_id}/unwatch/"' in page
    assert current_state(case_id).watchers == ["alice"]
    assert "alice started watching the case" in [e.text for e in timeline(case_id)]
    # carol cannot see the case, so she cannot watch it either.
    refused = logged_in(people["carol"]).post(f"/cases/{case_id}/watch/",
                                              {"watch-version": "2"})
    assert refused.status_code == 404


def test_a_mention_of_someone_who_cannot_see_the_case_is_applied_and_says_so(people):
    from .conftest import current_state, logged_in

    case_id = _open()
    response = logged_in(people["bob"]).post(
        f"/cases/{case_id}/comment/",
        {"comment-version": "1", "comment-body": "@carol and @alice, please look"},
        HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    page = response.content.decode()
    assert "Applied, but @carol cannot see this case and was not notified." in page
    assert "@alice" not in page.split('id="mention-unreached"')[1].split("</p>")[0]
    assert current_state(case_id).comments[-1].body == "@carol and @alice, please look"
    # Without a mention outside the case there is nothing to say.
    quiet = logged_in(people["bob"]).post(
        f"/cases/{case_id}/comment/", {"comment-version": "2", "comment-body": "@alice again"},
        HTTP_HX_REQUEST="true")
    assert 'id="mention-unreached"' not in quiet.content.decode()


def test_the_inbox_marks_one_and_all_read_by_csrf_protected_posts(people):
    from django.test import Client

    from cases.models import Notification

    from .conftest import logged_in

    bob = people["bob"]
    made = [Notification.objects.create(user=bob, case_id="case-AAAAAAAA", event=str(v),
                                        queue="technical", kind="watching", actor="sam")
            for v in (2, 3, 4)]
    Notification.objects.create(user=people["alice"], case_id="case-AAAAAAAA", event="2",
                                queue="technical", kind="watching", actor="carl")
    client = logged_in(bob)
    assert client.get("/notifications/badge.json").json() == {"unread": 3}
    page = client.get("/notifications/").content.decode()
    assert all(f'id="notification-{n.pk}"' in page for n in made)
    assert "carl" not in page and "(3 unread)" in page
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(bob)
    assert strict.post(f"/notifications/{made[0].pk}/read/").status_code == 403
    assert client.post(f"/notifications/{made[0].pk}/read/").status_code == 302
    assert client.get("/notifications/badge.json").json() == {"unread": 2}
    # Someone else's notification is not found, not marked.
    other = Notification.objects.get(user=people["alice"])
    assert client.post(f"/notifications/{other.pk}/read/").status_code == 404
    assert client.post("/notifications/read/").status_code == 302
    assert client.get("/notifications/badge.json").json() == {"unread": 0}
    assert Notification.objects.get(pk=other.pk).read_at is None


def test_the_settings_page_keeps_each_kinds_choice(people):
    from cases.models import NotificationPreference

    from .conftest import logged_in

    client = logged_in(people["alice"])
    page = client.get("/notifications/settings/").content.decode()
    assert "A case I watch changes" in page
    response = client.post("/notifications/settings/", {
        "assigned": "email", "mentioned": "both", "watching": "none", "sla_breached": "in-app",
        "sla_at_risk": "email"})
    assert response.status_code == 302
    saved = dict(NotificationPreference.objects.filter(user=people["alice"])
                 .values_list("kind", "channel"))
    assert saved == {"assigned": "email", "mentioned": "both", "watching": "none",
                     "sla_breached": "in-app", "sla_at_risk": "email"}
    bad = client.post("/notifications/settings/", {"assigned": "carrier-pigeon"})
    assert bad.status_code == 200 and "Select a valid choice" in bad.content.decode()


def _drive(watcher: Any, steps: Any) -> None:
    """Run `steps(watcher)` on a loop of its own, the watcher's checks driven by the test
    (it looks alive, so no thread of its own starts)."""
    import asyncio

    watcher.thread = threading.current_thread()
    asyncio.run(steps(watcher))


@pytest.mark.parametrize("shared_store", ["redis", "local"])
def test_one_watcher_wakes_streams_for_the_user_whose_facts_changed(
        people, request, settings, shared_store):
    """Issue 22 (one home each): one per-process watcher for both per-user facts that wake
    open streams, one store read a tick for all watched users. With a shared store the
    producer names whose notices changed (inbox.told), and only that user's counts are read;
    an access bump wakes only that user's streams. Local memory (make run) cannot hear the
    worker, so it counts every watched user each tick."""
    import asyncio

    from cases.config import access_version
    from cases.live.wakeups import Watcher
    from cases.models import Notification
    from cases.notify import inbox
    from tracerail.settings import cache_settings

    if shared_store == "redis":
        settings.CACHES = cache_settings(request.getfixturevalue("redis_server").url, 2.0)
    alice, bob = people["alice"], people["bob"]
    got: dict[str, list[int]] = {"a1": [], "a2": [], "b": []}
    woken: dict[str, asyncio.Event] = {}
    counted: list[list[int]] = []

    async def steps(watcher: Any) -> None:
        for token, user in (("a1", alice), ("a2", alice), ("b", bob)):
            watcher.watch_inbox(user.pk, token, got[token].append, None)
            woken[token] = asyncio.Event()
            version = access_version.current(user.pk)[user.pk]
            watcher.watch_access(user.pk, version, woken[token])

        async def tick() -> None:
            await asyncio.to_thread(watcher.check)
            counted.append(sorted(watcher.counted))
            await asyncio.sleep(0.02)

        await tick()  # the first reading of each: 0, not handed
        await asyncio.to_thread(Notification.objects.create, user=alice,
                                case_id="case-AAAAAAAA", event="2", kind="watching")
        await asyncio.to_thread(inbox.told, alice.pk)
        await tick()
        await tick()  # nothing new
        await asyncio.to_thread(access_version.bump, bob.pk)
        await tick()
        assert watcher.reads == 4

    _drive(Watcher(), steps)
    # A first 0 is not handed (the page read its own count as it loaded); a change is, once.
    assert got == {"a1": [1], "a2": [1], "b": []}
    assert [woken[t].is_set() for t in ("a1", "a2", "b")] == [False, False, True]
    both = sorted([alice.pk, bob.pk])
    if shared_store == "redis":
        assert counted == [both, [alice.pk], [], []]
    else:
        assert counted == [both, both, both, both]


def test_a_stream_that_stops_watching_is_neither_counted_nor_woken(people):
    import asyncio

    from cases.config import access_version
    from cases.live.wakeups import Watcher

    alice = people["alice"]
    got: list[int] = []

    async def steps(watcher: Any) -> None:
        moved = asyncio.Event()
        watcher.watch_inbox(alice.pk, "t", got.append, None)
        watcher.watch_access(alice.pk, "an old version", moved)
        watcher.unwatch(alice.pk, "t")
        watcher.unwatch(alice.pk, moved)
        await asyncio.to_thread(watcher.check)
        assert watcher.reads == 0 and not moved.is_set()
        assert access_version.current(alice.pk)  # the store itself still answers

    _drive(Watcher(), steps)
    assert got == []


def test_what_a_notification_adds_per_update(smtp, people, temporal, settings, capsys):
    """The cost docs/performance.md reports: no Visibility call at all, and a few history
    events per delivered batch (the quiet timer, the activity), none per recipient."""
    from .conftest import settled_visibility_calls

    def worked(notify: bool) -> tuple[int, int]:
        settings.NOTIFY_QUIET_SECONDS = 0.3 if notify else -1.0
        case_id = _open(title="Cost")
        run(gateway.act(case_id, Watch(actor="alice", authority=ALICE)))
        run(gateway.act(case_id, Watch(actor="sam")))
        before = run(temporal.client.get_workflow_handle(case_id).describe()).history_length
        for i in range(5):
            run(gateway.act(case_id, AddComment(actor="bob", body=f"Step {i}")))
            if notify:  # each its own batch: the quiet period passes between them
                eventually(lambda i=i: _assert(len(_notified(case_id)) == i + 1), timeout=10)
        after = run(temporal.client.get_workflow_handle(case_id).describe()).history_length
        return before, after

    calls_before = settled_visibility_calls(temporal)
    quiet_before, quiet_after = worked(False)
    told_before, told_after = worked(True)
    calls_after = settled_visibility_calls(temporal)
    assert calls_after == calls_before, "a notification spends no Visibility call"
    plain = (quiet_after - quiet_before) / 5
    notified = (told_after - told_before) / 5
    with capsys.disabled():
        print(f"\nhistory events per Update: {plain:.1f} without notices, {notified:.1f} "
              f"with a delivered batch each (two recipients); Visibility calls: "
              f"{calls_after - calls_before}")
    assert smtp.to("alice@example.com") and smtp.to("sam@example.com")
    # The timer and the activity, each with the workflow task that follows: a handful.
    assert notified - plain <= 12


def test_a_case_that_never_goes_quiet_still_tells_within_ten_quiet_periods(smtp, people,
                                                                          settings):
    settings.NOTIFY_QUIET_SECONDS = 0.5
    case_id = _open()
    run(gateway.act(case_id, Watch(actor="alice", authority=ALICE)))
    started = time.monotonic()
    first_mail_at = None
    i = 0
    while time.monotonic() - started < 8:
        run(gateway.act(case_id, AddComment(actor="bob", body=f"Chatter {i}")))
        i += 1
        if first_mail_at is None and smtp.to("alice@example.com"):
            first_mail_at = time.monotonic() - started
        time.sleep(0.2)  # never the 0.5 s of quiet
    assert first_mail_at is not None and first_mail_at < 8, "held back for good"
    assert "Chatter 0" in _text(smtp.to("alice@example.com")[0])


def test_notices_waiting_when_the_case_continues_as_new_are_delivered_by_the_next_run(
        smtp, people, temporal, settings):
    """Continue-as-new waits for the handlers and for a delivery in flight, and hands what
    waits for the quiet period to the next run: no notice is lost or told twice."""
    from cases.temporal.ids import new_case_id
    from workers.model import CaseInput, QueuePolicy

    case_id = new_case_id()
    handle = run(temporal.client.start_workflow(
        "Case", CaseInput(case_id=case_id, actor="intake",
                          new=NewCase(title="Long runner", queue="technical"),
                          policy=QueuePolicy("technical"), history_event_limit=60,
                          notify_quiet_seconds=1.5),
        id=case_id, task_queue=settings.TEMPORAL_TASK_QUEUE))
    first_run = handle.result_run_id
    run(gateway.act(case_id, Watch(actor="alice", authority=ALICE)))
    for i in range(12):
        run(gateway.act(case_id, AddComment(actor="bob", body=f"Step {i}")))
    described = run(temporal.client.get_workflow_handle(case_id).describe())
    assert described.run_id != first_run, "the case did not continue as new"

    def all_told() -> list[str]:
        text = "\n".join(_text(m) for m in smtp.to("alice@example.com"))
        steps = [line.strip() for line in text.splitlines() if line.startswith("Step ")]
        assert sorted(set(steps)) == sorted(f"Step {i}" for i in range(12)), text
        return steps

    steps = eventually(all_told, timeout=30, interval=0.2)
    assert len(steps) == 12  # each told once
    # Handed over: the quiet period had not passed when the first run ended.
    told_in = eventually(lambda: [e.run_id for e in timeline(case_id) if e.kind == "notified"]
                         or _assert(False), timeout=10)
    assert told_in and first_run not in told_in


def test_without_email_host_make_runs_mail_is_a_file_under_var_mail(tmp_path):
    """What the README promises `make run`: no EMAIL_HOST, each email a file in var/mail/;
    with EMAIL_HOST, Django's SMTP backend under Django's own setting names."""
    from .test_deploy_settings import bare_manage

    sent = bare_manage(["shell", "-c", (
        "from django.core.mail import send_mail; "
        "send_mail('[case-AAAAAAAA] Hello', 'Body', None, ['bob@example.com'])")],
        {"DEBUG": "true"}, tmp_path)
    assert sent.returncode == 0, sent.stderr
    [written] = list((tmp_path / "mail").iterdir())
    text = written.read_text()
    assert "Subject: [case-AAAAAAAA] Hello" in text and "To: bob@example.com" in text
    shown = bare_manage(["shell", "-c", (
        "from django.conf import settings as s; "
        "print(s.EMAIL_BACKEND, s.EMAIL_HOST, s.EMAIL_PORT, s.EMAIL_USE_TLS, s.EMAIL_HOST_USER)")],
        {"DEBUG": "true", "EMAIL_HOST": "smtp.example.org", "EMAIL_PORT": "587",
         "EMAIL_USE_TLS": "true", "EMAIL_HOST_USER": "desk"}, tmp_path)
    assert shown.stdout.split()[-5:] == [
        "django.core.mail.backends.smtp.EmailBackend", "smtp.example.org", "587", "True", "desk"]


def test_an_inactive_user_is_told_nothing(smtp, people):
    from cases.models import Notification

    people["bob"].is_active = False
    people["bob"].save(update_fields=["is_active"])
    case_id = _open()
    run(gateway.act(case_id, Watch(actor="alice", authority=ALICE)))
    run(gateway.act(case_id, Assign(actor="sam", assignee="bob")))
    smtp.one_to("alice@example.com")  # the watcher is, in the same batch
    assert smtp.to("bob@example.com") == []
    assert not Notification.objects.filter(user=people["bob"]).exists()


def test_a_title_with_a_line_break_still_mails_on_one_subject_line(smtp, people):
    """Any Temporal client may start a case; a line break in a header is refused by Django's
    mail (BadHeaderError), and every retry of the delivery would fail the same way."""
    case_id = _open(title="Toner everywhere\r\nBcc: everyone@example.com")
    run(gateway.act(case_id, Assign(actor="sam", assignee="bob")))
    mail = smtp.one_to("bob@example.com")
    assert mail["Subject"] == f"[{case_id}] Toner everywhere Bcc: everyone@example.com"
    assert mail["Bcc"] is None


def test_a_case_at_risk_is_flagged_in_visibility_and_tells_its_holder_and_supervisors(
        smtp, people, settings):
    """Issue 17: at the policy's share of the time to due, a durable timer flags the case
    CaseAtRisk (the list's "at risk" filter finds it), and its holder and the queue's
    supervisors are told; the breach then takes the flag down."""
    from cases.models import Notification
    from cases.temporal.visibility import CaseFilter, quote

    settings.CASE_SLA_SECONDS = [8, 3600, 3600, 3600]
    settings.CASE_SLA_AT_RISK = [0.25, 1, 1, 1]  # at risk 2 s after opening
    case_id = _open(title="Risky business", priority=1)
    run(gateway.act(case_id, Assign(actor="sam", assignee="bob")))
    opened = run(gateway.get_case(case_id))
    assert opened.at_risk_at == opened.created_at + timedelta(seconds=2)
    at_risk = f"{CaseFilter(at_risk=True).query()} AND WorkflowId = {quote(case_id)}"

    def flagged() -> None:
        assert run(gateway.get_case(case_id)).at_risk
        rows = run(gateway.list_cases(at_risk, 10)).rows
        assert [r.case_id for r in rows] == [case_id] and rows[0].at_risk

    eventually(flagged, timeout=20, interval=0.1)
    page = logged_in(people["sam"]).get("/cases/?at_risk=yes&q=risky").content.decode()
    assert case_id in page

    def told() -> None:
        kinds = {(n.user.username, n.kind) for n in Notification.objects.filter(
            case_id=case_id).select_related("user")}
        assert {("bob", "sla_at_risk"), ("sam", "sla_at_risk")} <= kinds

    eventually(told, timeout=20, interval=0.2)
    # The in-app notices are written before the mail goes out: wait for the mail too.
    eventually(lambda: _assert(any("SLA at risk" in _text(m)
                                   for m in smtp.to("bob@example.com", case_id))),
               timeout=20, interval=0.2)

    def breached() -> None:
        state = run(gateway.get_case(case_id))
        assert state.sla_breached and not state.at_risk
        assert run(gateway.list_cases(at_risk, 10)).rows == []

    eventually(breached, timeout=20, interval=0.2)
    kinds = [e.kind for e in timeline(case_id)]
    assert kinds.index("sla at risk") < kinds.index("sla breached")


def test_a_notice_leaves_the_inbox_with_access_to_its_case(people):
    """A notice leads to its case, whose title and words the page shows: once the reader is
    taken out of the case's queue it is neither shown, counted nor markable (the one access
    rule)."""
    from cases.models import Notification, Queue

    from .conftest import logged_in

    bob = people["bob"]
    case_id = _open(title="Secret rollout")
    note = Notification.objects.create(user=bob, case_id=case_id, event="1",
                                       queue="technical", kind="mentioned", actor="alice")
    client = logged_in(bob)
    assert client.get("/notifications/badge.json").json() == {"unread": 1}
    eventually(lambda: _assert("Secret rollout" in client.get("/notifications/")
                               .content.decode()))
    Queue.objects.get(slug="technical").agents.remove(bob)
    assert client.get("/notifications/badge.json").json() == {"unread": 0}
    page = client.get("/notifications/").content.decode()
    assert "Secret rollout" not in page and case_id not in page
    assert client.post(f"/notifications/{note.pk}/read/").status_code == 404


def test_a_macro_tells_the_union_of_its_parts_once(smtp, people):
    """Issue 25: the requester hears the reply, bob his assignment, sam his mention, each
    once, from one notice; the macro's internal note never reaches the requester."""
    from workers.model import ApplyMacro, MacroChanges

    case_id = _open(requester_name="Grace", requester_email="grace@example.net")
    run(gateway.act(case_id, ApplyMacro(
        actor="sam", macro="Hand to bob", body="Bob will call you. @sam", changes=MacroChanges(
            assignee="bob", status="waiting", add_tags=["callback"]))))
    to_grace = smtp.one_to("grace@example.net", about=case_id)
    assert "Bob will call you." in _text(to_grace)
    to_bob = smtp.one_to("bob@example.com", about=case_id)
    assert "sam applied the macro Hand to bob" in _text(to_bob)
    eventually(lambda: _assert(len(_notified(case_id)) == 1), timeout=10)
    # About this case only: sam supervises every queue, and earlier tests' cases may still
    # be breaching (a mail to sam about another case failed this once in CI).
    assert smtp.to("sam@example.com", about=case_id) == []  # nobody is told of their own doing
    run(gateway.act(case_id, ApplyMacro(
        actor="sam", macro="Note", body="Secret plan, @bob", internal=True,
        changes=MacroChanges(status="in_progress"))))
    eventually(lambda: _assert(len(smtp.to("bob@example.com", about=case_id)) == 2), timeout=20)
    time.sleep(1.0)
    assert len(smtp.to("grace@example.net", about=case_id)) == 1
    assert all("Secret" not in _text(m) for m in smtp.to("grace@example.net", about=case_id))
