"""The History tab and time travel in headless Chromium."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from cases import temporal as gateway
from workers.model import AddComment, AddTag, Claim, Close, Resolve, SetPriority

from .conftest import run
from .test_browser import login

pytestmark = pytest.mark.browser


def test_history_tab_and_time_travel(page: Page, live_server, supervisor, temporal,
                                     open_case, screenshots_dir):
    case_id = open_case(queue="technical", title="Label printer prints blank pages",
                        description="Since the driver update on Monday.")
    for command in (
        Claim(actor="alice"),
        AddComment(actor="alice", body="Reinstalled the driver; no change."),
        SetPriority(actor="sam", priority=2),
        AddTag(actor="alice", tag="hardware"),
        AddComment(actor="alice", body="Print head was dry: replaced the ribbon."),
        Resolve(actor="alice", resolution="Replaced the ribbon."),
    ):
        run(gateway.act(case_id, command))

    base = live_server.url
    login(page, base, "sam")
    page.goto(f"{base}/cases/{case_id}/")
    page.keyboard.press("h")  # the same as clicking the History tab
    expect(page).to_have_url(re.compile(rf"/cases/{case_id}/history/$"))
    timeline = page.locator(".history-timeline li")
    expect(timeline).to_have_count(7)
    expect(timeline.first).to_contain_text("alice resolved the case")
    expect(timeline.last).to_contain_text("intake opened the case")
    page.screenshot(path=screenshots_dir / "history.png", full_page=True)

    # Choose the priority change: the case as it was then, read-only, with its banner.
    page.click("text=priority 3 → 2 by sam")
    banner = page.locator(".as-of-banner")
    expect(banner).to_contain_text("As of")
    expect(banner).to_contain_text("right after “priority 3 → 2 by sam” (version 4)")
    expect(page.locator(".case-head .badge")).to_have_text("In progress")
    expect(page.locator(".case-head .prio")).to_have_text("2")
    expect(page.locator("li.comment")).to_have_count(1)  # the second comment came later
    expect(page.locator(".case-head")).not_to_contain_text("hardware")
    expect(page.locator("li.active")).to_contain_text("priority 3 → 2 by sam")
    expect(page.locator("main form[method=post]")).to_have_count(0)
    page.screenshot(path=screenshots_dir / "time-travel.png", full_page=True)

    # Back to the timeline, then the case now; close it and the page stays readable.
    page.click("text=Back to the timeline")
    expect(page.locator(".as-of-banner")).to_have_count(0)
    run(gateway.act(case_id, Close(actor="sam")))
    page.click("nav.tabs >> text=Case")
    expect(page.locator(".case-head .badge")).to_have_text("Closed")
    expect(page.locator("#case")).to_contain_text("Shown from its event history")
    page.screenshot(path=screenshots_dir / "ended-case.png", full_page=True)

    # Ended cases in the list, and the archive search explaining the dev server has none.
    page.click("header nav >> text=Ended cases")
    for _ in range(40):
        if page.locator(f"#row-{case_id}").count():
            break
        page.wait_for_timeout(100)
        page.reload()
    expect(page.locator(f"#row-{case_id}")).to_contain_text("ended")
    page.screenshot(path=screenshots_dir / "ended-list.png")
    page.click("text=Search ended cases, past retention too")
    expect(page.locator(".archival-off")).to_contain_text("Archival is not configured")
    page.screenshot(path=screenshots_dir / "archived.png", full_page=True)
