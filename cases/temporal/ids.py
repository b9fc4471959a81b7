"""Case ids: `case-` and eight Crockford base32 characters, short enough to read aloud."""

from __future__ import annotations

import hashlib
import secrets

from workers.rules import CASE_ID_RE

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"



def new_case_id() -> str:
    return "case-" + "".join(secrets.choice(_ALPHABET) for _ in range(8))


def is_case_id(value: str) -> bool:
    return bool(CASE_ID_RE.match(value))


def case_id_for_key(scope: str, key: str) -> str:
    """A stable case id for a client's idempotency key: the same key (within one API
    client) always names the same case, so a retried POST cannot open a second one."""
    digest = hashlib.sha256(f"{scope}\x00{key}".encode()).digest()
    number = int.from_bytes(digest[:5], "big")  # 40 bits = 8 base32 characters
    return "case-" + "".join(_ALPHABET[(number >> (5 * i)) & 31] for i in reversed(range(8)))


def update_id(actor: str, case_id: str, action: str, key: str) -> str:
    """The Update id for one submission of a form. Temporal answers a repeated id with the
    first outcome without running the validator, so the id must be one that nobody else can
    produce: it is derived from the acting user and the case as well as the form's key."""
    digest = hashlib.sha256(f"{actor}\x00{case_id}\x00{action}\x00{key}".encode()).hexdigest()
    return f"{action}-{digest[:32]}"
