"""Downloads and previews of a case's files (issue 23): only through the one door
(lookup.case_for), so a case this user may not see, or that has no such attachment, is 404."""

from __future__ import annotations

import filetype
from django.contrib.auth.decorators import login_required
from django.http import FileResponse, Http404, HttpRequest
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


def _open(attachment: Attachment, preview: bool):  # type: ignore[no-untyped-def]
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


async def _serve(request: HttpRequest, case_id: str, attachment_id: str,
                 preview: bool) -> FileResponse:
    access = (await config_for(request)).access
    attachment = await attachment_for(access, case_id, attachment_id)
    if preview and attachment.file.content_type not in store.PREVIEWABLE:
        raise Http404(NOT_FOUND)
    handle = await dbconn.read(lambda: _open(attachment, preview))
    response = FileResponse(
        handle, as_attachment=not preview, filename=attachment.file.name,
        content_type=attachment.file.content_type)
    response["X-Content-Type-Options"] = "nosniff"
    # Whatever a file holds, it runs nothing and loads nothing when opened in our origin.
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_GET
@login_required
async def download(request: HttpRequest, case_id: str, attachment_id: str) -> FileResponse:
    return await _serve(request, case_id, attachment_id, preview=False)


@require_GET
@login_required
async def preview(request: HttpRequest, case_id: str, attachment_id: str) -> FileResponse:
    return await _serve(request, case_id, attachment_id, preview=True)
