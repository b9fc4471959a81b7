"""Issue 23 in headless Chromium: the comment box's two modes (switched by keyboard, kept with
a draft across a live refresh, visibly different in light and dark), and files on the case
page (a dropped or chosen file uploaded with a progress bar, then downloaded)."""

from __future__ import annotations

import pytest
from playwright.sync_api import Browser, Page, expect

from cases import temporal as gateway
from workers.model import AddTag

from .conftest import run
from .test_browser_a11y import _serious
from .test_browser_layout import _background, _login

pytestmark = pytest.mark.browser

SEND = "Send to Ada Lovelace <ada@example.com>"


def _reply_background(page: Page) -> str:
    return page.evaluate(
        "() => getComputedStyle(document.querySelector('form.action-comment')).backgroundColor")


def _open_reply_case(open_case) -> str:
    return open_case(title="Invoice shows the wrong VAT", queue="billing",
                     requester_name="Ada Lovelace", requester_email="ada@example.com",
                     description="The March invoice charges 25% VAT instead of 20%.")


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_switching_reply_modes_by_keyboard_keeps_the_draft(
        browser: Browser, live_server, supervisor, open_case, screenshots_dir, scheme):
    case_id = _open_reply_case(open_case)
    context = browser.new_context(color_scheme=scheme, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _login(page, live_server.url, "sam")
    page.goto(f"{live_server.url}/cases/{case_id}/")
    send = page.locator("#case form.action-comment button[type=submit]")
    expect(send).to_have_accessible_name(SEND)
    public = page.get_by_role("radio", name="Public reply")
    internal = page.get_by_role("radio", name="Internal note")
    expect(public).to_be_checked()
    reply_look = _reply_background(page)
    page.locator("#id_comment-body").fill("Hello Ada, we are correcting the invoice.")
    page.screenshot(path=screenshots_dir / f"reply-public-{scheme}.png", full_page=True)
    assert _serious(page) == []

    # The keyboard alone: the mode group is one tab stop, the arrows choose.
    public.focus()
    page.keyboard.press("ArrowRight")
    expect(internal).to_be_checked()
    expect(send).to_have_accessible_name("Add internal note")
    expect(page.locator("#id_comment-body")).to_have_accessible_name("Note for agents only")
    assert _reply_background(page) != reply_look  # the internal note looks unlike a reply
    if scheme == "dark":
        assert max(_background(page)) < 40
    page.locator("#id_comment-body").fill("Finance says the rate table is stale.")
    # Someone else changes the case: the page takes it, the draft and its mode stay.
    run(gateway.act(case_id, AddTag(actor="bob", tag="vat")))
    page.evaluate("() => document.dispatchEvent(new Event('visible-again'))")
    expect(page.locator("#case-tags")).to_contain_text("vat")
    expect(internal).to_be_checked()
    expect(page.locator("#id_comment-body")).to_have_value("Finance says the rate table is stale.")
    expect(send).to_have_accessible_name("Add internal note")
    page.screenshot(path=screenshots_dir / f"reply-internal-{scheme}.png", full_page=True)
    assert _serious(page) == []

    send.click()
    expect(page.locator("#case .flash.ok")).to_have_text("Comment: done.")
    expect(page.locator("li.comment.internal")).to_contain_text("rate table is stale")
    [comment] = run(gateway.get_case(case_id)).comments
    assert comment.internal is True
    # The next comment starts in the queue's mode again.
    expect(page.get_by_role("radio", name="Public reply")).to_be_checked()
    expect(send).to_have_accessible_name(SEND)
    context.close()


def _png(width: int, height: int) -> bytes:
    """A real PNG of noise (about width*height*3 bytes: noise does not compress)."""
    import os
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + os.urandom(width * 3) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


DROP = """([name, b64, selector]) => {
  const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type: "image/png" }));
  const target = document.querySelector(selector);
  for (const type of ["dragenter", "dragover", "drop"]) {
    const init = { dataTransfer: data, bubbles: true, cancelable: true };
    target.dispatchEvent(new DragEvent(type, init));
  }
}"""
MID_UPLOAD = """() => { const bar = document.querySelector('#case .upload-progress');
  return !!bar && !bar.hidden && bar.value > 0 && bar.value < 100; }"""


def test_a_dropped_file_uploads_with_a_progress_bar_and_downloads(
        browser: Browser, live_server, supervisor, open_case, screenshots_dir):
    import base64

    case_id = _open_reply_case(open_case)
    image = _png(500, 500)  # ~750 KB
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    _login(page, live_server.url, "sam")
    page.goto(f"{live_server.url}/cases/{case_id}/")
    # A slow uplink (Chromium's own network emulation), so the upload takes its time.
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 150_000})
    page.evaluate(DROP, ["invoice-scan.png", base64.b64encode(image).decode(), "#case .main-col"])
    page.wait_for_function(MID_UPLOAD)  # the bar moves while the bytes travel
    page.screenshot(path=screenshots_dir / "upload-progress.png", full_page=True)
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1})
    item = page.locator("#attachments .attachment", has_text="invoice-scan.png")
    expect(item).to_be_visible(timeout=30_000)
    expect(page.locator("#case .upload-status")).to_have_text("Uploaded invoice-scan.png.")
    thumb = item.locator("img.thumb")
    expect(thumb).to_be_visible()
    page.wait_for_function("(img) => img.complete && img.naturalWidth === 500",
                           arg=thumb.element_handle())
    [attached] = run(gateway.get_case(case_id)).attachments
    assert attached.file.name == "invoice-scan.png" and attached.file.size == len(image)
    page.screenshot(path=screenshots_dir / "files.png", full_page=True)
    assert _serious(page) == []
    with page.expect_download() as download:
        item.get_by_role("link", name="invoice-scan.png").click()
    assert download.value.suggested_filename == "invoice-scan.png"
    with open(download.value.path(), "rb") as got:
        assert got.read() == image
    # A file with a comment: its thumbnail beside the comment it came with.
    page.locator("#id_comment-body").fill("Here is the corrected invoice.")
    page.set_input_files("#id_comment-files", files=[
        {"name": "corrected.png", "mimeType": "image/png", "buffer": _png(40, 30)}])
    page.locator("#case form.action-comment button[type=submit]").click()
    expect(page.locator("#case .flash.ok")).to_have_text("Comment: done.")
    shot = page.locator("li.comment", has_text="corrected invoice").locator("img.thumb")
    expect(shot).to_be_visible()
    page.wait_for_function("(img) => img.complete && img.naturalWidth === 40",
                           arg=shot.element_handle())
    expect(page.locator("#attachments .attachment")).to_have_count(2)
    context.close()


def test_a_refused_upload_says_why_in_place(browser: Browser, live_server, supervisor,
                                            open_case, settings):
    import base64

    settings.ATTACHMENT_MAX_BYTES = 10_000
    case_id = _open_reply_case(open_case)
    page = browser.new_page()
    _login(page, live_server.url, "sam")
    page.goto(f"{live_server.url}/cases/{case_id}/")
    page.evaluate(DROP, ["big.png", base64.b64encode(_png(100, 100)).decode(), "#case .main-col"])
    error = page.locator("#case .upload-error")
    expect(error).to_be_visible()
    expect(error).to_have_attribute("role", "alert")
    expect(error).to_contain_text("over the limit")  # the server's own words (413)
    expect(page.locator("#case .upload-progress")).to_be_hidden()
    assert run(gateway.get_case(case_id)).attachments == []
    page.context.close()
