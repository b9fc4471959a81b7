"""The reply token (issue 23): what lets a mail append to a case. Outbound mail's Reply-To is
the sender's mailbox plus the case and an HMAC of it (tracerail+case-7K2M9QXA.k3j5...@
example.com), so nobody can write into a case whose mail they never received. A case id alone
(guessable, 40 bits) appends to nothing.
"""

from __future__ import annotations

import base64
import hmac
import re
from email.utils import parseaddr

from django.conf import settings
from django.utils.crypto import salted_hmac

from workers.rules import CASE_ID_RE

PURPOSE = "tracerail.mailin.reply-token"
# 16 base32 characters: 80 bits of the HMAC, lower case (mail systems may fold the case of
# a local part).
SIGNATURE_CHARS = 16
_TOKEN_RE = re.compile(r"(case-[0-9a-hjkmnp-tv-z]{8})\.([a-z2-7]{16})", re.IGNORECASE)


def signature(case_id: str) -> str:
    digest = salted_hmac(PURPOSE, case_id, secret=settings.SECRET_KEY,
                         algorithm="sha256").digest()
    return base64.b32encode(digest).decode()[:SIGNATURE_CHARS].lower()


def token(case_id: str) -> str:
    return f"{case_id}.{signature(case_id)}"


def our_mailbox() -> tuple[str, str]:
    """(local part, domain) of the address outbound mail comes from."""
    _, sender = parseaddr(settings.DEFAULT_FROM_EMAIL)
    local, _, domain = sender.partition("@")
    return local, domain


def reply_address(case_id: str) -> str:
    local, domain = our_mailbox()
    return f"{local}+{token(case_id)}@{domain}"


def case_of(text: str) -> str | None:
    """The case a signed token anywhere in `text` (an address, a subject) names, or None:
    a token whose signature does not match is no token (compared in constant time)."""
    for match in _TOKEN_RE.finditer(text[:2000]):
        case_id, given = match.group(1), match.group(2).lower()
        case_id = case_id[:5].lower() + case_id[5:].upper()
        if CASE_ID_RE.match(case_id) and hmac.compare_digest(given, signature(case_id)):
            return case_id
    return None


def case_of_address(address: str) -> str | None:
    """The case a reply address names: our mailbox's local part, "+", a signed token."""
    local, domain = our_mailbox()
    _, address = parseaddr(address)
    mine, plus, tag = address.partition("@")[0].partition("+")
    if not plus or mine.lower() != local.lower() or \
            address.rpartition("@")[2].lower() != domain.lower():
        return None
    found = case_of(tag)
    return found if found is not None and tag.lower() == token(found).lower() else None
