"""Uploads from the web and the API into the file store, for async views: every file of a
request is kept before its command is sent, and given back if the command is not applied."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.files.uploadhandler import FileUploadHandler, StopUpload
from django.http import HttpRequest

from cases.config import dbconn
from cases.files import store
from workers.model import FileRef
from workers.rules import clean_file_name


def _keep_all(uploads: dict[str, list[Any]]) -> dict[str, list[FileRef]]:
    kept: dict[str, list[FileRef]] = {}
    try:
        for name, files in uploads.items():
            for upload in files:
                with upload.open("rb") as data:
                    kept.setdefault(name, []).append(store.keep(data, upload.name))
    except BaseException:
        # One refused file refuses the request: what was kept for it goes back.
        store.discard([ref for refs in kept.values() for ref in refs])
        raise
    return kept


async def keep_all(uploads: dict[str, list[Any]]) -> dict[str, list[FileRef]]:
    """Keep every upload (input name -> uploaded files); raises store.FileRefused having
    kept nothing of the request."""
    if not any(uploads.values()):
        return {}
    return await dbconn.read(lambda: _keep_all(uploads))


async def give_back(kept: dict[str, list[FileRef]] | list[FileRef]) -> None:
    """Discard what was kept for a command that was not applied."""
    refs = kept if isinstance(kept, list) else [r for rs in kept.values() for r in rs]
    if refs:
        await dbconn.read(lambda: store.discard(refs))


class LimitedUploadHandler(FileUploadHandler):
    """First of FILE_UPLOAD_HANDLERS: once one file of a request passes
    ATTACHMENT_MAX_BYTES, Django stops taking it (the rest of the body is read and dropped,
    never spooled to disk) and the view answers 413 (`too_large`)."""

    def new_file(self, *args: Any, **kwargs: Any) -> None:
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        self.received += len(raw_data)
        if self.received > settings.ATTACHMENT_MAX_BYTES:
            self.request.attachment_too_large = self.file_name  # type: ignore[union-attr]
            raise StopUpload(connection_reset=False)
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None  # the next handlers keep the file


def too_large(request: HttpRequest) -> str:
    """Why the request's upload was stopped ("" when it was not), for a 413."""
    name = getattr(request, "attachment_too_large", None)
    if name is None:
        return ""
    limit = settings.ATTACHMENT_MAX_BYTES
    return (f"{clean_file_name(name)} is over the limit of {store.megabytes(limit)}; "
            "nothing was kept.")
