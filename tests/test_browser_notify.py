"""A mention made in one browser raises the badge in another, over the push stream, with no
reload: the workflow's notice, its delivery activity, the inbox row, the per-process unread
check and the stream's `inbox` event, end to end."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from .test_browser import login
from .test_browser_push import _streaming, asgi_server  # noqa: F401

pytestmark = pytest.mark.browser


def test_a_mention_raises_the_badge_in_the_other_browser_without_a_reload(
        browser: Browser, asgi_server: str, agent: Any, other_agent: Any,  # noqa: F811
        open_case: Any, settings: Any, screenshots_dir: Any) -> None:
    settings.NOTIFY_QUIET_SECONDS = 0.3
    base = asgi_server
    case_id = open_case(title="Mention me", queue="technical")
    a_context, b_context = browser.new_context(), browser.new_context()
    try:
        bob = b_context.new_page()
        login(bob, base, "bob")
        _streaming(bob)
        badge = bob.locator("#inbox-badge")
        expect(badge).to_be_hidden()
        bob.evaluate("() => { window.__sameDocument = true; }")

        alice = a_context.new_page()
        login(alice, base, "alice")
        alice.goto(f"{base}/cases/{case_id}/")
        alice.fill("#id_comment-body", "Could you look,")
        # The mention picker offers who can see the case and writes the mention in.
        alice.fill("#mention-picker", "bob")
        alice.dispatch_event("#mention-picker", "change")
        expect(alice.locator("#id_comment-body")).to_have_value("Could you look, @bob ")
        alice.click("#case button:has-text('Comment')")
        expect(alice.locator("#case .flash.ok")).to_have_text("Comment: done.")
        alice.click("#case button:has-text('Watch')")
        expect(alice.locator("#case-watchers")).to_have_text("alice")
        alice.screenshot(path=screenshots_dir / "notify-case.png", full_page=True)

        expect(badge).to_be_visible(timeout=10_000)
        expect(badge).to_have_text("1")
        assert bob.evaluate("() => window.__sameDocument === true"), "bob's page reloaded"
        bob.screenshot(path=screenshots_dir / "notify-badge.png")

        bob.click("#inbox-link")
        expect(bob.locator("li.notification.unread")).to_contain_text(
            "alice commented")
        bob.click("#read-all")
        expect(bob.locator("#inbox-badge")).to_be_hidden()
    finally:
        a_context.close()
        b_context.close()
