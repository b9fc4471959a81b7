"""Downloads and previews of a case's files (issue 23): only through the one door
(lookup.case_for), so a case this user may not see, or that has no such attachment, is 404."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import IO

import filetype
from asgiref.sync import sync_to_async
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, StreamingHttpResponse
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from cases.config import dbconn
from cases.config.access import Access
from cases.config.reading import config_for
from cases.files import store
from cases.web.lookup import case_for
from workers.model import Attachment

NOT_FOUND = "No such file."


async def attachment_for(access: Access, case_id: str, attachment_id: str) -> Attachment:
    """The case's attachment `attachment_id`, as this user may see it, else 404."""
    seen = await case_for(access, case_id)
    state = seen.state
    found = next((a for a in state.attachments if a.id == attachment_id), None) \
        if state is not None else None
    if found is None:
        raise Http404(NOT_FOUND)
    return found


def _open(attachment: Attachment, preview: bool) -> IO[bytes]:
    try:
        handle = store.open_file(attachment.file)
    except (FileNotFoundError, OSError) as err:
        raise Http404(NOT_FOUND) from err
    if preview:
        # Inline only for what the bytes themselves say is a raster image, whatever was
        # recorded: an SVG or HTML page named .png never renders in our origin.
        kind = filetype.guess(handle.read(store.SNIFF_BYTES))
        handle.seek(0)
        if kind is None or kind.mime not in store.PREVIEWABLE:
            handle.close()
            raise Http404(NOT_FOUND)
    return handle


async def _chunks(handle: IO[bytes]) -> AsyncIterator[bytes]:
    read = sync_to_async(handle.read, thread_sensitive=False)
    try:
        while chunk := await read(store.CHUNK):
            yield chunk
    finally:
        await sync_to_async(handle.close, thread_sensitive=False)()


async def serve(access: Access, case_id: str, attachment_id: str,
                preview: bool = False) -> StreamingHttpResponse:
    """The file streamed: as an attachment, or (`preview`) inline when its bytes are a
    raster image; 404 for anything this user may not see or that is not there."""
    attachment = await attachment_for(access, case_id, attachment_id)
    if preview and attachment.file.content_type not in store.PREVIEWABLE:
        raise Http404(NOT_FOUND)
    handle = await dbconn.read(lambda: _open(attachment, preview))
    # An async iterator: under ASGI a file object would be read whole into memory first.
    response = StreamingHttpResponse(_chunks(handle),
                                     content_type=attachment.file.content_type)
    response["Content-Length"] = str(attachment.file.size)
    response["Content-Disposition"] = content_disposition_header(
        not preview, attachment.file.name) or ""
    response["X-Content-Type-Options"] = "nosniff"
    # Whatever a file holds, it runs nothing and loads nothing when opened in our origin.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


async def _serve(request: HttpRequest, case_id: str, attachment_id: str,
                 preview: bool) -> StreamingHttpResponse:
    access = (await config_for(request)).access
    return await serve(access, case_id, attachment_id, preview)


@require_GET
@login_required
async def download(request: HttpRequest, case_id: str, attachment_id: str) -> StreamingHttpResponse:
    return await _serve(request, case_id, attachment_id, preview=False)


@require_GET
@login_required
async def preview(request: HttpRequest, case_id: str, attachment_id: str) -> StreamingHttpResponse:
    return await _serve(request, case_id, attachment_id, preview=True)
