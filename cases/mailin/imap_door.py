"""The IMAP door (issue 23): `manage.py poll_mailboxes` reads each enabled QueueMailbox and
gives every unseen message to the mail pipeline.

A message is marked \\Seen only after `hand_over` returned (fetched with BODY.PEEK, so the
fetch itself marks nothing): a poller killed between the two hands the message over again on
its next poll, and the pipeline's Message-ID key makes that the same case, not a second one.
\\Seen is the mark because every hosted server keeps it (custom keywords are not everywhere):
the mailbox belongs to the product, a person who reads it in webmail takes messages away.
What the pipeline cannot take (over MAIL_MAX_BYTES, or a hand-over that failed for a reason
other than Temporal being away) is marked \\Seen and \\Flagged and logged, never retried.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses

from django.conf import settings
from django.utils import timezone
from imapclient import IMAPClient
from imapclient.imapclient import FLAGGED, SEEN

from cases.mailin import pipeline
from cases.mailin.smtp_door import message_id
from cases.models import QueueMailbox

log = logging.getLogger("tracerail.mail.imap")

IMAP_TIMEOUT_SECONDS = 60.0
# Envelope-recipient headers a delivering server adds; the closest IMAP has to SMTP's RCPT.
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To")


@dataclass
class PollReport:
    handed_over: int = 0
    refused: int = 0  # marked \Seen \Flagged: the pipeline cannot take them
    left: int = 0  # left unseen for the next poll (Temporal away, or told to stop)
    outcomes: list[pipeline.Outcome] = field(default_factory=list)


def recipients_of(raw: bytes, mailbox: QueueMailbox) -> list[str]:
    try:
        head = BytesHeaderParser(policy=compat32).parsebytes(raw[:64 * 1024])
        found = [a for _, a in getaddresses(
            [str(v) for h in _ENVELOPE_HEADERS for v in head.get_all(h) or []]) if "@" in a]
    except Exception:
        found = []
    return found or ([mailbox.username] if "@" in mailbox.username else [])


def poll_mailbox(mailbox: QueueMailbox, stop: threading.Event | None = None) -> PollReport:
    """One poll of one mailbox. Connection and login errors raise (the caller records them);
    a message never makes the whole poll fail."""
    report = PollReport()
    door = f"imap:{mailbox.queue.slug}"
    password = mailbox.password()
    with IMAPClient(mailbox.host, port=mailbox.port, ssl=mailbox.use_tls,
                    timeout=IMAP_TIMEOUT_SECONDS) as imap:
        imap.login(mailbox.username, password)
        imap.select_folder(mailbox.folder)
        uids = sorted(imap.search(["UNSEEN"]))
        sizes = imap.fetch(uids, ["RFC822.SIZE"]) if uids else {}
        for n, uid in enumerate(uids):
            if stop is not None and stop.is_set():
                report.left += len(uids) - n
                break
            size = int(sizes.get(uid, {}).get(b"RFC822.SIZE", 0))
            if size > settings.MAIL_MAX_BYTES:
                log.warning("%s uid %s: %d bytes over MAIL_MAX_BYTES; flagged, not taken",
                            mailbox, uid, size)
                imap.add_flags([uid], [SEEN, FLAGGED])
                report.refused += 1
                continue
            raw = imap.fetch([uid], ["BODY.PEEK[]"]).get(uid, {}).get(b"BODY[]")
            if raw is None:  # expunged by someone else since the search
                continue
            mid = message_id(raw)
            try:
                outcome = pipeline.hand_over(raw, recipients_of(raw, mailbox), door=door)
            except pipeline.IntakeUnavailable as err:
                # Temporal is away: nothing later in this mailbox would fare better now.
                log.warning("%s uid %s %s: intake unavailable (%s); left for the next poll",
                            mailbox, uid, mid, err)
                report.left += len(uids) - n
                break
            except Exception:
                log.exception("%s uid %s %s: hand-over failed; flagged, not retried",
                              mailbox, uid, mid)
                imap.add_flags([uid], [SEEN, FLAGGED])
                report.refused += 1
                continue
            if settings.MAIL_POLL_FAULT == "exit-after-hand-over":
                os._exit(3)
            imap.add_flags([uid], [SEEN])
            report.handed_over += 1
            report.outcomes.append(outcome)
            log.info("%s uid %s %s: %s %s %s", mailbox, uid, mid, outcome.done,
                     outcome.case_id, outcome.reason)
    return report


def poll_all(stop: threading.Event | None = None) -> dict[int, PollReport | Exception]:
    """Every enabled mailbox once; each one's result is also written on its row for the
    admin. One mailbox's failure (wrong password, server down) never stops the others."""
    results: dict[int, PollReport | Exception] = {}
    for mailbox in QueueMailbox.objects.filter(enabled=True).select_related("queue"):
        if stop is not None and stop.is_set():
            break
        try:
            report = poll_mailbox(mailbox, stop)
        except Exception as err:
            log.warning("%s: poll failed: %s", mailbox, err)
            results[mailbox.pk] = err
            QueueMailbox.objects.filter(pk=mailbox.pk).update(
                last_poll=timezone.now(), last_count=0,
                last_error=f"{type(err).__name__}: {err}"[:2000])
            continue
        results[mailbox.pk] = report
        QueueMailbox.objects.filter(pk=mailbox.pk).update(
            last_poll=timezone.now(), last_count=report.handed_over,
            last_error=(f"{report.left} left for the next poll"
                        if report.left else ""))
    return results
