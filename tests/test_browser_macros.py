"""Issue 25 in headless Chromium: the comment box's macro picker by keyboard alone."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from cases import temporal as gateway
from cases.models import Macro, Queue
from workers.model import Claim

from .conftest import run
from .test_browser_a11y import _serious
from .test_browser_layout import _login

pytestmark = pytest.mark.browser

SHOT = Path(__file__).resolve().parent.parent / "docs" / "screenshots" / "macro-picker.png"


def test_the_macro_picker_by_keyboard(browser: Browser, live_server, supervisor, open_case):
    billing = Queue.objects.get_or_create(slug="billing", defaults={"name": "Billing"})[0]
    for name, body, status in (
            ("Ask for the invoice number", "Hello {{ requester.name }}, could you send the "
             "invoice number? — {{ agent.username }}", "waiting"),
            ("Refund issued", "Hello {{ requester.name }}, we refunded {{ case.id }}.",
             "resolved")):
        macro = Macro(name=name, queue=billing, body=body, status=status, add_tags="macro")
        macro.full_clean()
        macro.save()
    case_id = open_case(title="Charged twice", queue="billing", requester_name="Ada Lovelace",
                        requester_email="ada@example.com")
    run(gateway.act(case_id, Claim(actor="sam")))
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    _login(page, live_server.url, "sam")
    page.goto(f"{live_server.url}/cases/{case_id}/")
    box = page.locator("#id_comment-body")
    box.focus()
    page.keyboard.type("Thanks! /re")
    listbox = page.get_by_role("listbox", name="Macros")
    expect(listbox).to_be_visible()
    expect(box).to_have_attribute("aria-expanded", "true")
    # Filtered as typed: "re" matches only one of them.
    expect(listbox.get_by_role("option")).to_have_count(1)
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")
    expect(listbox.get_by_role("option")).to_have_count(2)
    page.keyboard.press("ArrowDown")
    expect(listbox.get_by_role("option", name="Refund issued")).to_have_attribute(
        "aria-selected", "true")
    page.keyboard.press("Enter")
    preview = page.locator("#macro-preview")
    expect(preview).to_contain_text(f"Hello Ada Lovelace, we refunded {case_id}.")
    expect(preview).to_contain_text("status → Resolved")
    expect(box).to_have_value("Thanks! ")  # the "/" word is not part of the reply
    expect(page.locator("button.macro-apply-button")).to_be_focused()
    assert _serious(page) == []
    SHOT.parent.mkdir(parents=True, exist_ok=True)
    page.locator("section.comments, #case .main-col").first.screenshot(path=SHOT)
    page.keyboard.press("Enter")
    expect(page.locator("#case .flash.ok")).to_have_text("Applied the macro Refund issued.")
    state = run(gateway.get_case(case_id))
    assert state.status == "resolved" and "macro" in state.tags
    assert state.comments[-1].body == f"Hello Ada Lovelace, we refunded {case_id}."
    context.close()
