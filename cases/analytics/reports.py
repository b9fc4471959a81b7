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
from datetime import date, datetime, timedelta

from cases.analytics import store
from cases.analytics.store import Store
from workers.model import OPEN_STATUSES

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


_MAX_DAYS = 3660

# The group key per dimension: a fixed mapping, never built from input. `now` groups a case as
# its facts now say; `res` is for figures about its resolution (resolved, resolution time,
# reopen rate, throughput), which belong to the assignee at resolution.
_NONE = "'(none)'"
_GROUP_SQL = {
    "queue": ("c.queue", "c.queue"),
    "priority": ("CAST(c.priority AS VARCHAR)", "CAST(c.priority AS VARCHAR)"),
    "agent": (f"coalesce(nullif(c.assignee, ''), {_NONE})",
              f"coalesce(nullif(c.assignee_at_resolution, ''), {_NONE})"),
    "attr": (f"coalesce(nullif(c.keywords[$attr], ''), {_NONE})",
             f"coalesce(nullif(c.keywords[$attr], ''), {_NONE})"),
}
_AGENT_RES = _GROUP_SQL["agent"][1]

# The cases the viewer may see, with each figure's day in the viewer's time zone.
_VISIBLE = """
rc AS MATERIALIZED (
  SELECT c.case_id, c.opened_at, c.reopen_count, c.sla_outcome,
         c.first_response_seconds, c.resolution_seconds,
         {now} AS g_now, {res} AS g_res, {agent_res} AS g_agent,
         timezone($tz, c.opened_at)::DATE AS opened_day,
         timezone($tz, c.resolved_at)::DATE AS resolved_day,
         timezone($tz, c.sla_outcome_at)::DATE AS sla_day
  FROM cases c
  WHERE $all_queues OR list_contains($queues, c.queue))"""

# Spans of time a case was open: from a timeline entry that left it open to the next entry.
# The status at a day's end is the one right after the case's last entry before the next
# local midnight, so the span counts on the days from its start's day to the day before
# its end's day (an entry exactly at midnight belongs to the new day).
_OPEN_SPANS = """
spans AS (
  SELECT * FROM (
    SELECT e.case_id, e.status,
           timezone($tz, e.at)::DATE AS ds,
           timezone($tz, lead(e.at) OVER (PARTITION BY e.case_id ORDER BY e.seq))::DATE AS de
    FROM events e WHERE e.case_id IN (SELECT case_id FROM rc))
  WHERE list_contains($open, status))"""

_SPINE = """
spine AS (SELECT unnest(generate_series($first, $last, INTERVAL 1 DAY))::DATE AS day)"""

# Every counted figure as (metric, day, group, case): the one definition build() counts and
# matching_cases() lists, so a bar's count is its list's length.
_HITS = """
hits AS (
  SELECT 'opened' AS metric, opened_day AS day, g_now AS grp, case_id FROM rc
    WHERE opened_day BETWEEN $first AND $last
  UNION ALL
  SELECT 'resolved', resolved_day, g_res, case_id FROM rc
    WHERE resolved_day BETWEEN $first AND $last
  UNION ALL
  SELECT 'reopened', resolved_day, g_res, case_id FROM rc
    WHERE resolved_day BETWEEN $first AND $last AND reopen_count > 0
  UNION ALL
  SELECT sla_outcome, sla_day, g_now, case_id FROM rc
    WHERE sla_day BETWEEN $first AND $last AND sla_outcome IN ('met', 'breached')
  UNION ALL
  SELECT 'first_response', opened_day, g_now, case_id FROM rc
    WHERE opened_day BETWEEN $first AND $last AND first_response_seconds IS NOT NULL
  UNION ALL
  SELECT 'resolution', opened_day, g_res, case_id FROM rc
    WHERE opened_day BETWEEN $first AND $last AND resolution_seconds IS NOT NULL
  UNION ALL
  SELECT 'throughput', resolved_day, g_agent, case_id FROM rc
    WHERE resolved_day BETWEEN $first AND $last
  UNION ALL
  SELECT 'backlog', d.day, rc.g_now, rc.case_id
    FROM spans s JOIN spine d ON d.day >= s.ds AND (s.de IS NULL OR d.day < s.de)
    JOIN rc USING (case_id))"""

# What matching_cases() takes: the hits' metrics. first_response / resolution are the cases
# behind a median; throughput groups by the assignee at resolution whatever `by` is.
METRICS = ("opened", "resolved", "backlog", "breached", "met", "reopened",
           "first_response", "resolution", "throughput")


def _params(spec: ReportSpec) -> tuple[str, dict]:
    """The WITH clause for the spec and its parameters; raises ValueError for a bad spec."""
    if spec.by in DIMENSIONS:
        kind, attr = spec.by, None
    elif spec.by.startswith("attr:") and spec.by[5:].strip():
        kind, attr = "attr", spec.by[5:].strip()
    else:
        raise ValueError(f"cannot group by {spec.by!r}: use one of {', '.join(DIMENSIONS)} "
                         "or attr:<Name>")
    if spec.last < spec.first:
        raise ValueError(f"the range ends ({spec.last}) before it starts ({spec.first})")
    if (spec.last - spec.first).days >= _MAX_DAYS:
        raise ValueError(f"a report covers at most {_MAX_DAYS} days")
    _check_zone(spec.time_zone)
    now, res = _GROUP_SQL[kind]
    sql = "WITH " + ",".join([
        _VISIBLE.format(now=now, res=res, agent_res=_AGENT_RES), _OPEN_SPANS, _SPINE, _HITS])
    params = {
        "tz": spec.time_zone, "first": spec.first, "last": spec.last,
        "all_queues": spec.queues is None, "queues": list(spec.queues or []),
        "open": list(OPEN_STATUSES),
    }
    if attr is not None:
        params["attr"] = attr
    return sql, params


_zones: frozenset[str] | None = None


def _check_zone(name: str) -> None:
    global _zones
    if _zones is None:
        # DuckDB's own (ICU) list: the zones timezone() converts with.
        import duckdb
        _zones = frozenset(z for (z,) in duckdb.connect().execute(
            "SELECT name FROM pg_timezone_names()").fetchall())
    if name not in _zones:
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as Europe/Paris")


def _groups_filter(spec: ReportSpec, column: str, params: dict) -> str:
    if spec.groups is None:
        return "TRUE"
    params["groups"] = [str(g) for g in spec.groups]
    return f"list_contains($groups, {column})"


def _fresh_at(store: Store) -> datetime | None:
    value = store.read_state().get("exported_at")
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def build(spec: ReportSpec) -> Report:
    """The report over the shared store's current snapshot."""
    with_sql, params = _params(spec)
    the_store = store.shared()
    db = the_store.snapshot().db.cursor()
    try:
        wanted = _groups_filter(spec, "grp", params)
        # Count every figure once per report; the tables below read this temporary table
        # (the cursor's own, gone when it closes).
        db.execute(f"""CREATE TEMP TABLE report_hits AS {with_sql}
                       SELECT h.metric, h.day, h.grp, h.case_id,
                              rc.first_response_seconds, rc.resolution_seconds
                       FROM hits h JOIN rc USING (case_id) WHERE {wanted}""", params)
        report = Report(spec=spec, fresh_at=_fresh_at(the_store))
        report.cases = db.execute(
            "SELECT count(*) FROM cases WHERE $all_queues OR list_contains($queues, queue)",
            {"all_queues": params["all_queues"], "queues": params["queues"]}).fetchall()[0][0]
        group_names = sorted(
            {g for (g,) in db.execute(
                "SELECT DISTINCT grp FROM report_hits WHERE metric <> 'throughput'").fetchall()}
            | set(spec.groups or ()), key=_group_order(spec))
        counts = {}
        for day, grp, metric, n in db.execute("""
                SELECT day, grp, metric, count(*) FROM report_hits
                WHERE metric IN ('opened', 'resolved', 'backlog')
                GROUP BY ALL""").fetchall():
            counts[(day, grp, metric)] = n
        day = spec.first
        while day <= spec.last:
            for grp in group_names:
                report.days.append(DayRow(
                    day, grp, counts.get((day, grp, "opened"), 0),
                    counts.get((day, grp, "resolved"), 0), counts.get((day, grp, "backlog"), 0)))
            day += timedelta(days=1)
        per_group = {}
        for grp, opened, resolved, met, breached, reopened, fr50, fr90, rs50, rs90 in db.execute("""
                SELECT h.grp,
                       count(*) FILTER (WHERE h.metric = 'opened'),
                       count(*) FILTER (WHERE h.metric = 'resolved'),
                       count(*) FILTER (WHERE h.metric = 'met'),
                       count(*) FILTER (WHERE h.metric = 'breached'),
                       count(*) FILTER (WHERE h.metric = 'reopened'),
                       quantile_cont(h.first_response_seconds, 0.5)
                         FILTER (WHERE h.metric = 'first_response'),
                       quantile_cont(h.first_response_seconds, 0.9)
                         FILTER (WHERE h.metric = 'first_response'),
                       quantile_cont(h.resolution_seconds, 0.5)
                         FILTER (WHERE h.metric = 'resolution'),
                       quantile_cont(h.resolution_seconds, 0.9)
                         FILTER (WHERE h.metric = 'resolution')
                FROM report_hits h
                WHERE h.metric NOT IN ('backlog', 'throughput')
                GROUP BY h.grp""").fetchall():
            per_group[grp] = GroupRow(
                grp, opened, resolved, fr50, fr90, rs50, rs90, met, breached,
                met / (met + breached) if met + breached else None,
                reopened, reopened / resolved if resolved else None)
        for grp in group_names:
            report.groups.append(per_group.get(grp) or GroupRow(
                grp, 0, 0, None, None, None, None, 0, 0, None, 0, None))
        report.agents = [AgentRow(agent, n) for agent, n in db.execute("""
                SELECT grp, count(*) FROM report_hits WHERE metric = 'throughput'
                GROUP BY grp ORDER BY count(*) DESC, grp""").fetchall()]
        return report
    finally:
        db.close()


def _group_order(spec: ReportSpec):
    if spec.by == "priority":
        return lambda g: (0, int(g)) if g.isdigit() else (1, g)
    return lambda g: (g == "(none)", g)


def matching_cases(spec: ReportSpec, metric: str, day: date | None, group: str | None,
                   limit: int = 500) -> list[dict]:
    """The cases behind one figure (a bar, a cell): `metric` is opened, resolved, backlog,
    breached, met, reopened; rows of the `cases` view as dicts, newest first."""
    if metric not in METRICS:
        raise ValueError(f"unknown figure {metric!r}: one of {', '.join(METRICS)}")
    with_sql, params = _params(spec)
    if day is not None and not spec.first <= day <= spec.last:
        return []
    params |= {"metric": metric, "day": day, "any_day": day is None,
               "group": group, "any_group": group is None, "limit": max(0, int(limit))}
    wanted = _groups_filter(spec, "h.grp", params)
    db = store.shared().snapshot().db.cursor()
    try:
        result = db.execute(f"""{with_sql}
            SELECT c.* FROM cases c WHERE c.case_id IN (
              SELECT h.case_id FROM hits h
              WHERE h.metric = $metric AND ($any_day OR h.day = $day)
                AND ($any_group OR h.grp = $group) AND {wanted})
            ORDER BY c.opened_at DESC, c.case_id LIMIT $limit""", params)
        names = [d[0] for d in result.description]
        return [dict(zip(names, row, strict=True)) for row in result.fetchall()]
    finally:
        db.close()
