"""The SMTP door (issue 23): a mail server on this host hands each message to
`manage.py run_mail_intake`, which answers 250 only once the pipeline has it durably.

Replies a mail server acts on: 550 at RCPT for an address no queue owns (it bounces), 552 for
a message over MAIL_MAX_BYTES (bounces), 451 when Temporal or the database cannot take the
message now (it queues the message and tries again later), 250 once `hand_over` returned.
"""

from __future__ import annotations

import asyncio
import logging
from email.parser import BytesHeaderParser
from email.policy import compat32
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session
from django.conf import settings

from cases.mailin import pipeline

log = logging.getLogger("tracerail.mail.smtp")

TRY_LATER = "451 4.3.0 Cannot take this message now, try again later"
TOO_BIG = "552 5.3.4 Message too big"
# A header block longer than this is not read for the log's Message-ID (the pipeline still
# sees the whole message): a 1 MB header must not cost the log line a full parse.
_HEADER_PEEK = 64 * 1024
# RFC 5321 4.5.3.1.8: a server must take at least 100 recipients; past that each RCPT costs a
# lookup for nothing a real relay sends, so the rest wait for the next transaction (452).
MAX_RECIPIENTS = 100


def message_id(raw: bytes) -> str:
    """The message's Message-ID for log lines, or a placeholder; never raises."""
    try:
        head = raw[:_HEADER_PEEK].split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        value = BytesHeaderParser(policy=compat32).parsebytes(head).get("Message-ID")
        text = str(value or "").strip()
        return text[:200] or "(no Message-ID)"
    except Exception:
        return "(unreadable Message-ID)"


class IntakeHandler:
    """aiosmtpd's handler: RCPT asks the pipeline whose address it is, DATA hands over in a
    thread (both touch the database or Temporal synchronously), at most `concurrency` at once.
    """

    def __init__(self, concurrency: int | None = None, max_bytes: int | None = None) -> None:
        self.slots = asyncio.Semaphore(concurrency or settings.MAIL_INTAKE_CONCURRENCY)
        self.max_bytes = max_bytes or settings.MAIL_MAX_BYTES
        self.in_flight: set[asyncio.Task[Any]] = set()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return "452 4.5.3 Too many recipients"
        try:
            queue = await asyncio.to_thread(pipeline.queue_for_address, address)
        except pipeline.IntakeUnavailable as err:
            log.warning("RCPT %s: intake unavailable (%s); answered 451", address, err)
            return TRY_LATER
        except Exception:
            log.exception("RCPT %s: could not look the address up; answered 451", address)
            return TRY_LATER
        if queue is None:
            log.info("RCPT %s: no queue has this address; refused (550)", address)
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content or b""
        if isinstance(raw, str):  # only with decode_data=True, which serve() never sets
            raw = raw.encode("utf-8", "surrogateescape")
        mid = message_id(raw)
        if len(raw) > self.max_bytes:
            # aiosmtpd's own limit answers first; this holds when a handler is used alone.
            log.info("DATA %s: %d bytes over MAIL_MAX_BYTES; refused (552)", mid, len(raw))
            return TOO_BIG
        recipients = list(envelope.rcpt_tos)
        async with self.slots:
            # Shielded: a listener told to stop lets a started hand-over finish (and the
            # sender hear 250) rather than leave it half done.
            task = asyncio.ensure_future(asyncio.to_thread(
                pipeline.hand_over, raw, recipients, door="smtp"))
            self.in_flight.add(task)
            task.add_done_callback(self.in_flight.discard)
            try:
                outcome = await asyncio.shield(task)
            except pipeline.IntakeUnavailable as err:
                log.warning("DATA %s: intake unavailable (%s); answered 451", mid, err)
                return TRY_LATER
            except Exception:
                log.exception("DATA %s: hand-over failed; answered 451", mid)
                return TRY_LATER
        log.info("DATA %s from %s to %s: %s %s %s", mid, envelope.mail_from, ",".join(recipients),
                 outcome.done, outcome.case_id, outcome.reason)
        return "250 2.0.0 OK"

    async def drain(self, seconds: float) -> int:
        """Wait up to `seconds` for hand-overs under way; how many were still running."""
        pending = set(self.in_flight)
        if pending:
            _, still = await asyncio.wait(pending, timeout=seconds)
            return len(still)
        return 0


def smtp_factory(handler: IntakeHandler, max_bytes: int | None = None) -> SMTP:
    limit = max_bytes or settings.MAIL_MAX_BYTES
    # decode_data=False: the pipeline parses bytes, whatever charset the sender claimed.
    # The line limit is RFC 5321's; a longer line (a 1 MB header) is refused with 500 by
    # aiosmtpd, and the session goes on.
    return SMTP(handler, data_size_limit=limit, enable_SMTPUTF8=True, decode_data=False,
                hostname="tracerail", ident="Tracerail mail intake")


async def serve(host: str, port: int, handler: IntakeHandler, *,
                max_bytes: int | None = None) -> asyncio.base_events.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: smtp_factory(handler, max_bytes), host=host,
                                    port=port)
