"""The claim check (issue 23): the one home of file bytes. Other code (mail in, the API, the
page) calls only keep/discard/open_file.

A file is kept once per SHA-256 in Django's storage (`STORAGES["attachments"]`: the file
system under var/ by default, S3-compatible through django-storages), its type sniffed from
the bytes. The workflow records the FileRef it returns through a command; a file whose
command was refused is given back with `discard`. Each keep is counted on the blob's row
(cases.models.StoredBlob), so a discard removes the bytes only when no other keep holds
them (docs/decisions.md, 2026-12-06).

Synchronous (ORM and storage I/O): async callers use `sync_to_async`.
"""

from __future__ import annotations

import codecs
import hashlib
import io
import logging
import os
import tempfile
from typing import IO

import filetype
from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, storages
from django.db import transaction
from django.db.models import F

from workers.model import FileRef
from workers.rules import clean_file_name, file_key

log = logging.getLogger(__name__)

CHUNK = 64 * 1024
SNIFF_BYTES = 8192  # what filetype reads of a file
# Raster images a browser may be shown inline (by content; never SVG or HTML).
PREVIEWABLE = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
TEXT = "text/plain"
BINARY = "application/octet-stream"


class FileRefused(Exception):
    """Not kept: over ATTACHMENT_MAX_BYTES (`status` 413) or a type off the allow-list (415).
    The message is for the person who sent it."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


def _storage() -> Storage:
    return storages["attachments"]


def sniff(head: bytes, is_text: bool, name: str) -> str:
    """The type by content: filetype's magic numbers; without one, UTF-8 text without NUL
    is text (a .csv name makes it text/csv: the same bytes, a friendlier application)."""
    kind = filetype.guess(head) if head else None
    if kind is not None:
        return str(kind.mime)
    if is_text:
        markup = _markup(head)
        if markup:
            return markup
        return "text/csv" if name.lower().endswith(".csv") else TEXT
    return BINARY


def _markup(head: bytes) -> str:
    """SVG or HTML by what a browser would see in the text's start (it would run their
    script): named so, they are off any allow-list."""
    text = head[:1024].decode("utf-8", "ignore").lstrip("\ufeff \t\r\n").lower()
    if not text.startswith("<"):
        return ""
    if "<svg" in head.decode("utf-8", "ignore").lower():
        return "image/svg+xml"
    if any(tag in text for tag in ("<!doctype html", "<html", "<script", "<body", "<head",
                                   "<iframe", "<img", "<a ", "<div")):
        return "text/html"
    if text.startswith("<?xml"):
        return "application/xml"  # an XML stylesheet can run script too
    return ""


def _spool(data: bytes | IO[bytes], limit: int) -> tuple[IO[bytes], int, str, bytes, bool]:
    """Copy `data` to a temporary file while hashing, reading no more than one byte past
    the limit. Returns (file, size, sha256, head, is_text)."""
    source: IO[bytes]
    if isinstance(data, bytes | bytearray):
        source = io.BytesIO(bytes(data))
    else:
        source = data
    if hasattr(source, "seek"):
        try:
            source.seek(0)
        except (OSError, ValueError):
            pass  # a stream that cannot rewind is read from where it stands
    spool = tempfile.TemporaryFile()
    digest, size, head = hashlib.sha256(), 0, b""
    decoder = codecs.getincrementaldecoder("utf-8")()
    is_text = True
    try:
        while True:
            chunk = source.read(min(CHUNK, limit + 1 - size))
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise FileRefused(
                    f"That file is over the limit of {megabytes(limit)}; nothing was kept.",
                    413)
            digest.update(chunk)
            spool.write(chunk)
            if len(head) < SNIFF_BYTES:
                head += chunk[:SNIFF_BYTES - len(head)]
            if is_text:
                try:
                    decoder.decode(chunk)
                    is_text = b"\x00" not in chunk
                except UnicodeDecodeError:
                    is_text = False
        if is_text:
            try:
                decoder.decode(b"", final=True)
            except UnicodeDecodeError:
                is_text = False
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool, size, digest.hexdigest(), head, is_text and size > 0


def megabytes(n: int) -> str:
    return f"{n / 1024 / 1024:g} MB" if n >= 1024 * 1024 else f"{n:,} bytes"


def keep(data: bytes | IO[bytes], name: str, *, internal_type: str = "") -> FileRef:
    """Store `data` (once per SHA-256) and return its reference. `internal_type` is for files
    the product itself keeps whatever the allow-list says (a received mail:
    "message/rfc822"). Raises FileRefused, having stored nothing."""
    from cases.models import StoredBlob

    name = clean_file_name(name)
    spool, size, sha, head, is_text = _spool(data, settings.ATTACHMENT_MAX_BYTES)
    with spool:
        content_type = internal_type or sniff(head, is_text, name)
        if not internal_type and content_type not in settings.ATTACHMENT_TYPES:
            raise FileRefused(
                f"{name}: files of type {content_type} are not accepted here.", 415)
        key = file_key(sha)
        storage = _storage()
        # The row's lock orders a keep against a discard of the same bytes: a discard that
        # took the last claim has removed them before this keep writes them again.
        with transaction.atomic():
            blob, _ = StoredBlob.objects.select_for_update().get_or_create(
                sha256=sha, defaults={"size": size})
            if not storage.exists(key):
                saved = storage.save(key, File(spool, name=key))
                if saved != key:  # a storage that renames on collision breaks the claim check
                    storage.delete(saved)
                    raise RuntimeError(f"storage kept {key} as {saved}")
            StoredBlob.objects.filter(pk=blob.pk).update(claims=F("claims") + 1)
    return FileRef(name=name, size=size, content_type=content_type, sha256=sha, key=key)


def discard(refs: list[FileRef]) -> None:
    """Give back files whose command was refused: removed unless something else holds them.
    One failure is logged and the others still go."""
    from cases.models import StoredBlob

    for ref in refs:
        try:
            with transaction.atomic():
                blob = StoredBlob.objects.select_for_update().filter(sha256=ref.sha256).first()
                if blob is None or blob.claims == 0:
                    continue  # not this store's keep: nothing to give back
                if blob.claims > 1:
                    StoredBlob.objects.filter(pk=blob.pk).update(claims=F("claims") - 1)
                    continue
                blob.delete()
                _storage().delete(file_key(ref.sha256))
        except Exception:
            log.exception("could not give back %s (%s)", ref.name, ref.sha256)


def open_file(ref: FileRef) -> IO[bytes]:
    """The bytes of a kept file, for streaming a download or attaching to a mail."""
    return _storage().open(file_key(ref.sha256), "rb")


def exists(ref: FileRef) -> bool:
    return bool(_storage().exists(file_key(ref.sha256)))


def blob_count() -> int:
    """Files the store holds (for tests and admins): one per SHA-256."""
    storage = _storage()
    if hasattr(storage, "location"):
        return sum(len(files) for _, _, files in os.walk(storage.location))
    from cases.models import StoredBlob
    return StoredBlob.objects.count()
