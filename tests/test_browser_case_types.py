"""Issue 25: the new-case form's type picker swaps the type's fields in place (HTMX), keeps
what was typed, and the rules' refusal of a missing required field shows by that field."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from .test_browser import login
from .test_case_types import REQUIRED, refund  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _settled(page: Page) -> None:
    """htmx has bound the swapped-in form's triggers: it does so when the swap settles (20 ms
    on), and a pick made before then changed nothing (CI: the second pick was lost)."""
    page.wait_for_function("""() => {
        const f = document.getElementById("new-case-form");
        return f && !f.classList.contains("htmx-added")
            && !f.classList.contains("htmx-request"); }""")


def test_the_type_picker_swaps_the_fields_and_the_refusal_shows_inline(
        page: Page, live_server, supervisor, refund, temporal):  # noqa: F811
    base = live_server.url
    login(page, base, "sam")
    page.goto(f"{base}/cases/new/")
    page.fill("#id_title", "Money back")
    page.select_option("#id_queue", "billing")
    # The queue's default type comes with its fields: the required one marked, the
    # default filled in.
    expect(page.locator("#id_case_type")).to_have_value("refund")
    expect(page.locator("label[for=id_attr_OrderNumber]")).to_have_text(
        "Order number (required):")
    expect(page.locator("#id_attr_CxRegion")).to_have_value("EU")
    expect(page.locator("#id_title")).to_have_value("Money back")
    # Another type: its fields alone.
    _settled(page)
    page.select_option("#id_case_type", "inquiry")
    expect(page.locator("#id_attr_OrderNumber")).to_have_count(0)
    expect(page.locator("#id_attr_CxRegion")).to_be_visible()
    _settled(page)
    page.select_option("#id_case_type", "refund")
    expect(page.locator("#id_attr_OrderNumber")).to_be_visible()
    page.click("button:has-text('Open case')")
    expect(page.locator(".field.invalid")).to_contain_text(REQUIRED)
    page.fill("#id_attr_OrderNumber", "R-77")
    page.click("button:has-text('Open case')")
    expect(page.locator(".case-type")).to_contain_text("Refund (version 1)")
