from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta

from django.test import Client

from cases import temporal as gateway
from cases.temporal import rows as temporal_rows
from workers.model import Claim, Resolve, SetDue

from .conftest import eventually, run


def _bars(content: str) -> dict[str, tuple[int, str]]:
    """label -> (count, href) for every bar on the page."""
    found = {}
    for href, label, count in re.findall(
        r'<a href="([^"]+)" class="bar[^"]*">\s*<title>([^<]+): (\d+)</title>', content
    ):
        found[html.unescape(label)] = (int(count), html.unescape(href))
    return found


def test_dashboard_counts_and_links(supervisor_client, agent, open_case):
    a = open_case(title="Dashtest urgent", priority=1, queue="billing")
    b = open_case(title="Dashtest normal", priority=3, queue="technical")
    c = open_case(title="Dashtest done", priority=3, queue="technical")
    run(gateway.act(a, Claim(actor="alice")))
    run(gateway.act(c, Resolve(actor="sam", resolution="ok")))
    run(gateway.act(b, SetDue(actor="sam", due_at=datetime.now(UTC) + timedelta(hours=1))))
    # An urgent case's own SLA is due about 4 h out, on the "due within 4 h" window's edge (which
    # moves with the clock): well past it, so only b is due soon.
    run(gateway.act(a, SetDue(actor="sam", due_at=datetime.now(UTC) + timedelta(days=2))))

    def counted() -> dict[str, tuple[int, str]]:
        content = supervisor_client.get("/dashboard/?q=dashtest").content.decode()
        bars = _bars(content)
        assert bars["New"][0] == 1 and bars["In progress"][0] == 1
        assert bars["Resolved"][0] == 1 and bars["Closed"][0] == 0
        assert bars["1 · Urgent"][0] == 1 and bars["3 · Normal"][0] == 1  # open only
        assert bars["Billing"][0] == 1 and bars["Technical"][0] == 1
        assert bars["General"][0] == 0
        assert bars["alice"][0] == 1 and bars["Unassigned"][0] == 1
        assert bars["Due within 4 h"][0] == 1 and bars["Breached"][0] == 0
        assert bars["At risk"][0] == 0  # flagged by its timer, not by the window
        assert bars["1 day"][0] == 0
        return bars

    bars = eventually(counted)
    # Every bar links to the case list with the dashboard's filter plus its slice.
    count, href = bars["Technical"]
    assert href.startswith("/cases/?") and "q=dashtest" in href and "queue=technical" in href
    listed = supervisor_client.get(href).content.decode()
    assert len(re.findall(r'id="row-case-', listed)) == count == 1
    count, href = bars["Due within 4 h"]
    assert "due_within=4" in href and "breached=no" in href
    assert b in supervisor_client.get(href).content.decode()


def test_dashboard_is_for_supervisors(agent_client, temporal):
    response = agent_client.get("/dashboard/")
    assert response.status_code == 403
    assert b"for supervisors and admins" in response.content


def test_dashboard_htmx_refresh_returns_panels_only(supervisor_client, temporal):
    response = supervisor_client.get("/dashboard/", HTTP_HX_REQUEST="true")
    content = response.content.decode()
    assert content.lstrip().startswith('<section id="panels"')
    assert "every 30s" in content


def test_dashboard_filter_errors_are_inline(supervisor_client, temporal):
    content = supervisor_client.get("/dashboard/?assignee=no+body").content.decode()
    assert "That is not a username." in content
    assert "Fix the filter to see the dashboard." in content


def test_dashboard_uses_one_round_of_counts(supervisor, open_case, settings):
    """All counts run concurrently: the page issues them once, not per chart per user."""
    calls: list[str] = []
    real = temporal_rows._count_cases

    async def counting(query: str) -> int:
        calls.append(query)
        return await real(query)

    temporal_rows._count_cases = counting  # type: ignore[assignment]
    try:
        client = Client()
        client.force_login(supervisor)
        assert client.get("/dashboard/").status_code == 200
    finally:
        temporal_rows._count_cases = real  # type: ignore[assignment]
    assert len(calls) == len(set(calls))  # no query asked twice
    assert len(calls) <= 30
