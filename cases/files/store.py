"""The claim check (issue 23): the one home of file bytes. CONTRACT, implemented by the
files work; other code (mail in, the API, the page) calls only these.

A file is kept once per SHA-256 in Django's storage (`STORAGES["attachments"]`: the file
system under var/ by default, S3-compatible through django-storages), its type sniffed from
the bytes. The workflow records the FileRef it returns through a command; a file whose
command was refused is given back with `discard`.
"""

from __future__ import annotations

from typing import IO

from workers.model import FileRef


class FileRefused(Exception):
    """Not kept: over ATTACHMENT_MAX_BYTES (`status` 413) or a type off the allow-list (415).
    The message is for the person who sent it."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def keep(data: bytes | IO[bytes], name: str, *, internal_type: str = "") -> FileRef:
    """Store `data` (once per SHA-256) and return its reference. `internal_type` is for files
    the product itself keeps whatever the allow-list says (a received mail:
    "message/rfc822"). Raises FileRefused."""
    raise NotImplementedError


def discard(refs: list[FileRef]) -> None:
    """Give back files whose command was refused: removed unless something else holds them."""
    raise NotImplementedError


def open_file(ref: FileRef) -> IO[bytes]:
    """The bytes of a kept file, for streaming a download or attaching to a mail."""
    raise NotImplementedError
