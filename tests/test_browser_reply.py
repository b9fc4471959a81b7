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
