"""Case ids: `case-` and eight Crockford base32 characters, short enough to read aloud."""

from __future__ import annotations

import re
import secrets

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CASE_ID_RE = re.compile(r"^case-[0-9A-HJKMNP-TV-Z]{8}$")


def new_case_id() -> str:
    return "case-" + "".join(secrets.choice(_ALPHABET) for _ in range(8))


def is_case_id(value: str) -> bool:
    return bool(CASE_ID_RE.match(value))
