"""The one pipeline both mail doors hand a message to (issue 23); the SMTP listener and the
IMAP poller call only `queue_for_address` and `hand_over`.

A message is read (cases/mailin/parse.py), sorted out as noise or not, matched to a case by
proof the sender received our mail (a signed reply token, or a Message-ID we sent to them),
and handed to Temporal exactly once: the case id or the Update id is derived from its
Message-ID, so the same mail twice is one case or one comment.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from email.utils import parseaddr
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.contrib.auth.models import User
from django.db import DatabaseError
from django.utils import timezone

from cases import temporal
from cases.config import dbconn
from cases.config.case_types import default_type
from cases.config.queue_policy import queue_policy
from cases.files import store
from cases.mailin import tokens
from cases.mailin.parse import Mail, read
from cases.models import EmailDelivery, MailIgnored, MailOpened, Queue
from cases.notify.deliver import site_domain
from cases.temporal.ids import case_id_for_key
from workers import rules
from workers.model import FileRef, NewCase, QueuePolicy, ReceiveMail

logger = logging.getLogger("tracerail.mailin")

BOUNCE_SENDERS = frozenset({"mailer-daemon", "postmaster"})
NOISY_PRECEDENCE = frozenset({"bulk", "junk", "list"})
# The Message-IDs cases/notify/deliver.py makes (message_id, thread_id), at our domain.
_OUR_MESSAGE_ID = re.compile(r"^<case-[0-9A-Z]{8}(?:\.v[0-9a-f]{12}\.[0-9a-f]{12})?@",
                             re.IGNORECASE)


class IntakeUnavailable(Exception):
    """Temporal (or the store) could not take the message now: SMTP answers 451, IMAP leaves
    the message unmarked; the sender or the next poll tries again."""


@dataclass
class Outcome:
    """What became of one message: `done` is one of "opened" (a new case), "replied" (a
    comment on a case), "ignored" (noise: an auto-reply, a bounce, our own mail), "held" (a
    sender over the rate), "degraded" (kept, malformed); `case_id` when one was touched, and
    a `reason` a log line and the admin list show."""

    done: str
    case_id: str = ""
    reason: str = ""


def _call(fn: Any, *args: Any) -> Any:
    """A gateway coroutine from this synchronous code; Temporal away is IntakeUnavailable."""
    try:
        return async_to_sync(fn)(*args)
    # A busy case never accepted the Update; a worker away may apply it later: either way the
    # sender's retry carries the same ids.
    except (temporal.TemporalUnavailable, temporal.WorkerUnavailable, temporal.CaseBusy) as err:
        raise IntakeUnavailable(err.message) from err


def queue_for_address(address: str) -> str | None:
    """The queue (slug) an address belongs to, or None: the SMTP door refuses None at RCPT
    with 550. A reply address (our mailbox, "+", a signed token) belongs to its case's
    queue; a forged or stale one to MAIL_REPLY_QUEUE, where it opens a new case. Raises
    IntakeUnavailable when the case's queue cannot be asked now."""
    try:
        return _queue_for_address(address)
    except DatabaseError as err:
        raise IntakeUnavailable(f"the configuration database did not answer: {err}") from err


@dbconn.outside_request
def _queue_for_address(address: str) -> str | None:
    _, address = parseaddr(address)
    if "@" not in address:
        return None
    found = Queue.objects.filter(email__iexact=address).values_list("slug", flat=True)
    if found:
        return found[0]
    local, domain = tokens.our_mailbox()
    mine, plus, _ = address.partition("@")[0].partition("+")
    if not plus or mine.lower() != local.lower() or \
            address.rpartition("@")[2].lower() != domain.lower():
        return None
    case_id = tokens.case_of_address(address)
    if case_id is not None:
        try:
            return str(_call(temporal.describe_case, case_id).queue)
        except temporal.CaseNotFound:
            pass
    fallback = settings.MAIL_REPLY_QUEUE
    return fallback if Queue.objects.filter(slug=fallback).exists() else None


def hand_over(raw: bytes, recipients: list[str], *, door: str) -> Outcome:
    """Parse, classify, match and hand over one message (synchronous: run it in a thread from
    async code). Returns only once the message is durably with Temporal (case started,
    Update accepted, or kept and a workflow started to process it); the same Message-ID
    again returns the same outcome and touches nothing. `door` is "smtp" or "imap:<queue>".
    Raises IntakeUnavailable; never raises for what the sender wrote."""
    try:
        mail = read(raw)
    except Exception:  # parse.read is built not to raise; a mail must never stop a door
        logger.exception("mail from %s unreadable; ignored", door)
        return Outcome("ignored", reason="unreadable")
    try:
        return _hand_over(mail, recipients, door)
    except DatabaseError as err:
        raise IntakeUnavailable(f"the database did not answer: {err}") from err


@dbconn.outside_request
def _hand_over(mail: Mail, recipients: list[str], door: str) -> Outcome:
    noise = noise_of(mail)
    if noise:
        return _ignored(mail, door, noise)
    case_id = match(mail, recipients)
    if case_id is not None and mail.sender_email:
        return _reply(mail, case_id, recipients, door)
    return _open(mail, _queue_of(mail, recipients, door), door)


def noise_of(mail: Mail) -> str:
    """Why a mail is to open nothing and tell nobody ("" when it is a person's mail)."""
    auto = mail.headers["auto-submitted"]
    if auto and not auto.startswith("no"):
        return f"Auto-Submitted: {auto[:60]}"
    if mail.headers["x-autoreply"] or mail.headers["x-autorespond"]:
        return "an auto-reply (X-Autoreply)"
    precedence = mail.headers["precedence"]
    if precedence in NOISY_PRECEDENCE:
        return f"Precedence: {precedence}"
    if mail.content_type == "multipart/report":
        return "a delivery report (multipart/report)"
    local = mail.sender_email.partition("@")[0].lower()
    if local in BOUNCE_SENDERS or mail.headers["return-path"] == "<>":
        return f"from {local or 'nobody'} (a bounce)"
    _, ours = parseaddr(settings.DEFAULT_FROM_EMAIL)
    if mail.sender_email.lower() == ours.lower() or (_OUR_MESSAGE_ID.match(mail.message_id) \
            and mail.message_id.lower().endswith(f"@{site_domain().lower()}>")):
        return "our own mail"
    return ""


def _ignored(mail: Mail, door: str, reason: str, held: bool = False) -> Outcome:
    logger.info("mail %s from %s via %s %s: %s", mail.key, mail.sender_email or "?", door,
                "held" if held else "ignored", reason)
    # The same mail again (a retry, a second door) is counted once.
    MailIgnored.objects.get_or_create(
        message_id=mail.key[:320], reason=reason[:200],
        defaults={"door": door[:60], "sender": mail.sender_email[:254], "held": held})
    keep = max(settings.MAIL_IGNORED_KEEP, 1)
    if MailIgnored.objects.count() > keep + 100:  # pruned in steps, not on every mail
        edge = MailIgnored.objects.order_by("-at", "-pk").values_list("pk", flat=True)[keep]
        MailIgnored.objects.filter(pk__lte=edge).delete()
    return Outcome("held" if held else "ignored", reason=reason)


def match(mail: Mail, recipients: list[str]) -> str | None:
    """The case the mail answers, by proof its sender received our mail: a signed token in
    the address it was sent to or its subject, or a Message-ID we sent to this sender."""
    for address in [*recipients, *mail.addressed_to]:
        found = tokens.case_of_address(address)
        if found is not None:
            return found
    found = tokens.case_of(mail.subject)
    if found is not None:
        return found
    if not mail.references or not mail.sender_email:
        return None
    sender = mail.sender_email.lower()
    for row in EmailDelivery.objects.filter(message_id__in=mail.references).exclude(
            outcome=EmailDelivery.REFUSED):
        if row.recipient.lower() == sender or User.objects.filter(
                username=row.recipient, email__iexact=sender).exists():
            return row.case_id
    return None


def _queue_of(mail: Mail, recipients: list[str], door: str) -> str:
    """The queue a new case opens in: the mailbox it was fetched from (IMAP), else the
    first queue address it was sent to, else MAIL_REPLY_QUEUE (our reply mailbox)."""
    if door.startswith("imap:") and rules.QUEUE_RE.match(door[5:]):
        return door[5:]
    for address in [*recipients, *mail.addressed_to]:
        queue = Queue.objects.filter(email__iexact=address).values_list("slug", flat=True)
        if queue:
            return queue[0]
    return settings.MAIL_REPLY_QUEUE


def _update_id(case_id: str, key: str) -> str:
    return "mail-" + hashlib.sha256(f"{case_id}\x00{key}".encode()).hexdigest()[:32]


def _reply(mail: Mail, case_id: str, recipients: list[str], door: str) -> Outcome:
    files, original, notes = _keep_files(mail)
    kept = [*files, *([original] if original else [])]
    body = _with_notes(mail.reply or mail.text, notes, rules.MAX_COMMENT) or "(no text)"
    command = ReceiveMail(actor=rules.MAIL_ACTOR, sender_name=mail.sender_name,
                          sender_email=mail.sender_email, message_id=mail.key, body=body,
                          files=files, original=original)
    try:
        try:
            _call(temporal.act, case_id, command, _update_id(case_id, mail.key))
        except temporal.ActionRefused as err:
            if err.field != "files":
                raise
            # The case holds all the files it may: the words still reach it.
            note = f"attachments not added: {err.message}"
            command.body = _with_notes(mail.reply or mail.text, [*notes, note],
                                       rules.MAX_COMMENT) or "(no text)"
            command.files, command.original = [], None
            store.discard(kept)
            kept = []
            _call(temporal.act, case_id, command, _update_id(case_id, mail.key) + "-text")
    except (temporal.CaseNotFound, temporal.ActionRefused) as err:
        # Not taken (a refusal is never applied): its files are given back; a new case keeps
        # them again.
        store.discard(kept)
        if isinstance(err, temporal.CaseNotFound):
            logger.info("mail %s names %s, which is gone: a new case", mail.key, case_id)
            return _open(mail, _queue_of(mail, recipients, door), door)
        return _refused(mail, case_id, err, recipients, door)
    return Outcome("replied", case_id)


def _refused(mail: Mail, case_id: str, err: temporal.ActionRefused, recipients: list[str],
             door: str) -> Outcome:
    """A matched case did not take the mail: it had it already, it is closed (a follow-up),
    or it refused it for a reason of its own (a new case)."""
    if err.message == rules.MAIL_ALREADY_HERE:
        return Outcome("replied", case_id, "already on the case")
    try:
        row = _call(temporal.describe_case, case_id)
    except temporal.CaseNotFound:
        return _open(mail, _queue_of(mail, recipients, door), door)
    if row.status == "closed":
        if _was_received(case_id, mail.key):  # delivered again after the case closed
            return Outcome("replied", case_id, "already on the case")
        return _open(mail, row.queue or _queue_of(mail, recipients, door), door,
                     follows=case_id)
    logger.warning("mail %s refused by %s (%s): a new case", mail.key, case_id, err.message)
    return _open(mail, row.queue or _queue_of(mail, recipients, door), door)


def _was_received(case_id: str, key: str) -> bool:
    """Did the (ended) case take this mail before it closed? Its history says; read only
    on this rare path (an Update id is forgotten with the run)."""
    state = _call(temporal.case_history, case_id).projection.state
    return state is not None and any(c.message_id == key for c in state.comments)


def _keep_files(mail: Mail) -> tuple[list[FileRef], FileRef | None, list[str]]:
    """The mail's attachments and the whole message, kept in the file store; a file refused
    (type, size) is a note in the text, not a refused mail."""
    files, notes = [], list(mail.notes)
    try:
        for name, data in mail.files:
            try:
                files.append(store.keep(data, name))
            except store.FileRefused as err:
                notes.append(f"attachment {name} not kept: {err}")
        try:
            original = store.keep(mail.raw, "message.eml", internal_type="message/rfc822")
        except store.FileRefused as err:
            original = None
            notes.append(f"the message as received was not kept: {err}")
    except OSError as err:
        # The storage is away or full: the sender retries, and the files kept so far (once
        # per SHA-256) are the same files then.
        raise IntakeUnavailable(f"the file store did not take the mail: {err}") from err
    return files, original, notes


def _with_notes(text: str, notes: list[str], limit: int) -> str:
    said = "\n".join(f"[{n}]" for n in notes)
    room = limit - len(said) - 2
    return "\n\n".join(p for p in (text[:max(room, 0)].strip(), said) if p)[:limit]


def _mail_type(queue: str, policy: QueuePolicy, notes: list[str]) -> str:
    """The queue's default type for a mail's case (issue 25), when its defaults give every
    required field (a mail carries none); else "" (untyped), said in the case's description
    so a supervisor can type it once the fields are known (docs/decisions.md)."""
    name = default_type(queue)
    spec = policy.case_types.get(name) if name else None
    if spec is None:
        return ""
    try:
        rules.typed_attributes(spec, {})
    except rules.RuleError as err:
        logger.info("mail to %s opens untyped: %s", queue, err.message)
        notes.append(f"opened without a type: {err.message}")
        return ""
    return name


def _open(mail: Mail, queue: str, door: str, follows: str = "") -> Outcome:
    case_id = case_id_for_key("mail", mail.key)
    sender = mail.sender_email.lower()
    if not MailOpened.objects.filter(case_id=case_id).exists():
        since = timezone.now() - timedelta(minutes=1)
        MailOpened.objects.filter(at__lt=timezone.now() - timedelta(hours=1)).delete()
        if sender and MailOpened.objects.filter(sender=sender, at__gte=since).count() >= \
                settings.MAIL_SENDER_CASES_PER_MINUTE:
            return _ignored(mail, door, f"held: more than {settings.MAIL_SENDER_CASES_PER_MINUTE}"
                            " new cases a minute from this sender", held=True)
    files, original, notes = _keep_files(mail)
    policy = queue_policy(queue)
    case_type = _mail_type(queue, policy, notes)
    text = mail.text
    if follows:
        text = f"Follow-up to {follows}, which is closed.\n\n{text}"
    new = NewCase(title=mail.title, queue=queue,
                  description=_with_notes(text, notes, rules.MAX_DESCRIPTION),
                  requester_name=mail.sender_name, requester_email=mail.sender_email,
                  files=[*files, *([original] if original else [])], via="email",
                  follows=follows, case_type=case_type)
    row, _ = MailOpened.objects.get_or_create(case_id=case_id, defaults={"sender": sender})
    outcome = Outcome("degraded" if mail.notes else "opened", case_id,
                      "; ".join(mail.notes)[:200])
    try:
        try:
            _call(temporal.start_case, case_id, new, rules.MAIL_ACTOR, policy)
        except rules.RuleError as err:
            if err.field != "files" or not new.files:
                raise
            new.description = _with_notes(text, [*notes, f"attachments not added: "
                                                 f"{err.message}"], rules.MAX_DESCRIPTION)
            store.discard(new.files)
            new.files = []
            _call(temporal.start_case, case_id, new, rules.MAIL_ACTOR, policy)
    except temporal.CaseExists:
        # The same mail again: the case it opened the first time holds its own keeps.
        store.discard(new.files)
        return outcome
    except IntakeUnavailable:
        row.delete()  # not opened: the sender's retry is not a second case of theirs
        raise
    except rules.RuleError as err:  # nothing a sender writes should get here; if it does
        row.delete()
        store.discard(new.files)
        return _ignored(mail, door, f"not a case: {err.message}")
    if mail.notes:
        logger.warning("malformed mail %s from %s via %s opened %s degraded: %s", mail.key,
                       sender or "?", door, case_id, "; ".join(mail.notes))
    else:
        logger.info("mail %s from %s via %s opened %s in %s", mail.key, sender or "?", door,
                    case_id, queue)
    return outcome
