"""End to end in headless Chromium: create → list → open → claim → comment."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from .conftest import PASSWORD

pytestmark = pytest.mark.browser


def login(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/cases/$"))


def test_create_list_open_claim_comment(page: Page, live_server, agent, temporal,
                                        screenshots_dir):
    base = live_server.url
    login(page, base, "alice")

    page.click("text=New case")
    page.fill("#id_title", "Printer <b>jams</b> on tray 2")
    page.select_option("#id_queue", "technical")
    page.select_option("#id_priority", "2")
    page.fill("#id_description", "Every morning since Monday.")
    page.fill("#id_requester_name", "Grace Hopper")
    page.fill("#id_requester_email", "grace@example.com")
    page.fill("#id_tags", "hardware")
    page.click("button:has-text('Open case')")

    expect(page.locator("h1")).to_have_text("Printer <b>jams</b> on tray 2")
    case_id = page.locator(".case-id").inner_text()
    assert re.fullmatch(r"case-[0-9A-Z]{8}", case_id)

    # The list (Visibility) shows it; reload until the row appears (visibility lag).
    page.goto(f"{base}/cases/")
    for _ in range(40):
        if page.locator(f"#row-{case_id}").count():
            break
        page.wait_for_timeout(100)
        page.reload()
    row = page.locator(f"#row-{case_id}")
    expect(row).to_contain_text("Printer <b>jams</b> on tray 2")
    expect(row).to_contain_text("New")
    page.screenshot(path=screenshots_dir / "list.png", full_page=True)

    row.locator("a").first.click()
    expect(page).to_have_url(re.compile(rf"/cases/{case_id}/$"))

    # Claim through HTMX: the case partial is swapped in place from the Update's result.
    page.click("button:has-text('Claim')")
    expect(page.locator(".flash.ok")).to_have_text("Claim: done.")
    expect(page.locator("dd.assignee")).to_have_text("alice")
    expect(page.locator("#case .badge.status-in_progress")).to_be_visible()
    expect(page).to_have_url(re.compile(rf"/cases/{case_id}/$"))

    page.fill("#id_comment-body", "Replaced the roller; please try again.")
    page.check("input[name=comment-internal][value=true]")
    page.click("button:has-text('Add internal note')")
    comment = page.locator("li.comment.internal")
    expect(comment).to_contain_text("Replaced the roller; please try again.")
    expect(comment).to_contain_text("Internal")
    page.screenshot(path=screenshots_dir / "detail.png", full_page=True)

    # A refused action is shown in words, in place.
    page.fill("#id_resolve-resolution", "   ")
    page.click("button:has-text('Resolve')")
    expect(page.locator(".action-resolve .errorlist")).to_be_visible()


def test_pages_work_without_javascript(browser, live_server, agent, temporal, open_case):
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    case_id = open_case(title="No JS case")
    login(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/cases/{case_id}/")
    page.click("button:has-text('Claim')")
    expect(page.locator("dd.assignee")).to_have_text("alice")
    expect(page.locator(".messages")).to_contain_text("Claim: done.")
    context.close()
