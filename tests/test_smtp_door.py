"""Issue 23, the SMTP door: the listener itself (aiosmtpd on a real socket, in this process or
as `manage.py run_mail_intake`), the real mail pipeline and the real dev server. What a mail
server acting on its replies needs: 250 only once the case exists, 550 at RCPT for an address
no queue owns, 552 over MAIL_MAX_BYTES, 451 while Temporal is away, one case per Message-ID,
and an answer to the next mail whatever the last one held."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.policy import SMTP
from typing import Any

import pytest

from .conftest import (
    LoopThread,
    eventually,
    free_port,
    listed,
    manage,
    manage_in_background,
)

pytestmark = pytest.mark.django_db(transaction=True)

ADDRESS = "technical@example.com"


def word() -> str:
    """A title word no other case has (Visibility finds cases by it)."""
    return "m" + uuid.uuid4().hex[:12]


def mail(subject: str, *, sender: str = "", to: str = ADDRESS, body: str = "It broke.",
         message_id: str = "") -> bytes:
    message = EmailMessage()
    # A sender per message: the pipeline holds one who opens many cases a minute.
    message["From"] = sender or f"Ada <ada-{uuid.uuid4().hex[:8]}@example.net>"
    message["To"] = to
    message["Subject"] = subject
    message["Message-ID"] = message_id or f"<{uuid.uuid4().hex}@example.net>"
    message.set_content(body)
    return message.as_bytes(policy=SMTP)  # CRLF, as mail travels


@pytest.fixture
def queues(temporal: Any) -> None:
    """The demo queues' addresses (transactional tests flush the migrations' rows)."""
    from cases.models import Queue

    for slug in ("billing", "technical", "general"):
        Queue.objects.update_or_create(
            slug=slug, defaults={"name": slug.title(), "email": f"{slug}@example.com"})


def wait_for_port(port: int, process: Any = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if process is not None and process.poll() is not None:
                raise AssertionError(f"listener exited: {process.stdout.read()}") from None
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def intake(queues: None, settings: Any) -> Iterator[int]:
    """The listener `run_mail_intake` runs, in this process on a loop of its own: its port."""
    from cases.mailin.smtp_door import IntakeHandler, serve

    settings.MAIL_MAX_BYTES = 200_000  # an oversized mail need not be 25 MB to prove 552
    loop = LoopThread()
    port = free_port()

    async def start() -> Any:
        return await serve("127.0.0.1", port, IntakeHandler())

    server = loop.run(start())
    try:
        yield port
    finally:
        async def stop() -> None:
            server.close()
            await server.wait_closed()

        loop.run(stop())
        loop.loop.call_soon_threadsafe(loop.loop.stop)


def send(port: int, raw: bytes, to: str = ADDRESS) -> tuple[int, bytes]:
    """MAIL, RCPT and DATA as a relaying mail server sends them: DATA's reply."""
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as smtp:
        smtp.ehlo("relay.test")
        assert smtp.mail("sender@example.net")[0] == 250
        code, reply = smtp.rcpt(to)
        assert code == 250, reply
        return smtp.data(raw)


def test_new_mail_is_answered_250_and_opens_a_case(intake):
    title = word()
    code, reply = send(intake, mail(f"Printer {title} on fire"))
    assert code == 250, reply
    eventually(lambda: listed(1, title), timeout=20)


def test_unknown_address_is_refused_at_rcpt_with_550(intake):
    with smtplib.SMTP("127.0.0.1", intake, timeout=30) as smtp:
        smtp.ehlo("relay.test")
        smtp.mail("sender@example.net")
        code, reply = smtp.rcpt("nobody-here@example.org")
        assert code == 550, reply
        # The session goes on: a known address in the same transaction is still taken.
        assert smtp.rcpt(ADDRESS)[0] == 250
        # Up to RFC 5321's 100 recipients; the next waits for another transaction (452).
        for _ in range(99):
            assert smtp.rcpt(ADDRESS)[0] == 250
        assert smtp.rcpt(ADDRESS)[0] == 452


def test_oversized_mail_is_refused_at_data_with_552(intake, settings):
    title = word()
    big = mail(f"Huge {title}", body=("x" * 70 + "\n") * (settings.MAIL_MAX_BYTES // 70 + 10))
    code, reply = send(intake, big)
    assert code == 552, reply
    # A sender that declares the size hears it at MAIL FROM already (SIZE, RFC 1870).
    with smtplib.SMTP("127.0.0.1", intake, timeout=30) as smtp:
        with pytest.raises(smtplib.SMTPSenderRefused) as refused:
            smtp.sendmail("sender@example.net", [ADDRESS], big)
        assert refused.value.smtp_code == 552
    # Within the limit, the same listener takes it.
    assert send(intake, mail(f"Small {title}"))[0] == 250
    eventually(lambda: listed(1, title), timeout=20)


def test_same_message_id_twice_opens_one_case(intake):
    title = word()
    raw = mail(f"Twice {title}", message_id=f"<{uuid.uuid4().hex}@example.net>")
    assert send(intake, raw)[0] == 250
    assert send(intake, raw)[0] == 250  # a sender that missed our first 250 sends again
    eventually(lambda: listed(1, title), timeout=20)
    # A later mail is listed after both: the second delivery had its chance to show.
    later = word()
    assert send(intake, mail(f"Later {later}"))[0] == 250
    eventually(lambda: listed(1, later), timeout=20)
    listed(1, title)


def test_garbage_and_a_huge_header_get_an_answer_and_the_next_mail_is_taken(intake):
    garbage = (b"From: \xff\xfe<<<@@@\r\nSubject: =?bogus?Q?\x00\x01?=\r\n"
               b"Content-Type: multipart/mixed; boundary=\"\r\n\r\n"
               + bytes(range(256)) * 20 + b"\r\n--\r\n--\r\n")
    code, reply = send(intake, garbage)
    # Kept as a degraded case (250) or refused for good (5xx); never "try again" forever.
    assert code == 250 or 500 <= code < 600, (code, reply)
    with smtplib.SMTP("127.0.0.1", intake, timeout=60) as smtp:
        smtp.ehlo("relay.test")
        smtp.mail("sender@example.net")
        smtp.rcpt(ADDRESS)
        code, reply = smtp.data(b"Subject: " + b"a" * 1_000_000 + b"\r\n\r\nbody\r\n")
        assert code == 500, reply  # RFC 5321's line limit, said at once
        # The same session takes a proper mail next.
        title = word()
        smtp.rset()
        smtp.mail("sender@example.net")
        smtp.rcpt(ADDRESS)
        assert smtp.data(mail(f"After {title}"))[0] == 250
    eventually(lambda: listed(1, title), timeout=20)


def test_a_ten_thousand_part_message_gets_an_answer_and_the_next_mail_is_taken(intake):
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\npart %d\r\n" % n
                     for n in range(10_000))
    raw = (b"From: many@example.net\r\nTo: technical@example.com\r\nSubject: parts\r\n"
           b"Message-ID: <" + uuid.uuid4().hex.encode() + b"@example.net>\r\n"
           b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
           + parts + b"--b--\r\n")
    code, reply = send(intake, raw)
    assert code == 250 or 500 <= code < 600, (code, reply)
    title = word()
    assert send(intake, mail(f"After {title}"))[0] == 250
    eventually(lambda: listed(1, title), timeout=20)


def test_run_mail_intake_answers_451_while_temporal_is_away_and_stops_on_sigterm(
        queues, temporal, tmp_path):
    """The command as the Procfile runs it, with Temporal unreachable: the sender hears 451
    (its mail server queues the message and tries again), the listener stays up for the
    next session, and SIGTERM ends it cleanly."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tracerail.settings",
           "TRACERAIL_VAR_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite3",
           "TEMPORAL_ADDRESS": f"127.0.0.1:{free_port()}", "REDIS_URL": ""}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    migrated = manage(["migrate", "--noinput"], env)
    assert migrated.returncode == 0, migrated.stderr
    port = free_port()
    listener = manage_in_background(["run_mail_intake", "--port", str(port)], env)
    try:
        wait_for_port(port, listener)
        for _ in range(2):
            code, reply = send(port, mail(f"Away {word()}"))
            assert code == 451, reply
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
            smtp.ehlo("relay.test")
            smtp.mail("sender@example.net")
            assert smtp.rcpt("nobody-here@example.org")[0] == 550
    finally:
        listener.send_signal(signal.SIGTERM)
        out, _ = listener.communicate(timeout=60)
    assert listener.returncode == 0, out
    assert "stopped cleanly" in out, out
    assert "answered 451" in out, out


def test_hand_overs_wait_for_a_slot(queues):
    """More senders than MAIL_INTAKE_CONCURRENCY: the others wait in DATA, and every one is
    still answered (no refusal for being busy)."""
    from cases.mailin.smtp_door import IntakeHandler, serve

    loop = LoopThread()
    port = free_port()
    server = loop.run(serve("127.0.0.1", port, IntakeHandler(concurrency=1)))
    try:
        titles = [word() for _ in range(3)]

        with ThreadPoolExecutor(len(titles)) as senders:
            codes = list(senders.map(lambda t: send(port, mail(f"Busy {t}"))[0], titles))
        assert codes == [250, 250, 250]
        for title in titles:
            eventually(lambda title=title: listed(1, title), timeout=20)
    finally:
        server.close()
        loop.loop.call_soon_threadsafe(loop.loop.stop)
