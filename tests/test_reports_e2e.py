"""Report figures equal a hand count: real cases on the dev server with short SLAs, one
reopened, one breached, one in a queue with a calendar, exported by the real exporter
(issue 24). The hand count uses what this test did and the times of the cases' histories
(temporal.case_history), never the exported facts."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from cases import temporal as gateway
from cases.analytics import exporter, store
from cases.analytics.reports import ReportSpec, build, matching_cases
from cases.config.queue_policy import sla_policy
from cases.temporal.ids import new_case_id
from workers.business_hours import WorkingTime
from workers.model import AddComment, Claim, NewCase, QueuePolicy, Reopen, Resolve

from .conftest import eventually, run
from .test_reports import assert_lists_match_figures

pytestmark = pytest.mark.django_db(transaction=True)

PARIS = ZoneInfo("Europe/Paris")


def _start(queue: str, priority: int, working: WorkingTime | None = None) -> str:
    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(title=f"Report {queue}", queue=queue,
                                            priority=priority),
                           "intake", QueuePolicy(queue, sla_policy(working))))
    return case_id


def _overlap(intervals: list[list[int]], start: datetime, end: datetime) -> float:
    """Seconds of [start, end] inside the working intervals, by hand."""
    s, e = start.timestamp(), end.timestamp()
    return sum(max(0.0, min(e, b) - max(s, a)) for a, b in intervals)


def test_the_report_equals_a_hand_count_of_real_cases(temporal, settings, tmp_path):
    settings.ANALYTICS_URI = str(tmp_path / "analytics")
    # Urgent cases are due after 1 s: the breached one. The others have an hour.
    settings.CASE_SLA_SECONDS = [1, 3600, 3600, 3600]
    tag = uuid.uuid4().hex[:8]
    queue, hours_queue = f"rep-{tag}", f"rephours-{tag}"

    breached = _start(queue, 1)
    run(gateway.act(breached, Claim(actor="alice")))
    eventually(lambda: _assert(run(gateway.get_case(breached)).sla_breached), timeout=20,
               interval=0.2)
    run(gateway.act(breached, Resolve(actor="alice", resolution="Late but done")))

    reopened = _start(queue, 3)
    for command in (Claim(actor="bob"), AddComment(actor="bob", body="On it"),
                    Resolve(actor="bob", resolution="Done"), Reopen(actor="sam", reason="No"),
                    Resolve(actor="bob", resolution="Done again")):
        run(gateway.act(reopened, command))

    # Working for 2 s after now, closed for 3 s, then open for an hour.
    now = float(int(time.time()))
    intervals = [[int(now - 5), int(now + 2)], [int(now + 5), int(now + 3600)]]
    calendar = _start(hours_queue, 4, WorkingTime("Short", intervals))
    time.sleep(6)
    for command in (Claim(actor="alice"), AddComment(actor="alice", body="Hello"),
                    Resolve(actor="alice", resolution="Done")):
        run(gateway.act(calendar, command))
    still_open = _start(hours_queue, 3)

    ids = [breached, reopened, calendar, still_open]
    run(exporter.export_cases(ids, store.shared()))
    timelines = {c: run(gateway.case_history(c)).projection.entries for c in ids}

    def first(case_id: str, kind: str, actor: str | None = None) -> datetime:
        return next(e.at for e in timelines[case_id]
                    if e.kind == kind and actor in (None, e.actor))

    def last(case_id: str, kind: str) -> datetime:
        return [e.at for e in timelines[case_id] if e.kind == kind][-1]

    opened = {c: timelines[c][0].at for c in ids}
    today = datetime.now(PARIS).date()
    spec = ReportSpec(first=today - timedelta(days=1), last=today + timedelta(days=1),
                      time_zone="Europe/Paris")
    report = build(spec)
    day = {c: opened[c].astimezone(PARIS).date() for c in ids}
    assert report.cases == 4

    # Per day: openings and resolutions on the Paris day they happened; the backlog at each
    # day's end from each case's status right after its last entry before midnight.
    def backlog(case_ids: list[str], on) -> int:
        midnight = datetime.combine(on + timedelta(days=1), datetime.min.time(), PARIS)
        count = 0
        for c in case_ids:
            before = [e for e in timelines[c] if e.at < midnight and e.state is not None]
            count += bool(before) and before[-1].state.status in ("new", "in_progress",
                                                                  "waiting")
        return count

    resolved_day = {c: last(c, "resolved").astimezone(PARIS).date()
                    for c in (breached, reopened, calendar)}
    expected_days = []
    for on in (spec.first, today, spec.last):
        for group, members in ((queue, [breached, reopened]),
                               (hours_queue, [calendar, still_open])):
            expected_days.append((on, group, sum(day[c] == on for c in members),
                                  sum(resolved_day.get(c) == on for c in members),
                                  backlog(members, on)))
    assert sorted((r.day, r.group, r.opened, r.resolved, r.backlog) for r in report.days) == \
        sorted(expected_days)
    assert sum(r.backlog for r in report.days if r.day == spec.last) == 1  # still_open

    groups = {g.group: g for g in report.groups}
    plain, hours = groups[queue], groups[hours_queue]
    assert (plain.opened, plain.resolved, plain.sla_met, plain.sla_breached) == (2, 2, 1, 1)
    assert (plain.sla_attainment, plain.reopened, plain.reopen_rate) == (0.5, 1, 0.5)
    # The one public answer by someone other than the requester: bob's comment.
    answer = (first(reopened, "comment", "bob") - opened[reopened]).total_seconds()
    assert plain.first_response_median == pytest.approx(answer, abs=1e-3)
    assert plain.first_response_p90 == pytest.approx(answer, abs=1e-3)
    # Resolution from the opening to the last resolution, a reopen included.
    a = (last(breached, "resolved") - opened[breached]).total_seconds()
    b = (last(reopened, "resolved") - opened[reopened]).total_seconds()
    low, high = sorted((a, b))
    assert plain.resolution_median == pytest.approx((a + b) / 2, abs=1e-3)
    assert plain.resolution_p90 == pytest.approx(low + 0.9 * (high - low), abs=1e-3)

    # The calendar queue counts working seconds: the 3 s closed gap is not in them.
    assert (hours.opened, hours.resolved, hours.sla_met, hours.sla_breached) == (2, 1, 1, 0)
    assert (hours.sla_attainment, hours.reopened, hours.reopen_rate) == (1.0, 0, 0.0)
    working = _overlap(intervals, opened[calendar], last(calendar, "resolved"))
    wall = (last(calendar, "resolved") - opened[calendar]).total_seconds()
    assert wall - working >= 2.5
    assert hours.resolution_median == pytest.approx(working, abs=1e-3)
    assert hours.first_response_median == pytest.approx(
        _overlap(intervals, opened[calendar], first(calendar, "comment", "alice")), abs=1e-3)

    assert [(a.agent, a.resolved) for a in report.agents] == [("alice", 2), ("bob", 1)]
    assert {r["case_id"] for r in matching_cases(spec, "breached", None, queue)} == {breached}
    assert {r["case_id"] for r in matching_cases(spec, "reopened", None, None)} == {reopened}
    assert {r["case_id"] for r in matching_cases(spec, "backlog", spec.last, None)} == {
        still_open}
    assert_lists_match_figures(spec)

    # A viewer of the calendar queue only sees its cases in every figure.
    mine = build(ReportSpec(spec.first, spec.last, "Europe/Paris", queues=[hours_queue]))
    assert (mine.cases, [g.group for g in mine.groups]) == (2, [hours_queue])
    assert [(a.agent, a.resolved) for a in mine.agents] == [("alice", 1)]
    by_priority = {g.group: g.opened for g in build(
        ReportSpec(spec.first, spec.last, "Europe/Paris", by="priority")).groups}
    assert by_priority == {"1": 1, "3": 2, "4": 1}
    assert datetime.now(UTC) - opened[breached] < timedelta(minutes=5)


def _assert(condition: bool) -> None:
    assert condition
