"""Working-time arithmetic for SLAs that count business hours only (issue 17).

Two halves:

- `expand` turns a queue's calendar (weekly hours in a time zone, holiday and closed dates)
  into `WorkingTime`: the working intervals as UTC instants over a bounded horizon. It uses
  `zoneinfo` (the time-zone database is read from disk), so it runs where the case is started
  (the web tier or intake), never in a workflow.
- `add_working` and `working_between` are pure functions of a `WorkingTime` and instants: no
  time-zone database, no clock, no I/O. The workflow and the history projection run them on
  the `WorkingTime` carried in the case's input, so a replay computes exactly what the case
  computed, whatever tzdata or holiday package a later worker has.

Past the horizon's end every second counts (wall clock), as it does for a queue with no
calendar; the horizon (two years) is far longer than any SLA.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
HORIZON_DAYS = 2 * 366


@dataclass
class WorkingTime:
    """A queue's working intervals, [start, end) in UTC epoch seconds, sorted and disjoint.
    Plain data, carried in the case workflow's input."""

    calendar: str = ""  # the calendar's name, for people
    intervals: list[list[int]] = field(default_factory=list)


@dataclass
class CalendarSpec:
    """A calendar as configured: per weekday (0 = Monday) the local (start, end) times it is
    open, a time zone, and the local dates it is closed all day (holidays, closures)."""

    name: str
    time_zone: str
    hours: dict[int, list[tuple[time, time]]]
    closed: set[date] = field(default_factory=set)


def expand(spec: CalendarSpec, start: date, days: int = HORIZON_DAYS) -> WorkingTime:
    """The spec's working intervals from local date `start` for `days` days, as UTC instants.
    Local times that a DST change skips or repeats resolve by `fold=0` (the earlier offset);
    an end at or before its start (a closed day, or a gap) yields nothing."""
    zone = ZoneInfo(spec.time_zone)
    out: list[list[int]] = []
    for n in range(days):
        day = start + timedelta(days=n)
        if day in spec.closed:
            continue
        for begin, end in sorted(spec.hours.get(day.weekday(), [])):
            a = _epoch(datetime.combine(day, begin, zone))
            b = _epoch(datetime.combine(day, end, zone)) if end != time(0) else \
                _epoch(datetime.combine(day + timedelta(days=1), time(0), zone))
            if b <= a:
                continue
            if out and a <= out[-1][1]:
                out[-1][1] = max(out[-1][1], b)
            else:
                out.append([a, b])
    return WorkingTime(spec.name, out)


def _epoch(moment: datetime) -> int:
    return int(moment.timestamp())


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def add_working(work: WorkingTime, start: datetime, seconds: float) -> datetime:
    """The instant when `seconds` of working time have passed since `start`. A case opened
    outside hours starts counting when the calendar next opens."""
    now = start.timestamp()
    left = float(seconds)
    spans = work.intervals
    i = max(bisect_right([s for s, _ in spans], now) - 1, 0)
    for a, b in spans[i:]:
        if b <= now:
            continue
        begin = max(a, now)
        if begin + left <= b:
            return _at(begin + left)
        left -= b - begin
        now = b
    # Past the horizon (or no intervals): wall clock.
    return _at(now + left)


def working_between(work: WorkingTime, start: datetime, end: datetime) -> float:
    """Working seconds in [start, end); negative when end is before start."""
    if end < start:
        return -working_between(work, end, start)
    a0, b0 = start.timestamp(), end.timestamp()
    total = 0.0
    last = None
    for a, b in work.intervals:
        last = b
        if b <= a0:
            continue
        if a >= b0:
            break
        total += min(b, b0) - max(a, a0)
    # Past the horizon, wall clock (matching add_working).
    if work.intervals and last is not None and b0 > last:
        total += b0 - max(last, a0)
    elif not work.intervals:
        total = b0 - a0
    return total
