"""A queue's business hours as the case workflow gets them (issue 17): the configured calendar
expanded into working intervals (workers.business_hours.WorkingTime) for a bounded horizon,
holidays included, so the workflow does pure arithmetic on plain data.

Resolved when a case is opened; the case keeps what it was opened with (docs/decisions.md).
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays
from django.utils import timezone

from cases.models import BusinessCalendar, Queue
from workers.business_hours import HORIZON_DAYS, CalendarSpec, WorkingTime, expand
from workers.model import Escalation


def valid_time_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def holiday_dates(country: str, subdivision: str, first_year: int, years: int) -> set[date]:
    """The public holidays of a country (and subdivision) in those years, by the `holidays`
    package; NotImplementedError for a country or subdivision it does not know."""
    found = holidays.country_holidays(country, subdiv=subdivision or None,
                                      years=range(first_year, first_year + years))
    return set(found.keys())


def spec_of(calendar: BusinessCalendar, start: date, days: int = HORIZON_DAYS) -> CalendarSpec:
    hours: dict[int, list] = {}
    for span in calendar.hours.all():
        hours.setdefault(span.weekday, []).append((span.start, span.end))
    closed = {c.date for c in calendar.closed_days.all()}
    if calendar.holidays_country:
        years = (start.year + days // 365 + 1) - start.year + 1
        closed |= holiday_dates(calendar.holidays_country, calendar.holidays_subdivision,
                                start.year, years)
    return CalendarSpec(calendar.name, calendar.time_zone, hours, closed)


@lru_cache(maxsize=64)
def _expanded(calendar_id: int, updated: object, start: date) -> WorkingTime:
    # Keyed by the calendar's last change and the day: one expansion a calendar a day.
    calendar = BusinessCalendar.objects.get(pk=calendar_id)
    return expand(spec_of(calendar, start), start)


def working_time_for(queue: str, today: date | None = None) -> WorkingTime | None:
    """The business hours a case opened now in `queue` counts, or None (around the clock).
    The horizon starts the day before today so any time zone's today is covered."""
    row = (Queue.objects.filter(slug=queue, calendar__isnull=False)
           .values_list("calendar_id", "calendar__updated").first())
    if row is None:
        return None
    day = (today or timezone.now().date()).toordinal() - 1
    return _expanded(row[0], row[1], date.fromordinal(day))


def escalation_for(queue: str) -> Escalation | None:
    """The queue's escalation on breach as plain data, or None when a breach only tells."""
    row = (Queue.objects.filter(slug=queue)
           .values_list("escalate_raise_priority", "escalate_to_queue__slug",
                        "escalate_to__username").first())
    if row is None or not any(row):
        return None
    return Escalation(raise_priority=row[0], to_queue=row[1] or "", to_assignee=row[2] or "")
