"""The one pipeline both mail doors hand a message to (issue 23). CONTRACT, implemented by
the mail-in work; the SMTP listener and the IMAP poller call only these.
"""

from __future__ import annotations

from dataclasses import dataclass


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


def queue_for_address(address: str) -> str | None:
    """The queue (slug) an address belongs to, or None: the SMTP door refuses None at RCPT
    with 550. Reply addresses (the signed tokens outbound mail carries) map to their case's
    queue's intake."""
    raise NotImplementedError


def hand_over(raw: bytes, recipients: list[str], *, door: str) -> Outcome:
    """Parse, classify, match and hand over one message (synchronous: run it in a thread from
    async code). Returns only once the message is durably with Temporal (case started,
    Update accepted, or kept and a workflow started to process it); the same Message-ID
    again returns the same outcome and touches nothing. `door` is "smtp" or "imap:<queue>".
    Raises IntakeUnavailable; never raises for what the sender wrote."""
    raise NotImplementedError
