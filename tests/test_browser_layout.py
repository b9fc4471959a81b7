"""The screens agents live in (issue 18), in headless Chromium: one line per case at 1280x800 and
1024x768, cards on a 390x844 phone with its actions working, and a dark scheme that axe-core
passes and that a choice in the user menu keeps before the first paint."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from cases import temporal as gateway

from .conftest import PASSWORD, eventually, run
from .test_browser_a11y import _serious
from .test_custom_attributes import registered  # noqa: F401  (a fixture)

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
LONG_TITLE = ("Invoices for the northern region are exported twice whenever the nightly "
              "batch overlaps with the monthly close, and customers get duplicate emails")

# Rows whose whole box is inside the viewport, and the page's sideways overflow.
FULLY_VISIBLE = """() => [...document.querySelectorAll('tr.case-row')].filter(r => {
  const b = r.getBoundingClientRect();
  return b.height > 0 && b.top >= 0 && b.bottom <= innerHeight
    && b.left >= 0 && b.right <= innerWidth;
}).length"""
OVERFLOW = "() => document.documentElement.scrollWidth - innerWidth"


def _login(page: Page, base: str, username: str) -> None:
    page.goto(f"{base}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/cases/$"))


@pytest.fixture
def many_cases(open_case) -> list[str]:
    """Twenty cases (the newest with a long title), all listed by Visibility."""
    ids = [open_case(title=f"Layout case {i}", queue="technical", priority=1 + i % 4,
                     tags=["layout"], requester_name="Grace Hopper") for i in range(19)]
    ids.append(open_case(title=LONG_TITLE, queue="technical", tags=["billing", "export"]))
    query = " OR ".join(f"WorkflowId = '{i}'" for i in ids)
    eventually(lambda: _all_listed(query, len(ids)), timeout=20)
    return ids


def _all_listed(query: str, n: int) -> None:
    assert run(gateway.count_cases(query)) == n


def _phone(browser: Browser, **extra: Any) -> Page:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True, **extra)
    return context.new_page()


@pytest.mark.parametrize("size", [(1280, 800), (1024, 768)], ids=["1280x800", "1024x768"])
def test_wide_screens_show_one_line_per_case(page: Page, live_server, supervisor, many_cases,
                                             size, screenshots_dir):
    width, height = size
    page.set_viewport_size({"width": width, "height": height})
    _login(page, live_server.url, "sam")
    expect(page.locator(f"#row-{many_cases[-1]}")).to_be_visible()
    page.screenshot(path=screenshots_dir / f"layout-{width}.png")

    assert page.evaluate(FULLY_VISIBLE) >= 15
    assert page.evaluate(OVERFLOW) <= 0
    # One line each: every row is as tall as one line of text and its padding.
    heights = page.locator("tr.case-row").evaluate_all(
        "rows => rows.map(r => r.getBoundingClientRect().height)")
    assert max(heights) < 40, heights
    # The long title is cut short on screen but whole in the link's text and its tooltip.
    link = page.locator(f"#row-{many_cases[-1]} td.title a")
    expect(link).to_have_attribute("title", LONG_TITLE)
    expect(link).to_have_text(LONG_TITLE)
    assert link.evaluate("a => a.scrollWidth > a.clientWidth")
    assert link.evaluate("a => getComputedStyle(a).textOverflow") == "ellipsis"
    # The title gets the width (issue 26: 197 px at 1280, most titles cut short): at least
    # 300 px for the title itself, the id folded into its cell, still shown and whole in the
    # row's text (find in page, copy).
    row = page.locator(f"#row-{many_cases[-1]}")
    if width >= 1280:
        assert row.locator("td.title").evaluate("td => td.getBoundingClientRect().width") >= 300
        assert row.locator(".title-line").evaluate(
            "d => d.getBoundingClientRect().width") >= 300
    expect(row.locator(".case-id")).to_be_visible()
    expect(row.locator(".case-id")).to_have_text(many_cases[-1])
    assert row.locator("a").count() == 1  # one link per row: the title's
    # Every column of the table is on screen: nothing is cut off at the right edge.
    right = page.locator("table.cases th").last.evaluate("th => th.getBoundingClientRect().right")
    assert right <= width
    if width < 1200:  # the filters wait behind a button and come back with it
        expect(page.locator("#id_q")).to_be_hidden()
        page.click(".filter-drawer > summary")
        expect(page.locator("#id_q")).to_be_visible()
    else:
        expect(page.locator("#id_q")).to_be_visible()
        expect(page.locator(".filter-drawer > summary")).to_be_hidden()


def test_admin_added_columns_stay_reachable_at_1024(page: Page, live_server, supervisor,
                                                     registered, many_cases):  # noqa: F811
    page.set_viewport_size({"width": 1024, "height": 768})
    _login(page, live_server.url, "sam")
    page.goto(f"{live_server.url}/cases/?cols=CxRegion&cols=CxSeats&cols=CxRenewal&cols=CxSkills")
    expect(page.locator("tr.case-row").first).to_be_visible()
    assert page.evaluate(OVERFLOW) <= 0  # the page itself never scrolls sideways
    last = page.locator("table.cases th").last
    expect(last).to_have_text("Skills")
    last.scroll_into_view_if_needed()  # the table scrolls inside its own box
    box = last.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 1024
    assert page.evaluate(OVERFLOW) <= 0


def test_phone_shows_cards_first_with_filters_and_menu_folded(browser: Browser, live_server,
                                                              supervisor, many_cases,
                                                              screenshots_dir):
    page = _phone(browser)
    _login(page, live_server.url, "sam")
    card = page.locator(f"#row-{many_cases[-1]}")
    expect(card).to_be_visible()
    page.screenshot(path=screenshots_dir / "layout-390.png")
    assert page.evaluate(OVERFLOW) <= 0
    assert _serious(page) == []  # axe-core, light scheme, the phone's layout
    # The first screen shows cases, not the filters.
    assert page.evaluate(FULLY_VISIBLE) >= 3
    expect(page.locator("#id_q")).to_be_hidden()
    expect(page.locator("header nav a", has_text="Dashboard")).to_be_hidden()
    # A card says status, priority, due and assignee, and wraps its whole title.
    expect(card.locator(".badge.status-new")).to_have_text("New")
    expect(card.locator(".prio")).to_have_text("3")
    expect(card.locator("td.col-due")).to_contain_text("in ")
    expect(card.locator("td.col-assignee")).to_have_text("—")
    expect(card.locator(".case-id")).to_be_visible()
    expect(card.locator(".case-id")).to_have_text(many_cases[-1])
    assert card.locator("td.col-assignee").evaluate(
        "td => getComputedStyle(td, '::before').content") == '"Assignee: "'
    title = card.locator("td.title a")
    assert title.evaluate("a => a.scrollWidth <= a.clientWidth")  # not cut short
    # Touch targets of at least 44 px: the card itself, the menu and the filters buttons.
    for target in (card, page.locator(".nav-menu > summary"),
                   page.locator(".filter-drawer > summary")):
        box = target.bounding_box()
        assert box is not None and box["height"] >= 44 and box["width"] >= 44, target
    # Menu and filters open on a tap, still without sideways scrolling.
    page.locator(".nav-menu > summary").tap()
    expect(page.locator("header nav a", has_text="Dashboard")).to_be_visible()
    assert page.locator("header nav a", has_text="Dashboard").bounding_box()["height"] >= 44
    page.locator(".nav-menu > summary").tap()
    page.locator(".filter-drawer > summary").tap()
    expect(page.locator("#id_q")).to_be_visible()
    assert page.evaluate(OVERFLOW) <= 0
    # Tapping a card anywhere opens its case.
    page.locator(".filter-drawer > summary").tap()
    status = card.locator("td.col-status").bounding_box()
    assert status is not None
    page.touchscreen.tap(status["x"] + status["width"] / 2, status["y"] + status["height"] / 2)
    expect(page).to_have_url(re.compile(rf"/cases/{many_cases[-1]}/$"))
    page.context.close()


def test_phone_case_page_actions_work(browser: Browser, live_server, agent, open_case,
                                      screenshots_dir):
    case_id = open_case(title=LONG_TITLE, queue="technical", description="On a phone.")
    page = _phone(browser)
    _login(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/cases/{case_id}/")
    expect(page.locator("h1")).to_have_text(LONG_TITLE)
    assert page.evaluate(OVERFLOW) <= 0
    # One column: the conversation, then the actions, which "Actions" at the top jumps to.
    main, side = (page.locator(f"#case {c}").bounding_box() for c in (".main-col", ".side-col"))
    assert main is not None and side is not None
    assert side["y"] >= main["y"] + main["height"] and side["x"] == main["x"]
    page.screenshot(path=screenshots_dir / "layout-390-case.png")
    assert _serious(page) == []
    jump = page.locator(".jump-actions")
    assert jump.bounding_box()["height"] >= 44
    claim = page.locator("#case .action-claim button")
    expect(claim).not_to_be_in_viewport()
    jump.tap()
    expect(claim).to_be_in_viewport()
    assert claim.bounding_box()["height"] >= 44  # a full touch target
    claim.tap()
    expect(page.locator("#case .flash.ok")).to_have_text("Claim: done.")
    expect(page.locator("dd.assignee")).to_have_text("alice")
    page.locator("#id_comment-body").fill("Answered from my phone.")
    page.locator("#case .action-comment button").tap()
    expect(page.locator("li.comment").last).to_contain_text("Answered from my phone.")
    assert run(gateway.get_case(case_id)).comments[-1].body == "Answered from my phone."
    assert page.evaluate(OVERFLOW) <= 0
    page.context.close()


def _background(page: Page) -> tuple[int, ...]:
    color = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
    return tuple(int(n) for n in re.findall(r"\d+", color)[:3])


def test_dark_scheme_follows_the_system_and_passes_axe(browser: Browser, live_server, supervisor,
                                                       open_case, screenshots_dir):
    case_id = open_case(title="Dark scheme case", queue="technical", priority=1, tags=["night"])
    eventually(lambda: _all_listed(f"WorkflowId = '{case_id}'", 1))
    context = browser.new_context(color_scheme="dark", viewport={"width": 1280, "height": 800})
    page = context.new_page()
    _login(page, live_server.url, "sam")
    expect(page.locator(f"#row-{case_id}")).to_be_visible()
    assert max(_background(page)) < 40  # a dark page, not a white one
    found = {}
    for name, path in {"list": "/cases/", "case": f"/cases/{case_id}/",
                       "dashboard": "/dashboard/", "new-case": "/cases/new/"}.items():
        page.goto(live_server.url + path)
        expect(page.locator("main")).to_be_visible()
        page.screenshot(path=screenshots_dir / f"dark-{name}.png")
        found[name] = _serious(page)
    assert found == {name: [] for name in found}, found
    # The phone layout in the dark scheme too.
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/cases/")
    expect(page.locator(f"#row-{case_id}")).to_be_visible()
    assert _serious(page) == []
    context.close()


def test_scheme_switch_is_remembered_and_applied_before_the_first_paint(
        page: Page, live_server, supervisor, screenshots_dir):
    page.set_viewport_size({"width": 1280, "height": 800})
    _login(page, live_server.url, "sam")
    assert min(_background(page)) > 200  # the system's light scheme
    page.click(".user-menu > summary")
    page.get_by_label("Dark").check()
    assert max(_background(page)) < 40
    assert page.evaluate("() => localStorage.getItem('tracerail.theme')") == "dark"
    assert _serious(page) == []
    # On the next page the scheme is set before <body> exists, so nothing paints light first.
    page.add_init_script("""new MutationObserver((_, observer) => {
        if (document.body) {
          window.themeAtBody = document.documentElement.dataset.theme;
          observer.disconnect();
        }
      }).observe(document, {childList: true, subtree: true});""")
    page.goto(f"{live_server.url}/dashboard/")
    assert page.evaluate("() => window.themeAtBody") == "dark"
    assert max(_background(page)) < 40
    page.click(".user-menu > summary")
    expect(page.get_by_label("Dark")).to_be_checked()
    # Compact is the default; comfortable gives rows more air, and is remembered too.
    page.goto(f"{live_server.url}/cases/")
    page.click(".user-menu > summary")
    page.get_by_label("Comfortable").check()
    assert page.evaluate("() => document.documentElement.dataset.density") == "comfortable"
    assert page.evaluate("() => getComputedStyle(document.documentElement)"
                         ".getPropertyValue('--row-pad').trim()") == ".6rem"
    # Back to the system's scheme.
    page.get_by_label("Same as the system").check()
    assert min(_background(page)) > 200
    page.reload()
    assert min(_background(page)) > 200
    assert page.evaluate("() => document.documentElement.dataset.density") == "comfortable"


def test_no_page_scrolls_sideways_on_a_phone(browser: Browser, live_server, supervisor,
                                            open_case, screenshots_dir):
    case_id = open_case(title=LONG_TITLE, queue="technical", tags=["a-rather-long-tag-name"],
                        description="Wide " + "x" * 200)
    eventually(lambda: _all_listed(f"WorkflowId = '{case_id}'", 1))
    page = _phone(browser)
    _login(page, live_server.url, "sam")
    pages = ["/cases/", f"/cases/{case_id}/", f"/cases/{case_id}/history/", "/dashboard/",
             "/cases/new/", "/cases/archived/", "/cases/?execution=ended"]
    wide = {}
    for path in pages:
        page.goto(live_server.url + path)
        expect(page.locator("main")).to_be_visible()
        wide[path] = page.evaluate(OVERFLOW)
        if path == "/dashboard/":  # its filters fold away as the list's do
            expect(page.locator(".tiles")).to_be_in_viewport()
            expect(page.locator("#id_tag")).to_be_hidden()
        page.screenshot(path=screenshots_dir / f"layout-390-page{len(wide)}.png", full_page=True)
    assert {path: px for path, px in wide.items() if px > 0} == {}
    page.context.close()
