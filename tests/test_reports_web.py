"""The reports page (issue 24): access, the form, charts and tables over a real store,
drilldowns that list exactly a figure's cases, downloads, escaping, freshness."""

from __future__ import annotations

import csv
import html
import io
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pyarrow.parquet as pq
import pytest

from cases.analytics import reports, store
from cases.analytics.reports import AgentRow, DayRow, GroupRow, Report
from cases.models import CaseAttribute

from .test_reports import at, facts

RANGE = "first=2026-03-01&last=2026-03-07&tz=UTC"


@pytest.fixture
def write(settings, tmp_path):
    settings.ANALYTICS_URI = str(tmp_path / "analytics")

    def write(*cases) -> None:
        store.shared().write([c for c, _ in cases], [e for _, es in cases for e in es])
        store.shared().write_state({"exported_at": datetime.now(UTC).isoformat()})
    return write


@pytest.fixture
def week(write):
    """Three billing cases and one technical case in the first week of March 2026."""
    write(
        facts("case-B1", at(2), queue="billing", assignee="amy", resolved_at=at(3),
              resolved_by="amy", assignee_at_resolution="amy", resolution_seconds=86400.0,
              first_response_seconds=3600.0 * 3 + 1200, sla_outcome="met",
              sla_outcome_at=at(3)),
        facts("case-B2", at(2, 15), queue="billing"),
        facts("case-B3", at(4), queue="billing", sla_outcome="breached",
              sla_outcome_at=at(5)),
        facts("case-T1", at(3), queue="technical"),
    )


def _bars(content: str) -> list[dict[str, str]]:
    return [dict(metric=m, day=d, count=c, href=html.unescape(h))
            for h, m, d, c in re.findall(
                r'<a href="([^"]+)" tabindex="-1" class="bar \w+" data-metric="(\w+)" '
                r'data-day="([\d-]+)" data-count="(\d+)">', content)]


def test_reports_are_for_supervisors_and_admins(agent_client, supervisor_client,
                                                admin_user, week):
    from .conftest import logged_in

    refused = agent_client.get(f"/reports/?{RANGE}")
    assert refused.status_code == 403
    assert b"for supervisors and admins" in refused.content
    assert agent_client.get(f"/reports/cases/?metric=opened&{RANGE}").status_code == 403
    assert b'id="reports-link"' not in agent_client.get("/cases/", follow=True).content
    for client in (supervisor_client, logged_in(admin_user)):
        page = client.get(f"/reports/?{RANGE}")
        assert page.status_code == 200
        assert b'id="reports-link"' in page.content


def test_report_over_a_real_store_links_each_bar_to_exactly_its_cases(supervisor_client,
                                                                      week):
    content = supervisor_client.get(f"/reports/?{RANGE}&by=queue").content.decode()
    assert re.search(r"Figures as of <time [^>]+>[\d-]+ [\d:]+</time> \(0 minutes ago\)", content)
    bars = _bars(content)
    opened = {(b["day"], b["count"]) for b in bars if b["metric"] == "opened"}
    # Billing: two opened on the 2nd, one on the 4th; technical: one on the 3rd.
    assert opened == {("2026-03-02", "2"), ("2026-03-04", "1"), ("2026-03-03", "1")}
    assert len(bars) > 4
    for bar in bars:
        assert bar["href"].startswith("/reports/cases/?") and "first=2026-03-01" in bar["href"]
        listed = supervisor_client.get(bar["href"]).content.decode()
        assert len(re.findall(r'class="drilldown-row"', listed)) == int(bar["count"]), bar
    two = next(b for b in bars if b["metric"] == "opened" and b["count"] == "2")
    listed = supervisor_client.get(two["href"]).content.decode()
    assert 'href="/cases/case-B1/"' in listed and 'href="/cases/case-B2/"' in listed
    # The summary: durations in people's words, SLA attainment and the agents' table.
    assert "3 h 20 min" in content and "1 d" in content
    assert re.search(r"Billing</th>\s*<td><a [^>]+>3</a></td>", content)
    assert "50 %" in content  # one met, one breached
    assert re.search(r'<th scope="row">amy</th><td><a [^>]+>1</a>', content)
    # Accessible: every chart is an image with a title and has a table with a caption.
    assert content.count('role="img"') == 2 == content.count(" per day</caption>")


def test_the_agent_throughput_link_lists_the_agents_resolutions(supervisor_client, week):
    content = supervisor_client.get(f"/reports/?{RANGE}").content.decode()
    href = html.unescape(re.search(r'<th scope="row">amy</th><td><a href="([^"]+)"',
                                   content).group(1))
    assert "by=agent" in href and "group=amy" in href and "metric=resolved" in href
    listed = supervisor_client.get(href).content.decode()
    assert re.findall(r'href="/cases/(case-\w+)/"', listed) == ["case-B1"]


@pytest.mark.parametrize("query, error", [
    ("first=2026-03-07&last=2026-03-01", "The last day is before the first."),
    ("first=2025-01-01&last=2026-03-01", "A report covers at most 366 days."),
    ("first=yesterday", "Enter a valid date."),
    ("tz=Mars/Olympus", "Choose a time zone such as Europe/Paris."),
    ("tz=../../etc/passwd", "Choose a time zone such as Europe/Paris."),
    ("by=secret", "Select a valid choice."),
])
def test_bad_report_form_input_shows_inline_errors(supervisor_client, week, query, error):
    response = supervisor_client.get(f"/reports/?{query}")
    assert response.status_code == 400
    content = response.content.decode()
    assert re.search(r'class="errorlist[^"]*"[^>]*>\s*<li>' + re.escape(html.escape(error)),
                     content), content[-3000:]
    assert 'role="img"' not in content


def test_the_default_report_is_the_last_30_days_in_the_chosen_time_zone(supervisor_client,
                                                                        week):
    content = supervisor_client.get("/reports/?tz=Pacific/Kiritimati").content.decode()
    today = datetime.now(UTC) + timedelta(hours=14)
    assert f'value="{today.date().isoformat()}"' in content
    assert f'value="{(today - timedelta(days=29)).date().isoformat()}"' in content
    assert 'value="Pacific/Kiritimati"' in content


def test_group_by_offers_each_registered_keyword_attribute(supervisor_client, write):
    CaseAttribute.objects.create(name="Region", type="Keyword", label="Region",
                                 state=CaseAttribute.REGISTERED)
    CaseAttribute.objects.create(name="Seats", type="Int", label="Seats",
                                 state=CaseAttribute.REGISTERED)
    write(facts("case-R1", at(2), keywords={"Region": "<img src=x onerror=alert(1)>"}))
    content = supervisor_client.get(f"/reports/?{RANGE}&by=attr:Region").content.decode()
    assert '<option value="attr:Region" selected>Region</option>' in content
    assert "attr:Seats" not in content
    assert "<img src=x" not in content
    assert "&lt;img src=x onerror=alert(1)&gt;" in content


def test_html_in_a_queue_name_is_escaped_in_the_svg_and_the_tables(supervisor_client, write):
    from cases.models import Queue

    Queue.objects.update_or_create(slug="billing",
                                   defaults={"name": '<script>alert("q")</script>'})
    write(facts("case-Q1", at(2), queue="billing"))
    content = supervisor_client.get(f"/reports/?{RANGE}&by=queue").content.decode()
    assert "<script>alert" not in content
    escaped = "&lt;script&gt;alert(&quot;q&quot;)&lt;/script&gt;"
    svg = re.search(r"<svg role=\"img\".*?</svg>", content, re.S).group(0)
    assert escaped in svg
    assert f'<th scope="row">{escaped}' in content  # the summary table
    assert f"{escaped} per day</caption>" in content  # the chart's table


def test_downloads_have_the_right_type_and_rows(supervisor_client, week):
    days = supervisor_client.get(f"/reports/?{RANGE}&download=days&format=csv")
    assert days["Content-Type"] == "text/csv; charset=utf-8"
    assert "attachment" in days["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(days.content.decode())))
    assert len(rows) == 7 * 2  # seven days, two queues
    assert {"day": "2026-03-02", "group": "billing", "opened": "2", "resolved": "0",
            "backlog": "2"} in rows
    groups = supervisor_client.get(f"/reports/?{RANGE}&download=groups&format=parquet")
    assert groups["Content-Type"] == "application/vnd.apache.parquet"
    table = pq.read_table(io.BytesIO(groups.content)).to_pylist()
    billing = next(r for r in table if r["group"] == "billing")
    assert (billing["opened"], billing["sla_met"], billing["sla_breached"]) == (3, 1, 1)
    assert billing["sla_attainment"] == 0.5
    agents = supervisor_client.get(f"/reports/?{RANGE}&download=agents&format=csv")
    assert list(csv.reader(io.StringIO(agents.content.decode()))) == [
        ["agent", "resolved"], ["amy", "1"]]
    bad = supervisor_client.get(f"/reports/?{RANGE}&download=secrets&format=csv")
    assert bad.status_code == 400


def test_csv_downloads_neutralise_formulas_in_group_names(supervisor_client, write):
    write(facts("case-F1", at(2), assignee="=HYPERLINK(\"http://x\")",
                resolved_at=at(3), assignee_at_resolution="=HYPERLINK(\"http://x\")"))
    body = supervisor_client.get(
        f"/reports/?{RANGE}&by=agent&download=agents&format=csv").content.decode()
    assert list(csv.reader(io.StringIO(body)))[1] == ["'=HYPERLINK(\"http://x\")", "1"]
    days = supervisor_client.get(
        f"/reports/?{RANGE}&by=agent&download=days&format=csv").content.decode()
    assert all(row[1].startswith("'=") for row in list(csv.reader(io.StringIO(days)))[1:])


def test_a_supervisors_report_spans_every_queue(
        supervisor_client, week, monkeypatch):
    asked = []
    real = reports.build

    def spy(spec):
        asked.append(spec.queues)
        return real(spec)

    monkeypatch.setattr(reports, "build", spy)
    supervisor_client.get(f"/reports/?{RANGE}")
    assert asked == [None]  # supervisors see every queue, as on every other page


def test_never_exported_says_how_to_run_the_export(supervisor_client, settings, tmp_path):
    settings.ANALYTICS_URI = str(tmp_path / "empty")
    content = supervisor_client.get(f"/reports/?{RANGE}").content.decode()
    assert "python manage.py export_cases" in content and "analytics</code> process" in content
    assert 'id="report-empty"' in content and 'role="img"' not in content


def test_nothing_in_range_is_an_empty_state_not_empty_charts(supervisor_client, week):
    content = supervisor_client.get(
        "/reports/?first=2025-01-01&last=2025-01-31&tz=UTC").content.decode()
    assert "Figures as of" in content
    assert 'id="report-empty"' in content and 'role="img"' not in content


def test_a_drilldown_naming_no_figure_is_refused_inline(supervisor_client, week):
    response = supervisor_client.get(f"/reports/cases/?metric=everything&{RANGE}")
    assert response.status_code == 400
    assert "Select a valid choice." in response.content.decode()


@pytest.fixture
def made_report(monkeypatch, settings, tmp_path):
    """A hand-built Report (view rendering only: figures, counts and links are tested over
    a real store above)."""
    settings.ANALYTICS_URI = str(tmp_path / "unused")
    fresh = datetime.now(UTC) - timedelta(minutes=3, seconds=20)

    def made(spec):
        day = spec.first
        return Report(spec, days=[DayRow(day, "<b>x</b>", 1, 0, 1)],
                      groups=[GroupRow("<b>x</b>", 1, 0, 20.0, 7 * 86400 + 3 * 3600, None, None,
                                       0, 0, None, 0, None)],
                      agents=[AgentRow("", 2)],
                      fresh_at=fresh, cases=1)

    monkeypatch.setattr(reports, "build", made)
    return fresh


def test_rendering_of_durations_unassigned_and_missing_figures(supervisor_client, made_report):
    CaseAttribute.objects.create(name="Region", type="Keyword", label="Region",
                                 state=CaseAttribute.REGISTERED)
    query = f"/reports/?{RANGE}&by=attr:Region".replace("UTC", "Asia/Kolkata")
    content = supervisor_client.get(query).content.decode()
    assert "(3 minutes ago)" in content
    shown = made_report.astimezone(ZoneInfo("Asia/Kolkata"))
    assert f'{shown:%Y-%m-%d %H:%M}</time>' in content
    assert "<td>&lt; 1 min</td><td>7 d 3 h</td>" in content
    assert '<th scope="row">Unassigned</th>' in content
    assert "<b>x</b>" not in content and "&lt;b&gt;x&lt;/b&gt;" in content
