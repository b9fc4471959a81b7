"""The reports page in headless Chromium over a real store (issue 24): a bar opens the list
of exactly its cases, axe finds nothing, and the README's screenshot."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect

from cases.analytics import store

from .test_browser import login
from .test_reports import facts

pytestmark = pytest.mark.browser

DOCS = Path(__file__).resolve().parent.parent / "docs" / "screenshots"


@pytest.fixture
def browser_context_args(browser_context_args):
    # Not the server's (UTC): the page must take the browser's.
    return {**browser_context_args, "timezone_id": "Pacific/Auckland"}


def _violations(page: Page) -> list[str]:
    results = Axe().run(page).response
    return [f"{v['id']} ({v['impact']}): {v['help']} at "
            + "; ".join(" ".join(n["target"]) for n in v["nodes"][:6])
            for v in results["violations"]]


def test_reports_page_bars_open_their_cases_and_pass_axe(page: Page, live_server, supervisor,
                                                         settings, tmp_path):
    settings.ANALYTICS_URI = str(tmp_path / "analytics")
    noon = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    rows = []
    for n in range(24):
        opened = noon - timedelta(days=20 - n % 18, hours=n % 5)
        queue = ("billing", "technical", "general")[n % 3]
        resolved = opened + timedelta(hours=5 + n % 7, days=n % 3) if n % 4 else None
        rows.append(facts(
            f"case-W{n:03d}", opened, queue=queue, priority=1 + n % 4,
            assignee=("amy", "bo", "cy")[n % 3], resolved_at=resolved,
            resolved_by="amy" if resolved else "",
            assignee_at_resolution=("amy", "bo", "cy")[n % 3] if resolved else "",
            first_response_seconds=600.0 + 900 * (n % 6),
            resolution_seconds=(resolved - opened).total_seconds() if resolved else None,
            sla_outcome=("met" if n % 5 else "breached") if resolved else "",
            sla_outcome_at=resolved))
    store.shared().write([c for c, _ in rows], [e for _, es in rows for e in es])
    store.shared().write_state({"exported_at": (datetime.now(UTC) - timedelta(minutes=4))
                                .isoformat()})

    base = live_server.url
    login(page, base, "sam")
    page.click("#reports-link")
    # The page asks for the browser's time zone once, then shows figures in it.
    expect(page).to_have_url(re.compile(r"/reports/\?tz=Pacific%2FAuckland$"))
    expect(page.locator("#id_tz")).to_have_value("Pacific/Auckland")
    expect(page.locator("#freshness")).to_contain_text("(4 minutes ago)")
    expect(page.locator("figure.report-chart")).to_have_count(3)

    bar = page.locator("svg.plot-links a.bar.opened").first
    count = int(bar.get_attribute("data-count"))
    day = bar.get_attribute("data-day")
    # On a phone the wide tables scroll in their own region; the page does not (the case
    # list's phone rule let them spill past the screen's edge).
    page.set_viewport_size({"width": 390, "height": 844})
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    assert page.locator("#groups-table").evaluate(
        "t => t.parentElement.scrollWidth > t.parentElement.clientWidth")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(DOCS / "reports.png"), full_page=False)
    assert _violations(page) == []

    bar.click()
    expect(page).to_have_url(re.compile(rf"/reports/cases/\?metric=opened&.*day={day}"))
    expect(page.locator("tr.drilldown-row")).to_have_count(count)
    first_case = page.locator("tr.drilldown-row a").first
    case_id = first_case.inner_text()
    assert re.fullmatch(r"case-W\d{3}", case_id)
    assert first_case.get_attribute("href") == f"/cases/{case_id}/"
    assert _violations(page) == []
