"""Figures over time from the case export, computed by DuckDB (issue 24).

Every figure's definition (docs/analytics.md says them for people):
  opened      cases whose opened_at falls on the day (viewer's time zone)
  resolved    cases whose (last) resolved_at falls on the day
  backlog     cases open (new, in progress, waiting) at the day's end, from the timeline
  first response / resolution   median and p90 (DuckDB quantile_cont) of the cases' seconds
              (working seconds where the case has a calendar), over cases opened in the range
  SLA attainment  met / (met + breached), outcomes known (sla_outcome_at) in the range
  reopen rate     cases reopened at least once / cases resolved, resolved in the range
  throughput      cases resolved in the range per assignee at resolution
Grouping: by queue, priority, agent (the assignee now; for resolutions and throughput the
assignee at resolution) or a registered Keyword attribute, as the case's facts now say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

# What a report can be grouped by besides "attr:<Name>" for a registered Keyword attribute.
DIMENSIONS = ("queue", "agent", "priority")


@dataclass
class ReportSpec:
    first: date  # days in the viewer's time zone, both included
    last: date
    time_zone: str  # IANA name, e.g. "Europe/Paris"
    by: str = "queue"  # one of DIMENSIONS or "attr:<Name>"
    # The queues the viewer may see (None: all); every figure is counted inside them only.
    queues: list[str] | None = None
    # Only these groups (e.g. the bars of one queue), None: all.
    groups: list[str] | None = None


@dataclass
class DayRow:
    day: date
    group: str
    opened: int
    resolved: int
    backlog: int


@dataclass
class GroupRow:
    group: str
    opened: int
    resolved: int
    first_response_median: float | None  # seconds
    first_response_p90: float | None
    resolution_median: float | None
    resolution_p90: float | None
    sla_met: int
    sla_breached: int
    sla_attainment: float | None  # met / (met + breached); None when neither
    reopened: int
    reopen_rate: float | None  # reopened / resolved; None when nothing resolved


@dataclass
class AgentRow:
    agent: str
    resolved: int


@dataclass
class Report:
    spec: ReportSpec
    days: list[DayRow] = field(default_factory=list)
    groups: list[GroupRow] = field(default_factory=list)
    agents: list[AgentRow] = field(default_factory=list)
    # When the export last finished (the store's state), None when never.
    fresh_at: datetime | None = None
    cases: int = 0  # cases in the export the viewer may see


def build(spec: ReportSpec) -> Report:
    """The report over the shared store's current snapshot."""
    raise NotImplementedError  # lane "reports" (issue 24)


def matching_cases(spec: ReportSpec, metric: str, day: date | None, group: str | None,
                   limit: int = 500) -> list[dict]:
    """The cases behind one figure (a bar, a cell): `metric` is opened, resolved, backlog,
    breached, met, reopened; rows of the `cases` view as dicts, newest first."""
    raise NotImplementedError  # lane "reports" (issue 24)
