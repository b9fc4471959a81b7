"""Delivering a case's notices (issue 16): run by the worker's `deliver_notices` activity.

The workflow says who is to be told and why (workers.rules.notices_for); here the people are
looked up: only active users who can see the case (the one access rule), each told the way
they chose per kind (email, in-app, both or none), and the requester by email. One email per
recipient per batch: the batch is the quiet period's digest.

Exactly once per (case, event, recipient): an email's Message-ID is made from the case, the
batch's events and the recipient, so a retry makes the same one. The ledger (EmailDelivery)
row is claimed before the send and marked after it, first wins: a retry, or an attempt that
overlaps another, sends nothing for a row it finds, even one whose sender died between the
send and the mark (at most once there; never twice). Each email succeeds or fails on its
own: a permanent refusal (5xx) is recorded and answered to the workflow (a line on the
timeline), a temporary one (4xx, no connection) frees its claim and the activity retries
once the others went out. In-app notices are rows unique per (user, case, event), so a
retry adds nothing either.
"""

from __future__ import annotations

import hashlib
import logging
import os
import smtplib
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from email.utils import parseaddr
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth.models import User
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.mail.backends.base import BaseEmailBackend
from django.template.loader import render_to_string
from django.urls import reverse

from cases.config.access import Access, supervisors_of
from cases.config.reading import access_of
from cases.files import store
from cases.models import EmailDelivery, Notification, NotificationPreference
from cases.notify import inbox
from workers.model import Delivered, FileRef, Notice, NoticeBatch

logger = logging.getLogger("tracerail.notifications")

REQUESTER = "requester"  # the per-kind key of requester mail (they have no settings page)


def site_domain() -> str:
    return urlsplit(settings.SITE_URL).hostname or "tracerail.invalid"


def thread_id(case_id: str) -> str:
    """The Message-ID every email of a case replies to, so mail clients thread it."""
    return f"<{case_id}@{site_domain()}>"


def message_id(case_id: str, events: list[str], recipient: str) -> str:
    """The same length however many events the email tells of (the ledger's key)."""
    # Hashed: the address is not spelled out in a header that other mail may quote.
    who = hashlib.sha256(recipient.lower().encode()).hexdigest()[:12]
    told = hashlib.sha256(",".join(events).encode()).hexdigest()[:12]
    return f"<{case_id}.v{told}.{who}@{site_domain()}>"


# The SMTP exchanges one email takes on a new connection (connect, greeting, EHLO, STARTTLS,
# EHLO, AUTH, MAIL, RCPT, DATA, the message, its reply, QUIT), each waiting at most
# EMAIL_TIMEOUT: the longest one send can take.
SMTP_STEPS = 12


def send_bound() -> float:
    return SMTP_STEPS * float(settings.EMAIL_TIMEOUT or 60)


class MailDeferred(Exception):
    """Some emails met a temporary failure: the activity fails and its retry sends them (and
    only them: the others are in the ledger)."""


def reply_address(case_id: str) -> str:
    """The requester's reply address, naming the case: the sender's mailbox plus the case
    (tracerail+case-7K2M9QXA@example.com), which a mail router can hand to the intake."""
    _, sender = parseaddr(settings.DEFAULT_FROM_EMAIL)
    local, _, domain = sender.partition("@")
    return f"{local}+{case_id}@{domain}"


@dataclass
class _Mail:
    address: str
    name: str
    username: str  # "" for the requester
    notices: list[Notice] = field(default_factory=list)


def _recipients(batch: NoticeBatch, supervisors: dict[str, list[str]]
                ) -> dict[str, tuple[User, Access]]:
    names = {n for notice in batch.notices for n in notice.users}
    names |= {n for found in supervisors.values() for n in found}
    users = list(User.objects.filter(username__in=names, is_active=True))
    found = {}
    for user in users:
        access = access_of(user)
        # The one access rule: who cannot see the case is told nothing of it.
        if access.can_see(batch.queue):
            found[user.username] = (user, access)
    return found


Pace = Callable[[str], AbstractContextManager[object]]


def deliver(batch: NoticeBatch, pace: Pace = lambda _: nullcontext()) -> list[Delivered]:
    """`pace(recipient)` is entered around each send (the activity heartbeats while it is
    in, and refuses to start a send it has no time left for). The caller holds the database
    connection (cases.config.dbconn.outside_request)."""
    supervisors = supervisors_of(*{n.supervisors_of for n in batch.notices if n.supervisors_of})
    people = _recipients(batch, supervisors)
    prefs = {(p.user_id, p.kind): p.channel for p in NotificationPreference.objects.filter(
        user__in=[u for u, _ in people.values()])}
    told: dict[tuple[str, str], list[str]] = {}
    mails: dict[str, _Mail] = {}
    for notice in batch.notices:
        targets = dict(notice.users)
        for username in supervisors.get(notice.supervisors_of, []):
            targets.setdefault(username, notice.supervisors_why)
        for username, why in targets.items():
            if username not in people:
                continue
            user, _ = people[username]
            channel = prefs.get((user.pk, why), NotificationPreference.BOTH)
            if channel in (NotificationPreference.IN_APP, NotificationPreference.BOTH):
                Notification.objects.get_or_create(
                    user=user, case_id=batch.case_id, event=notice.event,
                    defaults={"kind": why, "queue": batch.queue[:50],
                              "actor": notice.actor[:150]})
                told.setdefault((notice.event, username), []).append("in-app")
            if channel in (NotificationPreference.EMAIL, NotificationPreference.BOTH) \
                    and user.email:
                mails.setdefault(username, _Mail(user.email, user.get_full_name() or username,
                                                 username)).notices.append(notice)
        if notice.requester and not notice.internal and batch.requester.email:
            address = batch.requester.email
            mails.setdefault(address, _Mail(address, batch.requester.name, "")
                             ).notices.append(notice)
    delivered = [Delivered(event, who, channels) for (event, who), channels in told.items()]
    inbox.told(*{people[who][0].pk for (_, who) in told})  # their open badges read again
    deferred: list[str] = []
    if mails:
        connection = get_connection()
        for key, mail in mails.items():
            events = [n.event for n in mail.notices]
            mid = message_id(batch.case_id, events, mail.address)
            try:
                outcome, reply = _send_once(batch, mail, key, events, mid, connection, pace)
            except _Deferred as err:
                deferred.append(str(err))
                continue
            for notice in mail.notices:
                entry = next((d for d in delivered if d.event == notice.event
                              and d.recipient == key), None)
                if entry is None:
                    entry = Delivered(notice.event, key, [])
                    delivered.append(entry)
                entry.message_id = mid
                if outcome == EmailDelivery.REFUSED:
                    entry.refused = reply
                else:
                    entry.channels.append("email")
    if deferred:
        raise MailDeferred("; ".join(deferred))
    return sorted(delivered, key=lambda d: (int(d.event), d.recipient))


class _Deferred(Exception):
    pass


def _send_once(batch: NoticeBatch, mail: _Mail, key: str, events: list[str], mid: str,
               connection: BaseEmailBackend, pace: Pace) -> tuple[str, str]:
    """Send one email unless the ledger has it; its outcome (sent or refused) and the
    server's refusal. Raises _Deferred on a temporary failure, its claim given back."""
    message = _email(batch, mail, mid)  # built first: a claim is only made for a send
    with pace(key):  # before the claim: a send refused for want of time leaves no claim
        row, claimed = EmailDelivery.objects.get_or_create(message_id=mid, defaults={
            "case_id": batch.case_id, "events": ",".join(events), "recipient": key,
            "outcome": EmailDelivery.SENDING})
        if not claimed:
            if row.outcome == EmailDelivery.SENDING:
                # Its sender died between the send and the mark: first wins.
                logger.warning("email %s to %s was claimed by an earlier attempt that did "
                               "not record its outcome; not sent again", mid, key)
            return row.outcome, row.reply
        try:
            connection.send_messages([message])
        except (smtplib.SMTPException, OSError) as err:
            refusal = _permanent(err)
            if refusal is None:
                row.delete()  # not accepted: the retry sends it
                logger.warning("email %s to %s deferred: %s", mid, key, err)
                raise _Deferred(f"email to {key} deferred: {err}") from err
            row.outcome, row.reply = EmailDelivery.REFUSED, refusal
            row.save(update_fields=["outcome", "reply"])
            logger.warning("email %s to %s refused: %s", mid, key, refusal)
            return row.outcome, row.reply
    if settings.NOTIFY_FAULT == "exit-after-send":
        # The kill the exactly-once test needs: sent, claimed, not marked sent.
        os._exit(3)
    row.outcome = EmailDelivery.SENT
    row.save(update_fields=["outcome"])
    if settings.NOTIFY_FAULT == "exit-after-record":
        # The kill the exactly-once test needs: sent and recorded, not completed.
        os._exit(3)
    return row.outcome, ""


def _permanent(err: Exception) -> str | None:
    """The server's reply when it refused this email for good (5xx to its recipient or its
    message); None for what may pass later: a 4xx, a lost connection, a refused login."""
    if isinstance(err, smtplib.SMTPRecipientsRefused) and err.recipients:
        code, text = next(iter(err.recipients.values()))
    elif isinstance(err, smtplib.SMTPDataError):
        code, text = err.smtp_code, err.smtp_error
    else:
        return None
    if not 500 <= code < 600:
        return None
    said = text.decode(errors="replace") if isinstance(text, bytes) else str(text)
    # One line: the reply is the mail server's words, shown on the case's timeline.
    return " ".join(f"{code} {said}".split())[:300]


def mail_files(notices: list[Notice]) -> tuple[list[FileRef], list[FileRef]]:
    """The files of the public comments a requester's mail tells of (each once): those
    that travel with it, in order while the total stays within ATTACHMENT_MAIL_MAX_BYTES,
    and those only named (docs/decisions.md). Never an internal note's."""
    sent: list[FileRef] = []
    named: list[FileRef] = []
    seen: set[tuple[str, str]] = set()
    total = 0
    for notice in notices:
        if notice.internal:
            continue
        for ref in notice.files:
            if (ref.sha256, ref.name) in seen:
                continue
            seen.add((ref.sha256, ref.name))
            if total + ref.size <= settings.ATTACHMENT_MAIL_MAX_BYTES:
                sent.append(ref)
                total += ref.size
            else:
                named.append(ref)
    return sent, named


def _read_files(refs: list[FileRef]) -> tuple[list[tuple[str, bytes, str]], list[FileRef]]:
    """The bytes of each file the store still has; those it could not read are named in
    the mail instead, like the large ones."""
    read, missing = [], []
    for ref in refs:
        try:
            with store.open_file(ref) as handle:
                read.append((ref.name, handle.read(), ref.content_type))
        except OSError as err:
            logger.warning("file %s (%s) not attached: %s", ref.name, ref.sha256, err)
            missing.append(ref)
    return read, missing


def _email(batch: NoticeBatch, mail: _Mail, mid: str) -> EmailMultiAlternatives:
    case_url = settings.SITE_URL + reverse("cases:detail", args=[batch.case_id])
    # Only the requester's mail carries files: people with an account open the case.
    sent, named = mail_files(mail.notices) if not mail.username else ([], [])
    files, missing = _read_files(sent)
    context = {
        "batch": batch, "notices": mail.notices, "name": mail.name, "case_url": case_url,
        "for_requester": not mail.username,
        "settings_url": settings.SITE_URL + reverse("notifications:settings"),
        "unattached": [*missing, *named],
    }
    # One line whatever the title holds: any Temporal client may have started the case, and a
    # line break in a header is refused (BadHeaderError), which would fail every retry.
    subject = " ".join(f"[{batch.case_id}] {batch.title}".split())[:200]
    headers = {"Message-ID": mid, "In-Reply-To": thread_id(batch.case_id),
               "References": thread_id(batch.case_id)}
    reply_to = [reply_address(batch.case_id)] if not mail.username else None
    message = EmailMultiAlternatives(
        subject=subject, body=render_to_string("notifications/email.txt", context),
        to=[mail.address], headers=headers, reply_to=reply_to)
    message.attach_alternative(render_to_string("notifications/email.html", context),
                               "text/html")
    for name, data, content_type in files:
        message.attach(name, data, content_type)
    return message
