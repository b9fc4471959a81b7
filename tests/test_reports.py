"""Report figures over facts written straight into a store at known times (issue 24).

Every expected number is counted by hand from the rows below; each test also checks that
matching_cases() lists exactly the cases behind each figure it asserts."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from cases.analytics import store
from cases.analytics.reports import ReportSpec, build, matching_cases
from cases.analytics.schema import CaseFacts, EventFact


def at(day: int, hour: int = 12, minute: int = 0) -> datetime:
    """A UTC time in March 2026."""
    return datetime(2026, 3, day, hour, minute, tzinfo=UTC)


def facts(case_id: str, opened: datetime, *, queue: str = "billing", priority: int = 3,
          assignee: str = "", keywords: dict[str, str] | None = None,
          timeline: list[tuple[datetime, str]] | None = None, **fields
          ) -> tuple[CaseFacts, list[EventFact]]:
    """A case and its timeline: (time, status right after) per entry; by default one
    'opened' entry leaving it new, then 'resolved' at resolved_at if given."""
    row = CaseFacts(
        case_id=case_id, version=len(timeline or ()) + 1, history_events=10, title=case_id,
        queue=queue, priority=priority, status="new", requester_name="Ada",
        requester_email="ada@example.com", requester_domain="example.com", created_by="ada",
        assignee=assignee, tags=[], keywords=keywords or {}, opened_at=opened,
        first_response_at=None, first_response_by="", resolved_at=None, resolved_by="",
        assignee_at_resolution="", closed_at=None, reopen_count=0, due_at=None,
        sla_outcome="", sla_outcome_at=None, calendar="", first_response_seconds=None,
        resolution_seconds=None, execution="running", follows="", run_ids=["r1"],
        state_json="{}")
    for name, value in fields.items():
        setattr(row, name, value)
    if timeline is None:
        timeline = [(opened, "new")]
        if row.resolved_at is not None:
            timeline.append((row.resolved_at, "resolved"))
    row.status = timeline[-1][1]
    events = [EventFact(
        case_id=case_id, version=row.version, history_events=row.history_events, seq=i,
        run_id="r1", event_id=i * 5, at=when, actor="amy", kind="x", detail="", text="",
        state_version=i, status=status, queue=queue, assignee=assignee, priority=priority)
        for i, (when, status) in enumerate(timeline, 1)]
    return row, events


@pytest.fixture
def write(settings, tmp_path):
    settings.ANALYTICS_URI = str(tmp_path / "analytics")

    def write(*cases: tuple[CaseFacts, list[EventFact]]) -> None:
        store.shared().write([c for c, _ in cases], [e for _, es in cases for e in es])
    return write


def spec(first: int, last: int, tz: str = "UTC", **kw) -> ReportSpec:
    return ReportSpec(first=date(2026, 3, first), last=date(2026, 3, last), time_zone=tz, **kw)


def ids(s: ReportSpec, metric: str, day: date | None = None, group: str | None = None) -> set:
    return {row["case_id"] for row in matching_cases(s, metric, day, group)}


def days_of(report, group: str) -> list[tuple[int, int, int, int]]:
    return [(r.day.day, r.opened, r.resolved, r.backlog) for r in report.days if r.group == group]


def assert_lists_match_figures(s: ReportSpec) -> None:
    """A bar's count is its list's length, for every figure of the report."""
    report = build(s)
    for row in report.days:
        for metric in ("opened", "resolved", "backlog"):
            assert len(matching_cases(s, metric, row.day, row.group)) == getattr(row, metric), (
                metric, row)
    for row in report.groups:
        for metric, n in (("opened", row.opened), ("resolved", row.resolved),
                          ("met", row.sla_met), ("breached", row.sla_breached),
                          ("reopened", row.reopened)):
            assert len(matching_cases(s, metric, None, row.group)) == n, (metric, row)
    for agent in report.agents:
        assert len(matching_cases(s, "throughput", None, agent.agent)) == agent.resolved


def test_a_case_opened_at_23_30_utc_counts_on_the_next_day_in_paris(write):
    write(facts("late", at(2, 23, 30)), facts("noon", at(2, 12)))
    utc = build(spec(2, 3))
    assert days_of(utc, "billing") == [(2, 2, 0, 2), (3, 0, 0, 2)]
    paris = spec(2, 3, "Europe/Paris")
    assert days_of(build(paris), "billing") == [(2, 1, 0, 1), (3, 1, 0, 2)]
    assert ids(paris, "opened", date(2026, 3, 3)) == {"late"}
    assert ids(paris, "backlog", date(2026, 3, 2)) == {"noon"}
    # And west of UTC a case opened at 02:00 UTC is still the day before.
    write(facts("early", at(4, 2)))
    assert days_of(build(spec(3, 4, "America/New_York")), "billing")[0][1] == 1
    assert_lists_match_figures(paris)


def test_an_unknown_time_zone_or_grouping_is_refused_with_a_message(write):
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        build(spec(1, 2, "Mars/Olympus"))
    with pytest.raises(ValueError, match="unknown time zone"):
        matching_cases(spec(1, 2, "'; DROP TABLE cases; --"), "opened", None, None)
    with pytest.raises(ValueError, match="cannot group by"):
        build(spec(1, 2, by="title"))
    with pytest.raises(ValueError, match="unknown figure"):
        matching_cases(spec(1, 2), "everything", None, None)


def test_backlog_counts_a_reopened_case_again_on_the_days_it_was_open(write):
    write(facts("reopened", at(1, 10), timeline=[
        (at(1, 10), "new"), (at(2, 9), "in_progress"), (at(2, 12), "resolved"),
        (at(4, 9), "in_progress"), (at(5, 15), "resolved"), (at(6, 8), "closed")],
        resolved_at=at(5, 15), reopen_count=1, resolution_seconds=4 * 86400 + 5 * 3600),
        # Waiting is open; resolved exactly at midnight belongs to the new day.
        facts("waiting", at(3, 8), timeline=[
            (at(3, 8), "new"), (at(3, 9), "waiting"), (at(5, 0), "resolved")],
            resolved_at=at(5, 0)))
    s = spec(1, 6)
    assert days_of(build(s), "billing") == [
        (1, 1, 0, 1), (2, 0, 0, 0), (3, 1, 0, 1), (4, 0, 0, 2), (5, 0, 2, 0), (6, 0, 0, 0)]
    assert ids(s, "backlog", date(2026, 3, 4)) == {"reopened", "waiting"}
    assert_lists_match_figures(s)


def test_medians_and_p90_match_a_hand_computation_over_cases_opened_in_the_range(write):
    firsts = [60, 120, 300, 600, 3600]
    resolutions = [100, 200, 300, 400, None]
    write(*[facts(f"c{i}", at(2 + i), first_response_seconds=float(f),
                  resolution_seconds=None if r is None else float(r),
                  resolved_at=None if r is None else at(2 + i, 13))
            for i, (f, r) in enumerate(zip(firsts, resolutions, strict=True))],
          # Opened before the range: its times are not in the figures.
          facts("before", at(1), first_response_seconds=9e6, resolution_seconds=9e6,
                resolved_at=at(3)),
          facts("no-answer", at(3)))
    s = spec(2, 8)
    (row,) = build(s).groups
    # quantile_cont: the value at position (n-1)q, interpolated.
    assert row.first_response_median == 300
    assert row.first_response_p90 == pytest.approx(600 + 0.6 * (3600 - 600))
    assert row.resolution_median == 250
    assert row.resolution_p90 == pytest.approx(300 + 0.7 * 100)
    assert ids(s, "first_response") == {"c0", "c1", "c2", "c3", "c4"}
    assert ids(s, "resolution") == {"c0", "c1", "c2", "c3"}
    assert (row.opened, row.resolved) == (6, 5)


def test_sla_attainment_counts_met_and_breached_known_in_the_range_never_open_ones(write):
    write(facts("met", at(2), sla_outcome="met", sla_outcome_at=at(3), resolved_at=at(3)),
          facts("breached-open", at(2), sla_outcome="breached", sla_outcome_at=at(4)),
          facts("breached-resolved", at(2), sla_outcome="breached", sla_outcome_at=at(3),
                resolved_at=at(6)),
          facts("open", at(2), due_at=at(20)),
          facts("met-later", at(2), sla_outcome="met", sla_outcome_at=at(12),
                resolved_at=at(12)))
    s = spec(1, 10)
    (row,) = build(s).groups
    assert (row.sla_met, row.sla_breached) == (1, 2)
    assert row.sla_attainment == pytest.approx(1 / 3)
    assert ids(s, "breached") == {"breached-open", "breached-resolved"}
    assert ids(s, "met", date(2026, 3, 3)) == {"met"}
    # Nothing known: no attainment rather than 0 %.
    (none,) = build(spec(1, 2)).groups
    assert none.sla_attainment is None and none.reopen_rate is None
    assert_lists_match_figures(s)


def test_reopen_rate_is_reopened_over_resolved_in_the_range(write):
    write(facts("r1", at(1), resolved_at=at(2), reopen_count=2),
          facts("r2", at(1), resolved_at=at(3)),
          facts("r3", at(1), resolved_at=at(4)),
          facts("r4", at(1), resolved_at=at(5)),
          facts("reopened-later", at(1), resolved_at=at(15), reopen_count=1))
    s = spec(1, 10)
    (row,) = build(s).groups
    assert (row.resolved, row.reopened, row.reopen_rate) == (4, 1, 0.25)
    assert ids(s, "reopened") == {"r1"}


def test_throughput_per_agent_counts_resolutions_by_the_assignee_at_resolution(write):
    write(facts("a1", at(1), assignee="bob", assignee_at_resolution="amy", resolved_at=at(2)),
          facts("a2", at(1), assignee="amy", assignee_at_resolution="amy", resolved_at=at(3)),
          facts("b1", at(1), assignee="amy", assignee_at_resolution="bob", resolved_at=at(3)),
          facts("nobody", at(1), resolved_at=at(3)),
          facts("outside", at(1), assignee_at_resolution="bob", resolved_at=at(20)),
          facts("open", at(2), assignee="bob"))
    s = spec(1, 10)
    report = build(s)
    assert [(a.agent, a.resolved) for a in report.agents] == [
        ("amy", 2), ("(none)", 1), ("bob", 1)]
    assert ids(s, "throughput", None, "amy") == {"a1", "a2"}
    # By agent: openings go to the assignee now, resolutions to the one at resolution.
    by_agent = spec(1, 10, by="agent")
    groups = {g.group: (g.opened, g.resolved) for g in build(by_agent).groups}
    assert groups == {"amy": (2, 2), "bob": (2, 1), "(none)": (2, 1)}
    assert ids(by_agent, "opened", None, "bob") == {"a1", "open"}
    assert_lists_match_figures(by_agent)


def test_grouping_by_priority_and_by_a_keyword_attribute(write):
    write(facts("p1-eu", at(2), priority=1, keywords={"Region": "EU"}),
          facts("p1-us", at(2), priority=1, keywords={"Region": "US"}),
          facts("p3-eu", at(3), priority=3, keywords={"Region": "EU", "Tier": "gold"}),
          facts("p3-none", at(3), priority=3, keywords={"Tier": "gold"}))
    by_priority = spec(2, 3, by="priority")
    report = build(by_priority)
    assert [(g.group, g.opened) for g in report.groups] == [("1", 2), ("3", 2)]
    assert days_of(report, "1") == [(2, 2, 0, 2), (3, 0, 0, 2)]
    assert days_of(report, "3") == [(2, 0, 0, 0), (3, 2, 0, 2)]
    by_region = spec(2, 3, by="attr:Region")
    assert [(g.group, g.opened) for g in build(by_region).groups] == [
        ("EU", 2), ("US", 1), ("(none)", 1)]
    assert ids(by_region, "opened", None, "(none)") == {"p3-none"}
    # The attribute's name is a parameter, never SQL.
    assert [g.group for g in build(spec(2, 3, by="attr:x' OR 1=1 --")).groups] == ["(none)"]
    only_eu = spec(2, 3, by="attr:Region", groups=["EU", "APAC"])
    report = build(only_eu)
    assert [(g.group, g.opened) for g in report.groups] == [("APAC", 0), ("EU", 2)]
    assert days_of(report, "APAC") == [(2, 0, 0, 0), (3, 0, 0, 0)]
    assert ids(only_eu, "opened", None, "US") == set()
    assert_lists_match_figures(by_priority)
    assert_lists_match_figures(by_region)


def test_every_figure_counts_only_the_queues_the_viewer_may_see(write):
    write(facts("b-open", at(2), queue="billing", assignee="amy"),
          facts("b-done", at(2), queue="billing", resolved_at=at(3), assignee_at_resolution="amy",
                sla_outcome="met", sla_outcome_at=at(3), reopen_count=1),
          facts("s-open", at(2), queue="support", assignee="amy"),
          facts("s-done", at(2), queue="support", resolved_at=at(3), assignee_at_resolution="amy",
                sla_outcome="breached", sla_outcome_at=at(3), reopen_count=1))
    everything = build(spec(1, 4))
    assert everything.cases == 4 and [g.group for g in everything.groups] == ["billing", "support"]
    for by in ("queue", "agent", "priority"):
        s = spec(1, 4, by=by, queues=["billing"])
        report = build(s)
        assert report.cases == 2
        assert sum(g.opened for g in report.groups) == 2
        assert sum(g.sla_breached for g in report.groups) == 0
        assert sum(g.reopened for g in report.groups) == 1
        assert [(a.agent, a.resolved) for a in report.agents] == [("amy", 1)]
        assert sum(r.backlog for r in report.days if r.day == date(2026, 3, 2)) == 2
        assert ids(s, "opened") == {"b-open", "b-done"}
        assert ids(s, "backlog", date(2026, 3, 3)) == {"b-open"}
        assert_lists_match_figures(s)
    nothing = build(spec(1, 4, queues=[]))
    assert (nothing.cases, nothing.groups, nothing.days, nothing.agents) == (0, [], [], [])


def test_every_day_of_the_range_has_a_row_per_group_even_with_nothing(write):
    write(facts("a", at(3), queue="billing"), facts("b", at(5), queue="support",
                                                    resolved_at=at(5, 18)))
    report = build(spec(1, 7))
    assert [(r.day.day, r.group) for r in report.days] == [
        (d, q) for d in range(1, 8) for q in ("billing", "support")]
    assert days_of(report, "support") == [(d, int(d == 5), int(d == 5), 0) for d in range(1, 8)]
    assert_lists_match_figures(spec(1, 7))


def test_the_report_says_when_the_export_last_finished(write):
    write(facts("a", at(3)))
    assert build(spec(1, 3)).fresh_at is None
    finished = datetime.now(UTC) - timedelta(minutes=3)
    store.shared().write_state({"watermark": "x", "exported_at": finished.isoformat()})
    assert build(spec(1, 3)).fresh_at == finished
