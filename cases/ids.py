"""Case ids: `case-` and eight Crockford base32 characters, short enough to read aloud."""

from __future__ import annotations

import hashlib
import re
import secrets

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CASE_ID_RE = re.compile(r"^case-[0-9A-HJKMNP-TV-Z]{8}$")


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
