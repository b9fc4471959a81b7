"""Accessibility in headless Chromium: axe-core over every main page, the live region,
focus after an action, and single-key shortcuts that can be turned off (WCAG 2.1.4)."""

from __future__ import annotations

import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from cases import temporal as gateway
from workers.model import AddComment, Claim

from .conftest import eventually, run
from .test_browser import login

pytestmark = pytest.mark.browser


def _serious(page: Page) -> list[str]:
    results = Axe().run(page).response
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + "; ".join(f"{' '.join(n['target'])} [{n.get('failureSummary', '')}]"
                    for n in v["nodes"][:6])
        for v in results["violations"] if v["impact"] in ("serious", "critical")
    ]


def _listed(case_id: str) -> None:
    assert run(gateway.count_cases(f"WorkflowId = '{case_id}'")) == 1


def test_main_pages_have_no_serious_axe_violations(page: Page, live_server, supervisor,
                                                   open_case, screenshots_dir):
    case_id = open_case(title="Axe audit case", queue="technical", priority=1,
                        description="Checked by axe-core.", tags=["audit"])
    run(gateway.act(case_id, Claim(actor="sam")))
    run(gateway.act(case_id, AddComment(actor="sam", body="Internal note", internal=True)))
    eventually(lambda: _listed(case_id))
    base = live_server.url
    login(page, base, "sam")
    pages = {
        "list": "/cases/",
        "case": f"/cases/{case_id}/",
        "history": f"/cases/{case_id}/history/",
        "dashboard": "/dashboard/",
        "new-case": "/cases/new/",
    }
    found = {}
    for name, path in pages.items():
        page.goto(base + path)
        expect(page.locator("main")).to_be_visible()
        if name == "list":
            expect(page.locator(f"#row-{case_id}")).to_be_visible()
        page.screenshot(path=screenshots_dir / f"a11y-{name}.png", full_page=True)
        found[name] = _serious(page)
    assert found == {name: [] for name in pages}, "\n".join(
        f"{name}: {line}" for name, lines in found.items() for line in lines)


def test_one_live_region_outside_swapped_content(page: Page, live_server, supervisor):
    login(page, live_server.url, "sam")
    region = page.locator("[role=status][aria-live=polite]#announcer")
    expect(region).to_have_count(1)
    # Nothing htmx swaps contains it, and the results no longer carry their own live region.
    assert region.evaluate("el => !el.closest('[hx-get], [hx-post], #results, #case, main')")
    expect(page.locator("#results[aria-live]")).to_have_count(0)
    # The search box has a label a person can see, not only a placeholder.
    label = page.locator("label[for=id_q]")
    expect(label).to_be_visible()
    expect(label).to_have_text(re.compile(r"\S"))


def test_focus_moves_to_the_result_of_an_action(page: Page, live_server, agent, open_case,
                                                screenshots_dir):
    case_id = open_case(queue="technical")
    login(page, live_server.url, "alice")
    page.goto(f"{live_server.url}/cases/{case_id}/")
    page.click("#case button:has-text('Claim')")
    flash = page.locator("#case .flash.ok")
    expect(flash).to_have_text("Claim: done.")
    expect(flash).to_be_focused()
    expect(page.locator("#announcer")).to_have_text("Claim: done.")
    page.screenshot(path=screenshots_dir / "focus-on-result.png")
    # Keyboard only: the next action's result is announced and focused too.
    page.locator("#id_add_tag-tag").fill("toner")
    page.keyboard.press("Enter")
    expect(page.locator("#case .flash.ok")).to_have_text("Add tag: done.")
    expect(page.locator("#case .flash.ok")).to_be_focused()
    expect(page.locator("#announcer")).to_have_text("Add tag: done.")


def test_single_key_shortcuts_can_be_turned_off(page: Page, live_server, supervisor,
                                                 open_case, screenshots_dir):
    open_case(title="Shortcut toggle case")
    login(page, live_server.url, "sam")
    expect(page.locator("tr.case-row").first).to_be_visible()
    toggle = page.locator("#shortcuts-toggle")
    page.click(".user-menu > summary")  # the switch lives in the user menu
    expect(toggle).to_have_text("Keyboard shortcuts: on")
    toggle.click()
    expect(toggle).to_have_text("Keyboard shortcuts: off")
    expect(page.locator("#announcer")).to_have_text("Keyboard shortcuts off.")
    expect(page.locator(".shortcut-hint")).to_be_hidden()
    page.screenshot(path=screenshots_dir / "shortcuts-off.png")

    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("j")
    expect(page.locator("tr.case-row.selected")).to_have_count(0)
    page.keyboard.press("/")
    expect(page.locator("#id_q")).not_to_be_focused()

    # The choice is remembered across pages, and turning it back on restores j.
    page.reload()
    expect(toggle).to_have_text("Keyboard shortcuts: off")
    page.keyboard.press("j")
    expect(page.locator("tr.case-row.selected")).to_have_count(0)
    page.click(".user-menu > summary")
    toggle.click()
    expect(toggle).to_have_text("Keyboard shortcuts: on")
    page.locator("body").click(position={"x": 5, "y": 5})
    page.keyboard.press("j")
    expect(page.locator("tr.case-row.selected")).to_have_count(1)
