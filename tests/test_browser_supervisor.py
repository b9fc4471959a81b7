"""Supervisor work in headless Chromium: bulk selection, saved views, the dashboard."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from cases import temporal as gateway

from .conftest import eventually, listed, run
from .test_browser import login

pytestmark = pytest.mark.browser


def test_shift_click_and_select_all_drive_bulk_actions(page: Page, live_server, supervisor,
                                                       agent, open_case, screenshots_dir):
    ids = [open_case(title=f"Bulkbird {i}") for i in range(5)]
    eventually(lambda: listed(5, "bulkbird"))
    login(page, live_server.url, "sam")
    page.goto(f"{live_server.url}/cases/?q=bulkbird")
    boxes = page.locator("input[name=case]")
    expect(boxes).to_have_count(5)
    boxes.nth(1).click()
    boxes.nth(3).click(modifiers=["Shift"])  # selects 1..3
    expect(page.locator("input[name=case]:checked")).to_have_count(3)
    expect(page.locator(".bulk-bar .selected-count")).to_have_text("3 selected:")
    page.select_option(".bulk-bar select[name=action]", "add_tag")
    page.fill(".bulk-bar input[name=tag]", "flock")
    page.click("button:has-text('Apply to selected')")
    expect(page.locator(".summary")).to_contain_text("3 done")
    page.screenshot(path=screenshots_dir / "bulk-report.png", full_page=True)
    tagged = [c for c in ids if run(gateway.get_case(c)).tags == ["flock"]]
    assert len(tagged) == 3
    page.click("text=Back to the list")
    expect(page).to_have_url(re.compile(r"q=bulkbird"))
    page.check("#select-page")
    expect(page.locator("input[name=case]:checked")).to_have_count(5)
    page.select_option(".bulk-bar select[name=action]", "assign")
    page.fill(".bulk-bar input[name=assignee]", "alice")
    page.click("button:has-text('Apply to selected')")
    expect(page.locator(".summary")).to_contain_text("5 done")
    assert all(run(gateway.get_case(c)).assignee == "alice" for c in ids)


def test_save_a_view_and_open_it_from_the_sidebar(page: Page, live_server, supervisor,
                                                  open_case):
    open_case(title="Viewfinch urgent", priority=1)
    open_case(title="Viewfinch calm", priority=4)
    eventually(lambda: listed(2, "viewfinch"))
    login(page, live_server.url, "sam")
    page.fill("#id_q", "viewfinch")
    page.check("input[name=priority][value='1']")
    expect(page.locator("tr.case-row")).to_have_count(1)
    page.click("summary:has-text('Save this view')")
    page.fill("#save-view input[name=name]", "Urgent finches")
    page.click("#save-view button:has-text('Save view')")
    expect(page.locator(".messages")).to_contain_text("Saved the view")
    link = page.locator("nav.views li.active")
    expect(link).to_contain_text("Urgent finches")
    expect(link.locator(".count")).to_have_text("1")
    expect(page.locator("tr.case-row")).to_have_count(1)
    page.goto(f"{live_server.url}/cases/?q=")
    page.click("nav.views a:has-text('Urgent finches')")
    expect(page.locator("input[name=priority][value='1']")).to_be_checked()
    expect(page.locator("tr.case-row")).to_have_count(1)


def test_dashboard_bars_open_the_list(page: Page, live_server, supervisor, open_case,
                                      screenshots_dir):
    open_case(title="Dashowl one", queue="billing")
    open_case(title="Dashowl two", queue="general")
    eventually(lambda: listed(2, "dashowl"))
    login(page, live_server.url, "sam")
    page.goto(f"{live_server.url}/dashboard/?q=dashowl")
    expect(page.locator(".tile").first).to_contain_text("2")
    page.screenshot(path=screenshots_dir / "dashboard.png", full_page=True)
    page.locator("svg a.bar", has=page.locator("title", has_text="Billing: 1")).click()
    expect(page).to_have_url(re.compile(r"/cases/\?.*queue=billing"))
    expect(page.locator("tr.case-row")).to_have_count(1)
