"""Uploads from the web and the API into the file store, for async views: every file of a
request is kept before its command is sent, and given back if the command is not applied."""

from __future__ import annotations

from typing import Any

from cases.config import dbconn
from cases.files import store
from workers.model import FileRef


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
