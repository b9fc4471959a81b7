"""Business hours (issue 17): the pure working-time arithmetic the workflow and the history
projection share, the calendar configuration it is expanded from, and a case that counts it."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workers import rules
from workers.business_hours import (
    CalendarSpec,
    WorkingTime,
    add_working,
    expand,
    working_between,
)
from workers.model import NewCase, SetPriority, SlaPolicy

LONDON = ZoneInfo("Europe/London")
NINE_TO_FIVE = {d: [(time(9), time(17))] for d in range(5)}
HOUR = 3600


def london(*args: int) -> datetime:
    return datetime(*args, tzinfo=LONDON)


def office(closed: set[date] | None = None, start: date = date(2026, 1, 1),
           days: int = 500) -> WorkingTime:
    return expand(CalendarSpec("Office", "Europe/London", NINE_TO_FIVE, closed or set()),
                  start, days)


def test_a_friday_afternoon_case_is_due_on_monday_across_the_weekend():
    work = office()
    # Friday 2026-03-06 15:00: two hours left on Friday, two more from Monday 09:00.
    due = add_working(work, london(2026, 3, 6, 15), 4 * HOUR)
    assert due == london(2026, 3, 9, 11)
    assert working_between(work, london(2026, 3, 6, 15), due) == 4 * HOUR


def test_a_holiday_is_skipped():
    # Easter 2026: Good Friday 3 April and Easter Monday 6 April are closed.
    work = office({date(2026, 4, 3), date(2026, 4, 6)})
    due = add_working(work, london(2026, 4, 2, 16), 2 * HOUR)
    assert due == london(2026, 4, 7, 10)


def test_the_holidays_package_closes_a_country_s_public_holidays():
    from cases.config.calendars import holiday_dates
    closed = holiday_dates("GB", "ENG", 2026, 1)
    assert date(2026, 12, 25) in closed and date(2026, 8, 31) in closed  # summer bank holiday
    work = office(closed)
    assert add_working(work, london(2026, 12, 24, 16), 2 * HOUR) == london(2026, 12, 29, 10)


def test_working_hours_stay_local_across_a_dst_change():
    work = office()
    # Clocks go forward on Sunday 29 March 2026: Friday 09:00 is 09:00 GMT, Monday 09:00 is
    # 08:00 UTC. Eight working hours from Friday 09:00 end at Friday 17:00; nine at Monday 10:00.
    assert add_working(work, london(2026, 3, 27, 9), 9 * HOUR) == london(2026, 3, 30, 10)
    assert london(2026, 3, 30, 10).astimezone(UTC).hour == 9
    assert london(2026, 3, 27, 10).astimezone(UTC).hour == 10
    # And back on 25 October: a 24h working day is the same 8 hours either side.
    assert working_between(work, london(2026, 10, 23, 0), london(2026, 10, 27, 0)) == 16 * HOUR


def test_a_case_opened_outside_hours_starts_counting_at_the_next_opening():
    work = office()
    assert add_working(work, london(2026, 3, 7, 22), HOUR) == london(2026, 3, 9, 10)  # Saturday
    assert add_working(work, london(2026, 3, 9, 6), HOUR) == london(2026, 3, 9, 10)  # early
    assert add_working(work, london(2026, 3, 9, 17), 0) == london(2026, 3, 10, 9)  # at close
    assert working_between(work, london(2026, 3, 7, 0), london(2026, 3, 8, 23)) == 0


def test_spans_with_a_break_and_a_day_open_until_midnight():
    spec = CalendarSpec("Split", "UTC", {0: [(time(13), time(17)), (time(8), time(12))],
                                          5: [(time(20), time(0))]})
    work = expand(spec, date(2026, 3, 2), 7)  # Monday 2 March
    mon = datetime(2026, 3, 2, tzinfo=UTC)
    assert work.intervals[0] == [int((mon + timedelta(hours=8)).timestamp()),
                                 int((mon + timedelta(hours=12)).timestamp())]
    assert add_working(work, mon + timedelta(hours=11), 2 * HOUR) == mon + timedelta(hours=14)
    assert add_working(work, mon + timedelta(hours=16), 2 * HOUR) == mon + timedelta(days=5,
                                                                                    hours=21)


def test_past_the_horizon_and_without_hours_every_second_counts():
    start = datetime(2026, 3, 2, 12, tzinfo=UTC)
    assert add_working(WorkingTime(), start, 90) == start + timedelta(seconds=90)
    work = office(days=7)
    far = datetime(2027, 1, 1, tzinfo=UTC)
    assert add_working(work, far, 60) == far + timedelta(seconds=60)
    assert working_between(work, far, far + timedelta(hours=1)) == HOUR


WORK = office(days=400)
instants = st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2027, 3, 1),
                        timezones=st.just(UTC))


@settings(max_examples=300, deadline=None)
@given(instants, st.integers(min_value=0, max_value=200 * HOUR))
def test_property_working_time_added_is_working_time_between(start, seconds):
    due = add_working(WORK, start, seconds)
    assert due >= start
    assert working_between(WORK, start, due) == pytest.approx(seconds, abs=1e-3)


@settings(max_examples=200, deadline=None)
@given(instants, st.integers(min_value=0, max_value=100 * HOUR),
       st.integers(min_value=1, max_value=100 * HOUR))
def test_property_more_working_time_is_never_earlier(start, a, more):
    assert add_working(WORK, start, a) <= add_working(WORK, start, a + more)


@settings(max_examples=200, deadline=None)
@given(instants, instants, instants)
def test_property_working_time_adds_up_over_a_split(a, b, c):
    a, b, c = sorted((a, b, c))
    total = working_between(WORK, a, c)
    assert total == pytest.approx(working_between(WORK, a, b) + working_between(WORK, b, c))
    assert -1e-6 <= total <= (c - a).total_seconds() + 1e-6


def test_the_rules_count_working_time_for_due_and_a_new_priority():
    policy = SlaPolicy(seconds_by_priority=[HOUR, 2 * HOUR, 8 * HOUR, 16 * HOUR],
                       working=office())
    friday = london(2026, 3, 6, 16)
    state = rules.open_case("case-abcd1234", NewCase(title="t", queue="general", priority=3),
                            "x", policy, friday)
    assert state.due_at == london(2026, 3, 9, 16)  # 1h Friday + 7h Monday
    effect = rules.decide(state, SetPriority(actor="x", priority=1), friday, policy)
    assert effect.changes["due_at"] == london(2026, 3, 6, 17)  # the last hour of Friday


# --- configuration ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_queue_s_calendar_expands_with_its_holidays_and_closures():
    from cases.config.calendars import working_time_for
    from cases.models import BusinessCalendar, ClosedDay, Queue, WorkingHours

    cal = BusinessCalendar.objects.create(name="UK office", time_zone="Europe/London",
                                          holidays_country="GB", holidays_subdivision="ENG")
    for day in range(5):
        WorkingHours.objects.create(calendar=cal, weekday=day, start=time(9), end=time(17))
    ClosedDay.objects.create(calendar=cal, date=date(2026, 12, 29), name="Office move")
    queue = Queue.objects.create(slug="uk", name="UK", calendar=cal)
    assert working_time_for("general") is None  # no calendar: around the clock
    work = working_time_for(queue.slug, date(2026, 12, 20))
    assert work is not None and work.calendar == "UK office"
    # Christmas, Boxing Day (observed Monday 28th) and the closure on the 29th are skipped.
    assert add_working(work, london(2026, 12, 24, 16), 2 * HOUR) == london(2026, 12, 30, 10)


@pytest.mark.django_db
def test_a_calendar_refuses_an_unknown_time_zone_and_country():
    from django.core.exceptions import ValidationError

    from cases.models import BusinessCalendar

    with pytest.raises(ValidationError):
        BusinessCalendar(name="x", time_zone="Mars/Olympus").full_clean()
    with pytest.raises(ValidationError):
        BusinessCalendar(name="x", time_zone="UTC", holidays_country="ZZ").full_clean()
    BusinessCalendar(name="x", time_zone="UTC", holidays_country="FR").full_clean()


# --- on the real server -------------------------------------------------------------------------


def _window(now: float, *spans: tuple[float, float]) -> WorkingTime:
    """Working intervals relative to `now`, in seconds: hours short enough for a test."""
    return WorkingTime("Short", [[int(now + a), int(now + b)] for a, b in spans])


def test_a_case_counts_only_working_time_breaches_then_and_replays(temporal, settings,
                                                                   transactional_db):
    import time as clock

    from cases import temporal as gateway
    from cases.config.queue_policy import sla_policy
    from cases.temporal.ids import new_case_id
    from workers.model import QueuePolicy, Resolve

    from .conftest import eventually, run

    settings.CASE_SLA_SECONDS = [3, 3600, 3600, 3600]
    settings.NOTIFY_QUIET_SECONDS = 0.2
    now = float(int(clock.time()) + 1)
    # Open for 1 s, closed for 3 s, open again: three working seconds end 5 s after opening.
    work = _window(now, (-5, 1), (4, 9))
    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(title="After hours", queue="technical",
                                            priority=1), "intake",
                           QueuePolicy("technical", sla_policy(work))))
    opened = run(gateway.get_case(case_id))
    assert opened.due_at == add_working(work, opened.created_at, 3)
    assert opened.due_at.timestamp() == pytest.approx(now + 6, abs=1.5)
    assert not opened.sla_breached

    def breached():
        state = run(gateway.get_case(case_id))
        assert state.sla_breached
        return state

    late = eventually(breached, timeout=20, interval=0.1)
    assert datetime.now(UTC) >= opened.due_at
    run(gateway.act(case_id, Resolve(actor="intake", resolution="Done")))
    projection = run(gateway.case_history(case_id)).projection
    by_version = {e.state.version: e.state for e in projection.entries if e.state is not None}
    assert by_version[opened.version] == opened
    assert by_version[late.version] == late
    assert not any(e.diverged for e in projection.entries)


@pytest.mark.django_db
def test_the_new_case_page_opens_a_case_under_its_queue_s_hours(temporal, supervisor_client):
    import re

    from cases import temporal as gateway
    from cases.models import BusinessCalendar, Queue, WorkingHours

    from .conftest import run

    cal = BusinessCalendar.objects.create(name="Weekends only", time_zone="Europe/London")
    for day in (5, 6):
        WorkingHours.objects.create(calendar=cal, weekday=day, start=time(10), end=time(12))
    Queue.objects.filter(slug="technical").update(calendar=cal)
    page = supervisor_client.get("/cases/new/").content.decode()
    case_id = re.search(r'name="case_id" value="(case-\w+)"', page).group(1)
    response = supervisor_client.post("/cases/new/", {
        "case_id": case_id, "title": "Weekend only", "queue": "technical", "priority": "3"})
    assert response.status_code == 302, response.content.decode()[:2000]
    state = run(gateway.get_case(case_id))
    local = state.due_at.astimezone(LONDON)
    assert local.weekday() in (5, 6) and time(10) < local.time() <= time(12)
