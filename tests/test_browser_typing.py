"""What a person types survives every swap of the case: action responses and refreshes."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Page, Route, expect

from cases import temporal as gateway
from workers.model import Claim

from .conftest import run
from .test_browser import login

pytestmark = pytest.mark.browser


def _hold(page: Page, action: str) -> list[Route]:
    """Hold every POST of `action` until the test lets it go, so typing happens while the
    request is in flight (deterministically, not by racing a fast server)."""
    held: list[Route] = []

    def handler(route: Route) -> None:
        if route.request.method == "POST":
            held.append(route)
        else:
            route.continue_()

    page.route(f"**/{action}/", handler)
    return held


def _release(page: Page, held: list[Route]) -> None:
    page.wait_for_timeout(50)  # let the route handler see the request
    for _ in range(100):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the action was never sent"
    held.pop().continue_()


def test_typing_while_a_claim_is_in_flight_survives_its_swap(page: Page, live_server,
                                                            supervisor, open_case,
                                                            screenshots_dir):
    case_id = open_case(queue="technical")
    login(page, live_server.url, "sam")
    page.goto(f"{live_server.url}/cases/{case_id}/")
    held = _hold(page, "claim")

    page.click("#case button:has-text('Claim')")
    box = page.locator("#id_comment-body")
    box.click()
    page.keyboard.type("Half a thought about the toner")
    page.locator("#id_resolve-resolution").fill("Draft resolution")
    box.focus()
    box.evaluate("el => el.setSelectionRange(5, 5)")  # mid-text: the caret must stay put
    _release(page, held)

    expect(page.locator("#case .flash.ok")).to_have_text("Claim: done.")
    expect(page.locator("dd.assignee")).to_have_text("sam")
    expect(box).to_have_value("Half a thought about the toner")
    expect(page.locator("#id_resolve-resolution")).to_have_value("Draft resolution")
    # Still typing where they were: focus and caret come back, the result is only announced.
    expect(box).to_be_focused()
    assert box.evaluate("el => [el.selectionStart, el.selectionEnd]") == [5, 5]
    expect(page.locator("#announcer")).to_have_text("Claim: done.")
    page.screenshot(path=screenshots_dir / "typing-kept.png", full_page=True)

    # Sending the comment applies it: that box clears, the other draft stays.
    page.click("#case button:has-text('Comment')")
    expect(page.locator("li.comment")).to_contain_text("Half a thought about the toner")
    expect(page.locator("#case .flash.ok")).to_have_text("Comment: done.")
    expect(box).to_have_value("")
    expect(page.locator("#id_resolve-resolution")).to_have_value("Draft resolution")


def test_typing_survives_a_refresh_that_was_already_under_way(page: Page, live_server, agent,
                                                              other_agent, open_case,
                                                              settings: Any):
    settings.CASE_REFRESH_SECONDS = 1
    case_id = open_case(queue="technical")
    login(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/cases/{case_id}/")
    held: list[Route] = []

    def hold_refresh(route: Route) -> None:
        if held:
            route.continue_()  # only the first refresh is held
        else:
            held.append(route)

    # The refresh leaves before anything is typed (the page is clean, so it may poll)...
    def refresh(url: str) -> bool:
        return "since=" in url

    page.route(refresh, hold_refresh)
    for _ in range(60):
        if held:
            break
        page.wait_for_timeout(50)
    assert held, "the page never refreshed"
    # ...bob claims meanwhile, and alice types before its answer comes back.
    run(gateway.act(case_id, Claim(actor="bob")))
    page.fill("#id_comment-body", "Typed during a refresh")
    page.locator("body").click(position={"x": 5, "y": 5})
    held[0].continue_()
    expect(page.locator("dd.assignee")).to_have_text("bob")
    expect(page.locator("#id_comment-body")).to_have_value("Typed during a refresh")


def test_refused_action_keeps_typing_elsewhere_and_focuses_the_error(page: Page, live_server,
                                                                      agent, open_case):
    case_id = open_case(queue="technical")
    login(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/cases/{case_id}/")
    page.click("#case button:has-text('Claim')")
    expect(page.locator("#case .flash.ok")).to_have_text("Claim: done.")
    page.fill("#id_comment-body", "Not sent yet")
    page.fill("#id_resolve-resolution", "   ")
    page.click("#case button:has-text('Resolve')")
    error = page.locator(".action-resolve .errorlist")
    expect(error).to_be_visible()
    expect(page.locator("#id_comment-body")).to_have_value("Not sent yet")
    # The person clicked Resolve and is not typing elsewhere: focus goes to what was refused.
    expect(page.locator("#id_resolve-resolution")).to_be_focused()
    expect(page.locator("#announcer")).to_contain_text("Resolve:")
