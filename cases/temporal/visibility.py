"""Filters → Visibility query text. The only place query syntax is written.

Every value is validated by type and quoted here; user text never becomes query syntax.
What the server was measured to choke on decides the rules below: a double quote inside a
KeywordList or Text literal and control characters anywhere give "SQL logic error" (reported as
UNAVAILABLE, which clients retry), so those never reach it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from cases.temporal.ids import CASE_ID_RE
from workers.model import STATUSES
from workers.rules import ATTRIBUTE_NAME_RE, QUEUE_RE, TAG_RE, USERNAME_RE

# A case that continued as new leaves its earlier runs in Visibility; only the latest counts.
BASE = "WorkflowType = 'Case' AND ExecutionStatus != 'ContinuedAsNew'"
# Matches no case (queues are never empty): for people who may see no queue at all.
NOTHING = "CaseQueue = ''"
MAX_WORDS = 8
MAX_WORD = 64
# Letters and digits; everything else (underscore included) separates words, as the index does.
WORD_RE = re.compile(r"[^\W_]+")

ANYONE, ME, UNASSIGNED = "", "me", "none"

# Which workflow executions a list shows: (label, clause). "Ended" is every closed status but
# ContinuedAsNew, which BASE already leaves out.
EXECUTIONS: dict[str, tuple[str, str]] = {
    "live": ("Live", "ExecutionStatus = 'Running'"),
    "ended": ("Ended", "ExecutionStatus != 'Running'"),
    "completed": ("Completed", "ExecutionStatus = 'Completed'"),
    "stopped": ("Terminated, failed or timed out",
                "ExecutionStatus IN ('Terminated', 'Failed', 'TimedOut', 'Canceled')"),
}


class InvalidFilter(ValueError):
    pass


def quote(value: str) -> str:
    """A Keyword literal: backslashes and single quotes escaped, control characters refused."""
    if not isinstance(value, str):
        raise InvalidFilter("Expected text.")
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise InvalidFilter("Control characters are not allowed in a filter.")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise InvalidFilter("A time needs a time zone.")
    return quote(value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))


def title_words(text: str) -> list[str]:
    """The whole words of a title search; punctuation separates words, as the index does."""
    words = list(dict.fromkeys(w.lower() for w in WORD_RE.findall(text)))
    if len(words) > MAX_WORDS:
        raise InvalidFilter(f"Search at most {MAX_WORDS} words.")
    if any(len(w) > MAX_WORD for w in words):
        raise InvalidFilter(f"A search word has at most {MAX_WORD} characters.")
    return words


def _in(attribute: str, values: Sequence[str]) -> str:
    if len(values) == 1:
        return f"{attribute} = {quote(values[0])}"
    return f"{attribute} IN ({', '.join(quote(v) for v in values)})"


@dataclass
class CaseFilter:
    """What a person can filter the case list by. Empty means "any"."""

    statuses: list[str] = field(default_factory=list)
    priorities: list[int] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    assignee: str = ANYONE  # ANYONE, ME, UNASSIGNED or a username
    tag: str = ""
    breached: bool | None = None
    due_before: date | None = None
    words: str = ""
    opened_from: date | None = None
    opened_to: date | None = None  # inclusive
    due_within_hours: int | None = None  # due between now and now + N hours
    older_than_days: int | None = None  # opened more than N days ago
    # The workflow execution: "" any, or a key of EXECUTIONS (live, ended, completed...).
    execution: str = ""
    closed_from: date | None = None
    closed_to: date | None = None  # inclusive
    # Registered custom attributes: name -> (type name, value). Built by the form from the
    # registry, so names and types are known ones.
    attributes: dict[str, tuple[str, Any]] = field(default_factory=dict)

    def without_statuses(self) -> CaseFilter:
        return replace(self, statuses=[])

    def clauses(self, me: str = "", visible_queues: Sequence[str] | None = None,
                now: datetime | None = None) -> list[str]:
        """Query clauses; `visible_queues` (None = all) is the access rule, always applied.
        Relative filters count from `now`, floored to the minute so that identical filters
        give identical query text (and share one cached answer) for a minute."""
        now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
        out = [BASE]
        if visible_queues is not None:
            allowed = [q for q in visible_queues if QUEUE_RE.match(q)]
            out.append(_in("CaseQueue", allowed) if allowed else NOTHING)
        if self.statuses:
            if not set(self.statuses) <= set(STATUSES):
                raise InvalidFilter("Unknown status.")
            out.append(_in("CaseStatus", sorted(set(self.statuses), key=STATUSES.index)))
        if self.priorities:
            if not set(self.priorities) <= {1, 2, 3, 4}:
                raise InvalidFilter("Priority is 1 to 4.")
            values = sorted(set(self.priorities))
            out.append(
                f"CasePriority = {values[0]}" if len(values) == 1
                else f"CasePriority IN ({', '.join(str(int(p)) for p in values)})"
            )
        if self.queues:
            if not all(QUEUE_RE.match(q) for q in self.queues):
                raise InvalidFilter("Unknown queue.")
            out.append(_in("CaseQueue", sorted(set(self.queues))))
        if self.assignee == UNASSIGNED:
            out.append("CaseAssignee IS NULL")
        elif self.assignee == ME:
            if not USERNAME_RE.match(me):
                raise InvalidFilter("Log in to filter by your own cases.")
            out.append(f"CaseAssignee = {quote(me)}")
        elif self.assignee:
            if not USERNAME_RE.match(self.assignee):
                raise InvalidFilter("That is not a username.")
            out.append(f"CaseAssignee = {quote(self.assignee)}")
        if self.tag:
            if len(self.tag) > 40 or not TAG_RE.match(self.tag):
                raise InvalidFilter("A tag uses letters, digits, '-', '_' and '.'.")
            out.append(f"CaseTags = {quote(self.tag)}")
        if self.breached is not None:
            out.append(f"CaseSlaBreached = {'true' if self.breached else 'false'}")
        if self.due_before is not None:
            moment = datetime.combine(self.due_before, time.min, tzinfo=UTC)
            out.append(f"CaseDueAt < {quote_time(moment)}")
        # Each word its own clause: a Text match is "any word", a person means "all words".
        out.extend(f"CaseTitle = {quote(word)}" for word in title_words(self.words))
        out.extend(_day_range("StartTime", self.opened_from, self.opened_to))
        if self.due_within_hours is not None:
            hours = _bounded(self.due_within_hours, 1, 24 * 365, "Hours")
            out.append(f"CaseDueAt BETWEEN {quote_time(now)} AND "
                       f"{quote_time(now + timedelta(hours=hours))}")
        if self.older_than_days is not None:
            days = _bounded(self.older_than_days, 1, 3650, "Days")
            out.append(f"StartTime < {quote_time(now - timedelta(days=days))}")
        if self.execution:
            if self.execution not in EXECUTIONS:
                raise InvalidFilter("Unknown case state.")
            out.append(EXECUTIONS[self.execution][1])
        out.extend(_day_range("CloseTime", self.closed_from, self.closed_to))
        for name, (kind, value) in sorted(self.attributes.items()):
            out.extend(attribute_clauses(name, kind, value))
        return out

    def query(self, me: str = "", visible_queues: Sequence[str] | None = None,
              now: datetime | None = None) -> str:
        return " AND ".join(self.clauses(me, visible_queues, now))

    def status_query(self, status: str, me: str = "",
                     visible_queues: Sequence[str] | None = None) -> str:
        return replace(self, statuses=[status]).query(me, visible_queues)

    def matches(self, row: Any, me: str = "", visible_queues: Sequence[str] | None = None
                ) -> bool | None:
        """Would `query(me, visible_queues)` list this Visibility row? The same filter read
        in Python, for the change feed (which cached answers a changed case touches, which
        open screens it concerns). None where only the index can tell (title words, custom
        attributes, relative times): callers treat that as "maybe"."""
        try:
            return self._matches(row, me, visible_queues)
        except (TypeError, AttributeError, ValueError, OverflowError):
            # A field of a type no row should have (one kept in the shared store by an
            # older version, say): the feed reads it as "maybe" and carries on.
            return None

    def _matches(self, row: Any, me: str, visible_queues: Sequence[str] | None
                 ) -> bool | None:
        if row.execution_status == "continued_as_new":
            return False
        if visible_queues is not None and row.queue not in visible_queues:
            return False
        checks: list[bool] = [
            not self.statuses or row.status in self.statuses,
            not self.priorities or row.priority in self.priorities,
            not self.queues or row.queue in self.queues,
            not self.tag or self.tag in row.tags,
            self.breached is None or row.sla_breached == self.breached,
        ]
        if self.assignee == UNASSIGNED:
            checks.append(row.assignee is None)
        elif self.assignee == ME:
            checks.append(row.assignee == me)
        elif self.assignee:
            checks.append(row.assignee == self.assignee)
        if self.due_before is not None:
            moment = datetime.combine(self.due_before, time.min, tzinfo=UTC)
            checks.append(row.due_at is not None and row.due_at < moment)
        if self.execution:
            running = row.execution_status == "running"
            checks.append({"live": running, "ended": not running,
                           "completed": row.execution_status == "completed"}.get(
                               self.execution, not running and row.execution_status
                               != "completed"))
        for moment, first, last in ((row.started_at, self.opened_from, self.opened_to),
                                    (row.closed_at, self.closed_from, self.closed_to)):
            if first is None and last is None:
                continue
            day = moment.astimezone(UTC).date() if moment is not None else None
            checks.append(day is not None and (first is None or day >= first)
                          and (last is None or day <= last))
        if not all(checks):
            return False  # one certain mismatch settles it
        if (self.words or self.attributes or self.due_within_hours is not None
                or self.older_than_days is not None):
            return None
        return True


def changed_since_query(moment: datetime) -> str:
    """The change feed's question: every case (its latest run) changed at or after `moment`."""
    return f"{BASE} AND CaseUpdatedAt >= {quote_time(moment)}"


def _day_range(attribute: str, first: date | None, last: date | None) -> list[str]:
    """Clauses for whole UTC days from `first` to `last`, both included."""
    if first is not None and last is not None and first > last:
        raise InvalidFilter("The range ends before it starts.")
    out = []
    if first is not None:
        out.append(f"{attribute} >= {quote_time(datetime.combine(first, time.min, tzinfo=UTC))}")
    if last is not None:
        end = datetime.combine(last + timedelta(days=1), time.min, tzinfo=UTC)
        out.append(f"{attribute} < {quote_time(end)}")
    return out


MAX_ARCHIVE_DAYS = 31


def archived_queries(archive_uri: str, case_id: str, closed_from: date | None,
                     closed_to: date | None) -> list[str]:
    """ListArchivedWorkflowExecutions queries for one search. Each archiver parses its own
    small language (docs/archival.md): filestore takes CloseTime ranges; S3 and GCS take one
    CloseTime with a SearchPrecision, so a range becomes one query per UTC day. None takes
    BETWEEN, OR or !=."""
    if case_id and not CASE_ID_RE.match(case_id):
        raise InvalidFilter("A case id looks like case-7K2M9QXA.")
    who = f"WorkflowId = {quote(case_id)}" if case_id else "WorkflowType = 'Case'"
    if archive_uri.startswith("file://") or not archive_uri:
        return [" AND ".join([who, *_day_range("CloseTime", closed_from, closed_to)])]
    if closed_from is None and closed_to is None:
        if archive_uri.startswith("gs://"):
            raise InvalidFilter("This archive (Google Cloud Storage) is searched by close "
                                "date: give a close-time range.")
        return [who]
    first = closed_from or closed_to
    last = closed_to or closed_from
    assert first is not None and last is not None
    if first > last:
        raise InvalidFilter("The range ends before it starts.")
    days = (last - first).days + 1
    if days > MAX_ARCHIVE_DAYS:
        raise InvalidFilter(f"This archive is searched day by day: at most {MAX_ARCHIVE_DAYS} "
                            "days at a time.")
    return [f"{who} AND CloseTime = "
            f"{quote_time(datetime.combine(first + timedelta(days=n), time.min, tzinfo=UTC))}"
            " AND SearchPrecision = 'Day'" for n in range(days)]


def _bounded(value: int, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidFilter(f"{what} must be a whole number from {low} to {high}.")
    return value


def attribute_clauses(name: str, kind: str, value: Any) -> list[str]:
    """Clauses for one custom attribute, by its registered type."""
    if not ATTRIBUTE_NAME_RE.match(name):
        raise InvalidFilter("Unknown attribute.")
    if kind == "Text":
        return [f"{name} = {quote(word)}" for word in title_words(str(value))]
    if kind == "Keyword":
        return [f"{name} = {quote(str(value))}"]
    if kind == "KeywordList":
        text = str(value)
        if '"' in text:  # the server cannot take a double quote in a KeywordList literal
            raise InvalidFilter('A value cannot contain ".')
        return [f"{name} = {quote(text)}"]
    if kind == "Int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidFilter("Expected a whole number.")
        return [f"{name} = {int(value)}"]
    if kind == "Double":
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
            raise InvalidFilter("Expected a number.")
        return [f"{name} = {float(value)!r}"]
    if kind == "Bool":
        if not isinstance(value, bool):
            raise InvalidFilter("Expected yes or no.")
        return [f"{name} = {'true' if value else 'false'}"]
    if kind == "Datetime":
        if not isinstance(value, date):
            raise InvalidFilter("Expected a date.")
        moment = datetime.combine(value, time.min, tzinfo=UTC) if not isinstance(
            value, datetime) else value
        return [f"{name} < {quote_time(moment)}"]
    raise InvalidFilter("Unknown attribute type.")
