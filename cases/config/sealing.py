"""Secrets the admin enters (IMAP passwords) are kept sealed in the database: Fernet
(AES-128-CBC + HMAC-SHA256) under MAIL_SECRET_KEY, or a key derived from SECRET_KEY. A
database dump or backup then holds no usable mailbox password without the key."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings


class Unsealable(Exception):
    """The sealed value was made under another key (SECRET_KEY or MAIL_SECRET_KEY changed)."""


def _fernet() -> Fernet:
    secret = settings.MAIL_SECRET_KEY or settings.SECRET_KEY
    # Domain-separated from every other use of SECRET_KEY (sessions, signing).
    key = hashlib.sha256(b"tracerail.mailbox-password:" + secret.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(plain: str) -> str:
    return _fernet().encrypt(plain.encode()).decode("ascii")


def unseal(sealed: str) -> str:
    try:
        return _fernet().decrypt(sealed.encode("ascii")).decode()
    except (InvalidToken, ValueError) as err:
        raise Unsealable("the stored password was sealed under another key; enter it again "
                         "in the admin") from err
