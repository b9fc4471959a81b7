"""Issue 23, the IMAP door: a private Dovecot (tests/dovecot.py) holds the queue's mailbox, the
poller (in this process, or `manage.py poll_mailboxes` killed mid-fetch) hands each unseen
message to the real pipeline on the real dev server and marks it only after that."""

from __future__ import annotations

import os
import signal
from typing import Any

import pytest
from django.db import connection

from cases import temporal as gateway
from cases.temporal.visibility import BASE

from .conftest import eventually, free_port, listed, logged_in, manage, manage_in_background, run
from .dovecot import Dovecot, dovecot  # noqa: F401 (fixture)
from .test_smtp_door import mail, queues, word  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db(transaction=True)


def mailbox_for(server: Dovecot, queue: str = "technical", **fields: Any) -> Any:
    from cases.models import Queue, QueueMailbox

    box = QueueMailbox(queue=Queue.objects.get(slug=queue), host=server.host,
                       port=server.port, use_tls=False, username=server.username, **fields)
    box.set_password(server.password)
    box.save()
    return box


def test_a_poll_opens_a_case_per_unseen_message_and_the_next_poll_fetches_nothing(
        queues, dovecot):  # noqa: F811
    from cases.mailin.imap_door import poll_all
    from cases.models import QueueMailbox

    box = mailbox_for(dovecot)
    titles = [word(), word()]
    for title in titles:
        dovecot.append(mail(f"Invoice {title} wrong", to="support@example.com"))
    [report] = poll_all().values()
    assert report.handed_over == 2, report
    assert [o.done for o in report.outcomes] == ["opened", "opened"]
    for title in titles:
        eventually(lambda title=title: listed(1, title), timeout=20)
    # In the mailbox's queue, whatever address the mail was written to.
    rows = run(gateway.list_cases(f"{BASE} AND CaseTitle = '{titles[0]}'", 5)).rows
    assert [r.queue for r in rows] == ["technical"]
    assert dovecot.unseen() == []
    box.refresh_from_db()
    assert (box.last_count, box.last_error) == (2, "")
    assert box.last_poll is not None
    [again] = poll_all().values()
    assert again.handed_over == 0
    for title in titles:
        listed(1, title)
    assert QueueMailbox.objects.get().last_count == 0


def test_poller_killed_after_hand_over_before_marking_opens_no_second_case(
        queues, dovecot, temporal, tmp_path):  # noqa: F811
    """`poll_mailboxes` as the Procfile runs it, made to exit right after the hand-over
    (MAIL_POLL_FAULT), before \\Seen: the message is still unseen, the case exists; the next
    run hands it over again and marks it, and there is still one case; a third finds none."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tracerail.settings",
           "TRACERAIL_VAR_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
           "TEMPORAL_ADDRESS": temporal.address, "TEMPORAL_TASK_QUEUE": temporal.task_queue,
           "REDIS_URL": ""}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    migrated = manage(["migrate", "--noinput"], env)
    assert migrated.returncode == 0, migrated.stderr
    made = manage(["shell", "-c", (
        "from cases.models import Queue, QueueMailbox\n"
        f"b = QueueMailbox(queue=Queue.objects.get(slug='technical'), host='127.0.0.1', "
        f"port={dovecot.port}, use_tls=False, username={dovecot.username!r})\n"
        f"b.set_password({dovecot.password!r}); b.save()")], env)
    assert made.returncode == 0, made.stderr
    title = word()
    dovecot.append(mail(f"Refund {title} please", to="support@example.com"))

    killed = manage(["poll_mailboxes", "--once"],
                    {**env, "MAIL_POLL_FAULT": "exit-after-hand-over"})
    assert killed.returncode == 3, killed.stdout + killed.stderr
    assert len(dovecot.unseen()) == 1  # not marked: the poller died first
    eventually(lambda: listed(1, title), timeout=20)  # but handed over

    again = manage(["poll_mailboxes", "--once"], env)
    assert again.returncode == 0, again.stderr
    assert "1 handed over" in again.stdout, again.stdout
    assert dovecot.unseen() == []
    third = manage(["poll_mailboxes", "--once"], env)
    assert "0 handed over" in third.stdout, third.stdout
    eventually(lambda: listed(1, title), timeout=20)


def test_temporal_away_leaves_the_message_unseen_for_the_next_poll(
        queues, dovecot, tmp_path):  # noqa: F811
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tracerail.settings",
           "TRACERAIL_VAR_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
           "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "REDIS_URL": ""}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    assert manage(["migrate", "--noinput"], env).returncode == 0
    made = manage(["shell", "-c", (
        "from cases.models import Queue, QueueMailbox\n"
        f"b = QueueMailbox(queue=Queue.objects.get(slug='technical'), host='127.0.0.1', "
        f"port={dovecot.port}, use_tls=False, username={dovecot.username!r})\n"
        f"b.set_password({dovecot.password!r}); b.save()")], env)
    assert made.returncode == 0, made.stderr
    dovecot.append(mail(f"Away {word()}", to="support@example.com"))
    polled = manage(["poll_mailboxes", "--once"], env)
    assert polled.returncode == 0, polled.stderr
    assert "0 handed over, 0 flagged, 1 left" in polled.stdout, polled.stdout + polled.stderr
    assert len(dovecot.unseen()) == 1
    assert dovecot.flags()[dovecot.unseen()[0]] == set()
    # As the Procfile runs it: a loop that SIGTERM ends between polls, exit status 0.
    looping = manage_in_background(["poll_mailboxes", "--interval", "0.5"], env)
    try:
        seen = ""
        for line in looping.stdout:  # (stderr's log lines too)
            seen += line
            if "1 left" in line:
                break
        assert "every 0.5 s" in seen and "1 left" in seen, seen
    finally:
        looping.send_signal(signal.SIGTERM)
        out, _ = looping.communicate(timeout=60)
    assert looping.returncode == 0, out
    assert "poll_mailboxes: stopped" in out, out
    assert len(dovecot.unseen()) == 1


def test_a_message_over_the_limit_is_flagged_not_taken_nor_retried(
        queues, dovecot, settings):  # noqa: F811
    from cases.mailin.imap_door import poll_all

    settings.MAIL_MAX_BYTES = 50_000
    mailbox_for(dovecot)
    title = word()
    dovecot.append(mail(f"Huge {title}", body="y" * 60_000))
    [report] = poll_all().values()
    assert (report.handed_over, report.refused) == (0, 1)
    [flags] = dovecot.flags().values()
    assert {b"\\Seen", b"\\Flagged"} <= flags
    [again] = poll_all().values()
    assert (again.handed_over, again.refused) == (0, 0)
    listed(0, title)


def test_a_wrong_password_is_shown_on_the_mailbox_and_the_others_are_still_polled(
        queues, dovecot):  # noqa: F811
    from cases.mailin.imap_door import PollReport, poll_all

    wrong = mailbox_for(dovecot, queue="billing", folder="Other")
    wrong.set_password("not-the-password")
    wrong.save()
    right = mailbox_for(dovecot)
    title = word()
    dovecot.append(mail(f"Still {title}"))
    results = poll_all()
    assert isinstance(results[wrong.pk], Exception)
    assert isinstance(results[right.pk], PollReport) and results[right.pk].handed_over == 1
    wrong.refresh_from_db()
    assert wrong.last_error and dovecot.password not in wrong.last_error
    eventually(lambda: listed(1, title), timeout=20)


def test_the_mailbox_password_is_never_stored_or_shown_in_plain_text(
        queues, dovecot, admin_user, settings):  # noqa: F811
    from cases.config.sealing import Unsealable
    from cases.models import Queue, QueueMailbox

    client = logged_in(admin_user)
    response = client.post("/admin/cases/queuemailbox/add/", {
        "queue": Queue.objects.get(slug="general").pk, "host": dovecot.host,
        "port": dovecot.port, "username": dovecot.username, "new_password": dovecot.password,
        "folder": "INBOX", "enabled": "on"})
    assert response.status_code == 302, response.content.decode()[:2000]
    box = QueueMailbox.objects.get()
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM cases_queuemailbox")
        row = " ".join(str(v) for v in cursor.fetchone())
    assert dovecot.password not in row
    assert box.password() == dovecot.password
    listing = client.get("/admin/cases/queuemailbox/")
    assert listing.status_code == 200 and dovecot.password not in listing.content.decode()
    page = client.get(f"/admin/cases/queuemailbox/{box.pk}/change/").content.decode()
    assert dovecot.password not in page and box.password_sealed not in page
    # Saved again without a new password: the stored one is kept.
    response = client.post(f"/admin/cases/queuemailbox/{box.pk}/change/", {
        "queue": box.queue_id, "host": box.host, "port": box.port, "username": box.username,
        "new_password": "", "folder": "Archive", "enabled": "on"})
    assert response.status_code == 302
    box.refresh_from_db()
    assert (box.folder, box.password()) == ("Archive", dovecot.password)
    # Under another key the poller says so instead of logging in with garbage.
    settings.MAIL_SECRET_KEY = "another-key"
    with pytest.raises(Unsealable):
        box.password()
