"""Server push end to end: the real dev server, worker and change feed, the web app under
uvicorn (a stream is an ASGI response: WSGI's live_server would buffer it), two people in
two browsers. What one does shows on the other's open list and case page within 3 s, with
no polling request in between; with the stream down, the pages poll as before."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from cases.live import feed

from .test_browser import login

pytestmark = pytest.mark.browser

# How long a pushed change may take to show: a wait, not a speed goal (bench/agents.py
# measures freshness). Under the whole suite on 2 cores a push took over 3 s (CI, 2026-12-06);
# that it came by push is asserted below from the page's requests (none was a poll).
PUSH_WITHIN_MS = 15000


@pytest.fixture
def asgi_server(transactional_db: Any, temporal: Any, settings: Any) -> Iterator[str]:
    """The project's ASGI application under uvicorn in this process (same database and
    settings as the test), with a fresh change feed."""
    import uvicorn
    from django.core.cache import caches

    from tracerail.asgi import application

    # Polls every 2 s: if the fallback misbehaved while a stream is open, it would show.
    settings.LIST_REFRESH_SECONDS = 2
    settings.CASE_REFRESH_SECONDS = 2
    # Let go of the poll lease: the fresh feed polls at once instead of after it lapses.
    feed.stop(release=True)
    caches[settings.FEED_CACHE].clear()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(
        application, log_level="warning", lifespan="off", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        feed.stop(release=True)


class Requests:
    """Every request a page makes, with why htmx sent it (the X-Tracerail-Refresh header
    app.js adds: push, poll or catch-up)."""

    def __init__(self, *pages: tuple[str, Page]) -> None:
        self.log: list[tuple[float, str, str, str]] = []
        for name, page in pages:
            page.on("request", lambda request, name=name: self.log.append((
                time.monotonic(), name, request.url,
                request.headers.get("x-tracerail-refresh", ""))))

    def since(self, start: float, cause: str | None = None) -> list[tuple[float, str, str, str]]:
        return [r for r in self.log if r[0] >= start and (cause is None or r[3] == cause)
                and "/cases/" in r[2]]


def _streaming(page: Page) -> None:
    page.wait_for_function("() => window.tracerail && tracerail.pushed()", timeout=10_000)


def _settled(page: Page, case_id: str) -> None:
    """The feed has read every change the case has had, is healthy, and the page shows the
    case as it is: what the stream replays on opening (the page may have been rendered before
    the feed read its case's creation) is behind it. (CI: with a fixed 300 ms wait, a change
    came while the fresh feed was not yet judged healthy, and the pages re-asked.)"""
    from .conftest import current_state, eventually

    version = current_state(case_id).version
    eventually(lambda: feed.current() is not None
               and feed.current().listener.known_version(case_id) == version, timeout=15)
    # And healthy: until then changes are not pushed as HTML, and pages re-ask (by design).
    eventually(lambda: feed.healthy_listener() is not None, timeout=15)
    expect(page.locator("#case")).to_have_attribute("data-version", str(version))
    page.wait_for_timeout(300)  # a request the replay set off has left by now


def _bob_live_on(context: Any, base: str, path: str, row: str = "") -> Page:
    """bob signed in, on `path` (showing `row`'s case, if given), with its stream open."""
    page = context.new_page()
    login(page, base, "bob")
    page.goto(f"{base}{path}")
    if row:
        expect(page.locator(f"#row-{row}")).to_be_visible()
    _streaming(page)
    return page


def test_what_one_person_does_shows_on_the_others_open_pages(
        browser: Browser, asgi_server: str, agent: Any, other_agent: Any, open_case: Any,
        screenshots_dir: Any) -> None:
    base = asgi_server
    case_id = open_case(title="Pushed parrot", queue="technical", tags=["pushparrot"])
    a_context, b_context = browser.new_context(), browser.new_context()
    try:
        a = a_context.new_page()
        a_errors: list[str] = []
        a.on("console", lambda m: a_errors.append(m.text) if m.type == "error" else None)
        login(a, base, "alice")
        b_list, b_case = b_context.new_page(), b_context.new_page()
        login(b_list, base, "bob")  # bob: technical only

        # B has the list (filtered so the case shows) and the case page open, both streaming.
        b_list.goto(f"{base}/cases/?tag=pushparrot")
        row = b_list.locator(f"#row-{case_id}")
        expect(row).to_be_visible()
        assignee = row.locator("td.col-assignee")
        expect(assignee).to_have_text("—")
        b_case.goto(f"{base}/cases/{case_id}/")
        _streaming(b_list)
        _streaming(b_case)
        _settled(b_case, case_id)
        requests = Requests(("list", b_list), ("case", b_case))
        start = time.monotonic()

        # A claims the case: B's row and case page show it without a reload.
        a.goto(f"{base}/cases/{case_id}/")
        a.click("#case button:has-text('Claim')")
        expect(a.locator("#case .flash.ok")).to_have_text("Claim: done.")
        expect(assignee).to_have_text("alice", timeout=PUSH_WITHIN_MS)
        expect(b_case.locator("dd.assignee")).to_have_text("alice", timeout=PUSH_WITHIN_MS)

        # A comments while B is typing a reply: B's page shows the comment, and B's draft,
        # focus and caret survive the pushed swap (the swap does not wait for B to stop).
        draft = b_case.locator("#id_comment-body")
        draft.click()
        b_case.keyboard.type("Half a reply")
        draft.evaluate("el => el.setSelectionRange(4, 4)")
        a.fill("#id_comment-body", "Pushed to you, bob.")
        a.click("#case button:has-text('Comment')")
        expect(a.locator("#case .flash.ok")).to_have_text("Comment: done.")
        # The answers' out-of-band list row has no place on a case page: dropped, no error;
        # and no page asks for a /favicon.ico that is not there.
        assert a_errors == [], a_errors
        expect(b_case.locator("li.comment")).to_contain_text("Pushed to you, bob.",
                                                             timeout=PUSH_WITHIN_MS)
        expect(draft).to_have_value("Half a reply")
        expect(draft).to_be_focused()
        assert draft.evaluate("el => el.selectionStart") == 4

        # A new case with the tag comes into B's list (a membership change): the results
        # arrive pushed, rendered on the server, with the status chips' numbers.
        new_chip = b_list.locator("#count-new")
        before = int(new_chip.inner_text())
        fresh = open_case(title="Second parrot", queue="technical", tags=["pushparrot"])
        expect(b_list.locator(f"#row-{fresh}")).to_be_visible(timeout=PUSH_WITHIN_MS)
        expect(new_chip).to_have_text(str(before + 1))
        expect(b_list.locator("#announcer")).to_have_text("Case list updated: 1 new.")
        b_list.screenshot(path=screenshots_dir / "push-list.png", full_page=True)
        b_case.screenshot(path=screenshots_dir / "push-case.png", full_page=True)

        # Longer than a poll period has passed: a misbehaving fallback would have polled.
        b_list.wait_for_timeout(2500)
        assert requests.since(start, "poll") == []
        # B made no refresh at all: the list's rows and results came in the stream, and so
        # did the case, rendered once for every page of its kind (issue 26; before it, each
        # case page re-asked on every push, a render per tab).
        assert requests.since(start) == []
        # The pushed case carries nobody's CSRF token: the page gave its forms its own, and
        # B's half reply, finished, is sent from it.
        assert b_case.evaluate("""() => Array.from(
            document.querySelectorAll('#case form[method=post]')).every(
            f => f.querySelector('input[name=csrfmiddlewaretoken]').value)""")
        b_case.keyboard.type(" and the rest")
        b_case.click("#case button:has-text('Comment')")
        expect(b_case.locator("#case .flash.ok")).to_have_text("Comment: done.")
        expect(b_case.locator("li.comment").last).to_contain_text("Half and the rest a reply")
    finally:
        a_context.close()
        b_context.close()


def test_a_case_event_for_the_version_the_page_shows_asks_nothing(
        browser: Browser, asgi_server: str, other_agent: Any, open_case: Any) -> None:
    """A resuming stream replays each change since the page's position, the one the page was
    rendered after too: told a version it shows, the case page asks nothing; told a newer
    one, or told to re-read (no version), it asks once. Sent as the SSE extension sends it."""
    base = asgi_server
    case_id = open_case(title="Replayed parrot", queue="technical")
    context = browser.new_context()
    try:
        page = _bob_live_on(context, base, f"/cases/{case_id}/")
        _settled(page, case_id)
        version = int(page.locator("#case").get_attribute("data-version"))
        requests = Requests(("case", page))

        def told(data: str) -> list[Any]:
            start = time.monotonic()
            page.evaluate("""data => htmx.trigger(document.getElementById("case"), "sse:case",
                                                   new MessageEvent("case", {data}))""", data)
            page.wait_for_timeout(1000)
            return requests.since(start, "push")

        assert told(str(version)) == []
        assert told(str(version - 1)) == []
        assert len(told(str(version + 1))) == 1
        assert len(told("")) == 1
    finally:
        context.close()


def test_without_a_stream_the_pages_poll(browser: Browser, asgi_server: str, other_agent: Any,
                                         open_case: Any) -> None:
    base = asgi_server
    case_id = open_case(title="Polled parrot", queue="technical")
    context = browser.new_context()
    try:
        page = context.new_page()
        page.route("**/events/**", lambda route: route.abort())  # the stream never opens
        login(page, base, "bob")
        requests = Requests(("case", page))
        start = time.monotonic()
        page.goto(f"{base}/cases/{case_id}/")
        page.wait_for_timeout(3000)
        assert page.evaluate("() => tracerail.pushed()") is False
        assert requests.since(start, "poll"), requests.log
    finally:
        context.close()


def test_a_hidden_tab_closes_its_stream_and_reopens_it(browser: Browser, asgi_server: str,
                                                      other_agent: Any, open_case: Any) -> None:
    """Six HTTP/1.1 connections per host: a tab hidden for a while gives its stream back, and
    on coming back it is pushed to again (the reopened stream re-registered its listeners)."""
    from cases import temporal as gateway
    from workers.model import Claim

    from .conftest import run

    base = asgi_server
    case_id = open_case(title="Sleepy parrot", queue="technical", tags=["sleepyparrot"])
    context = browser.new_context()
    try:
        page = _bob_live_on(context, base, "/cases/?tag=sleepyparrot", case_id)
        page.evaluate("""() => {
            window.__visibility = "visible";
            Object.defineProperty(document, "visibilityState",
                                  {configurable: true, get: () => window.__visibility});
            tracerail.pauseAfterMs = 0;
            window.__visibility = "hidden";
            document.dispatchEvent(new Event("visibilitychange"));
        }""")
        page.wait_for_function("() => !tracerail.pushed()")
        page.evaluate("""() => {
            window.__visibility = "visible";
            document.dispatchEvent(new Event("visibilitychange"));
        }""")
        _streaming(page)
        page.wait_for_timeout(500)  # the reopened stream's catch-up read
        requests = Requests(("list", page))
        start = time.monotonic()
        run(gateway.act(case_id, Claim(actor="bob")))
        expect(page.locator(f"#row-{case_id} td.col-assignee")).to_have_text(
            "bob", timeout=PUSH_WITHIN_MS)
        fresh = open_case(title="Second sleepy parrot", queue="technical",
                          tags=["sleepyparrot"])
        expect(page.locator(f"#row-{fresh}")).to_be_visible(timeout=PUSH_WITHIN_MS)
        assert requests.since(start, "poll") == []
    finally:
        context.close()


def test_logging_out_in_another_tab_says_so_and_keeps_the_typing(
        browser: Browser, asgi_server: str, other_agent: Any, open_case: Any) -> None:
    """An open stream is a request that never ends: logging out elsewhere ends it, and the
    page says so without losing what was being typed."""
    base = asgi_server
    case_id = open_case(title="Logged out parrot", queue="technical")
    context = browser.new_context()
    try:
        page = _bob_live_on(context, base, f"/cases/{case_id}/")
        page.fill("textarea[name=comment-body]", "Half a reply")
        other = context.new_page()
        other.goto(f"{base}/cases/")
        other.click("form.logout button")
        notice = page.locator("#stream-notice")
        expect(notice).to_contain_text("You are signed out", timeout=5000)
        expect(notice.locator("a")).to_have_attribute(
            "href", f"/login/?next=%2Fcases%2F{case_id}%2F")
        expect(page.locator("textarea[name=comment-body]")).to_have_value("Half a reply")
        assert not page.evaluate("() => tracerail.pushed()")
    finally:
        context.close()


def test_an_agent_taken_out_of_a_queue_loses_its_rows_on_the_open_list(
        browser: Browser, asgi_server: str, other_agent: Any, open_case: Any) -> None:
    from cases.models import Queue

    base = asgi_server
    case_id = open_case(title="Moved parrot", queue="technical", tags=["movedparrot"])
    context = browser.new_context()
    try:
        page = _bob_live_on(context, base, "/cases/?tag=movedparrot", case_id)
        Queue.objects.get(slug="technical").agents.remove(other_agent)
        expect(page.locator(f"#row-{case_id}")).to_have_count(0, timeout=5000)
    finally:
        context.close()


def test_a_pushed_case_keeps_the_persons_own_macros_and_posts_with_their_token(
        browser: Browser, asgi_server: str, other_agent: Any, open_case: Any) -> None:
    """The pushed case is shared by every page of its kind, so it carries neither a CSRF
    token nor anyone's own macros: the page keeps its macro form, and its forms post."""
    from cases import temporal as gateway
    from cases.models import Macro
    from workers.model import AddComment

    from .conftest import run

    mine = Macro(name="Bob's own", owner=other_agent, body="Bob's reply")
    mine.full_clean()
    mine.save()
    case_id = open_case(title="Macro parrot", queue="technical")
    context = browser.new_context()
    try:
        page = _bob_live_on(context, asgi_server, f"/cases/{case_id}/")
        expect(page.locator("#macro-select option")).to_contain_text(["Bob's own (mine)"])
        run(gateway.act(case_id, AddComment(actor="alice", body="Pushed past the macros")))
        expect(page.locator("li.comment")).to_contain_text("Pushed past the macros",
                                                           timeout=PUSH_WITHIN_MS)
        expect(page.locator("#macro-select option")).to_contain_text(["Bob's own (mine)"])
        page.select_option("#macro-select", label="Bob's own (mine)")
        page.click("button.macro-apply-button")
        expect(page.locator("#case .flash.ok")).to_have_text("Applied the macro Bob's own.")
        expect(page.locator("li.comment").last).to_contain_text("Bob's reply")
    finally:
        context.close()
