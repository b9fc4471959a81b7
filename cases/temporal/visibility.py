"""Filters → Visibility query text. The only place query syntax is written.

Every value is validated by type and quoted here; user text never becomes query syntax.
What the server was measured to choke on decides the rules below: a double quote inside a
KeywordList or Text literal and control characters anywhere give "SQL logic error" (reported as
UNAVAILABLE, which clients retry), so those never reach it.

A filter is read two ways: as Visibility clauses (`CaseFilter.query`) and in Python
(`CaseFilter.matches`, for the change feed to keep cached answers fresh). Both readings of a
field sit side by side in one row of `FIELDS` (and, for admin-registered attributes, of
`ATTRIBUTE_KINDS`), and tests/test_filter_table.py proves on real Visibility that they agree
for every row of both tables. A new filter is one row there and a form field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from cases.temporal.ids import CASE_ID_RE
from workers.model import STATUSES
from workers.rules import ATTRIBUTE_NAME_RE, MAX_TAG, QUEUE_RE, TAG_RE, USERNAME_RE

# A case that continued as new leaves its earlier runs in Visibility; only the latest counts.
BASE = "WorkflowType = 'Case' AND ExecutionStatus != 'ContinuedAsNew'"
# Matches no case (queues are never empty): for people who may see no queue at all.
NOTHING = "CaseQueue = ''"
MAX_WORDS = 8
MAX_WORD = 64
# Letters and digits; everything else (underscore included) separates words, as the index does.
WORD_RE = re.compile(r"[^\W_]+")

ANYONE, ME, UNASSIGNED = "", "me", "none"


@dataclass(frozen=True)
class Execution:
    label: str
    clause: str
    # The same question asked of a row's execution status (as gateway names it).
    holds: Callable[[str], bool]


_STOPPED = frozenset({"terminated", "failed", "timed_out", "canceled"})

# Which workflow executions a list shows. "Ended" is every closed status but ContinuedAsNew,
# which BASE already leaves out.
EXECUTIONS: dict[str, Execution] = {
    "live": Execution("Live", "ExecutionStatus = 'Running'", lambda s: s == "running"),
    "ended": Execution("Ended", "ExecutionStatus != 'Running'", lambda s: s != "running"),
    "completed": Execution("Completed", "ExecutionStatus = 'Completed'",
                           lambda s: s == "completed"),
    "stopped": Execution("Terminated, failed or timed out",
                         "ExecutionStatus IN ('Terminated', 'Failed', 'TimedOut', 'Canceled')",
                         lambda s: s in _STOPPED),
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


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


def _day(moment: datetime | None) -> date | None:
    return moment.astimezone(UTC).date() if moment is not None else None


def _bounded(value: int, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidFilter(f"{what} must be a whole number from {low} to {high}.")
    return value


# --- the table -------------------------------------------------------------------------------


# What a scope's `now` is when nothing is relative to it (reading a row in Python).
_NO_TIME = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class Scope:
    """What a filter is read against besides its own values: who asks, and when (floored to
    the minute, so identical filters give identical query text for a minute)."""

    me: str = ""
    now: datetime = _NO_TIME


def _never(value: Any) -> bool:
    return False


def _always(value: Any) -> bool:
    return True


@dataclass(frozen=True)
class Field:
    """One filter field, read both ways. `clauses` validates the value (InvalidFilter) and
    writes it as Visibility clauses; `holds` says whether a row satisfies it: True, False, or
    None where only the index can tell, which `index_only(value)` must then admit."""

    name: str  # the CaseFilter attribute
    param: str | None  # its name in URLs and saved views (None: the form builds it otherwise)
    clauses: Callable[[Any, Scope], list[str]]
    holds: Callable[[Any, Any, Scope], bool | None]
    # A person's input, as the form cleaned it → the filter's value (InvalidFilter if wrong).
    parse: Callable[[Any], Any] = lambda value: value
    index_only: Callable[[Any], bool] = _never


def _statuses(values: list[str], scope: Scope) -> list[str]:
    if not set(values) <= set(STATUSES):
        raise InvalidFilter("Unknown status.")
    return [_in("CaseStatus", sorted(set(values), key=STATUSES.index))]


def _priorities(values: list[int], scope: Scope) -> list[str]:
    if not all(isinstance(p, int) and not isinstance(p, bool) for p in values) \
            or not set(values) <= {1, 2, 3, 4}:
        raise InvalidFilter("Priority is 1 to 4.")
    ordered = sorted(set(values))
    if len(ordered) == 1:
        return [f"CasePriority = {ordered[0]}"]
    return [f"CasePriority IN ({', '.join(str(p) for p in ordered)})"]


def _queues(values: list[str], scope: Scope) -> list[str]:
    if not all(isinstance(q, str) and QUEUE_RE.match(q) for q in values):
        raise InvalidFilter("Unknown queue.")
    return [_in("CaseQueue", sorted(set(values)))]


def _who(assignee: str, scope: Scope) -> str | None:
    """The username an assignee filter names (None: unassigned)."""
    if assignee == UNASSIGNED:
        return None
    if assignee == ME:
        if not USERNAME_RE.match(scope.me):
            raise InvalidFilter("Log in to filter by your own cases.")
        return scope.me
    if not USERNAME_RE.match(assignee):
        raise InvalidFilter("That is not a username.")
    return assignee


def _assignee(value: str, scope: Scope) -> list[str]:
    who = _who(value, scope)
    return ["CaseAssignee IS NULL" if who is None else f"CaseAssignee = {quote(who)}"]


def _parse_assignee(value: str | None) -> str:
    text = (value or "").strip()
    if text.lower() in ("", "anyone", "any"):
        return ANYONE
    if text.lower() in ("none", "unassigned"):
        return UNASSIGNED
    if text.lower() == "me":
        return ME
    if not USERNAME_RE.match(text):
        raise InvalidFilter("That is not a username.")
    return text


def _tag(value: str, scope: Scope) -> list[str]:
    if len(value) > MAX_TAG or not TAG_RE.match(value):
        raise InvalidFilter("A tag uses letters, digits, '-', '_' and '.'.")
    return [f"CaseTags = {quote(value)}"]


def _parse_tag(value: str | None) -> str:
    text = (value or "").strip()
    if text:
        _tag(text, Scope())
    return text


def _words(value: str, scope: Scope) -> list[str]:
    # Each word its own clause: a Text match is "any word", a person means "all words".
    return [f"CaseTitle = {quote(word)}" for word in title_words(value)]


def _words_hold(words: str, text: Any) -> bool | None:
    """Text words are matched by the index's tokenizer, which folds case and diacritics: only
    the certain answers are given here (no words asks nothing; an unset value holds none)."""
    if not title_words(words):
        return True
    return False if text is None else None


def _parse_words(value: str | None) -> str:
    title_words(value or "")
    return value or ""


def _due_within(hours: int, scope: Scope) -> list[str]:
    hours = _bounded(hours, 1, 24 * 365, "Hours")
    return [f"CaseDueAt BETWEEN {quote_time(scope.now)} AND "
            f"{quote_time(scope.now + timedelta(hours=hours))}"]


def _older_than(days: int, scope: Scope) -> list[str]:
    days = _bounded(days, 1, 3650, "Days")
    return [f"StartTime < {quote_time(scope.now - timedelta(days=days))}"]


def _execution(value: str, scope: Scope) -> list[str]:
    if value not in EXECUTIONS:
        raise InvalidFilter("Unknown case state.")
    return [EXECUTIONS[value].clause]


def _is_date(value: Any) -> date:
    # A datetime is a date too, and would shift the day boundary to its own time of day.
    if not isinstance(value, date) or isinstance(value, datetime):
        raise InvalidFilter("Expected a date.")
    return value


def _first_day(name: str, attribute: str, row_time: Callable[[Any], datetime | None]
               ) -> Field:
    """A range's first day, included (whole UTC days, as the index compares instants)."""
    return Field(name, name, lambda v, s: _day_range(attribute, _is_date(v), None),
                 lambda v, row, s: (day := _day(row_time(row))) is not None and day >= v)


def _last_day(name: str, attribute: str, row_time: Callable[[Any], datetime | None]
              ) -> Field:
    """A range's last day, included."""
    return Field(name, name, lambda v, s: _day_range(attribute, None, _is_date(v)),
                 lambda v, row, s: (day := _day(row_time(row))) is not None and day <= v)


# --- admin-registered attributes, one row per Temporal type -----------------------------------


@dataclass(frozen=True)
class AttributeKind:
    """How a filter on one custom attribute of this type reads, both ways. `holds` gets the
    row's raw value (None when unset) and answers None for a value not of this type (an
    attribute registered in Temporal as another type than the app thinks)."""

    clauses: Callable[[str, Any], list[str]]
    holds: Callable[[Any, Any], bool | None]
    index_only: bool = False


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text_clauses(name: str, value: Any) -> list[str]:
    return [f"{name} = {quote(word)}" for word in title_words(str(value))]


def _keyword_list_clauses(name: str, value: Any) -> list[str]:
    text = str(value)
    if '"' in text:  # the server cannot take a double quote in a KeywordList literal
        raise InvalidFilter('A value cannot contain ".')
    return [f"{name} = {quote(text)}"]


def _int_clauses(name: str, value: Any) -> list[str]:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidFilter("Expected a whole number.")
    return [f"{name} = {int(value)}"]


def _double_clauses(name: str, value: Any) -> list[str]:
    if not _number(value) or value != value:
        raise InvalidFilter("Expected a number.")
    return [f"{name} = {float(value)!r}"]


def _bool_clauses(name: str, value: Any) -> list[str]:
    if not isinstance(value, bool):
        raise InvalidFilter("Expected yes or no.")
    return [f"{name} = {'true' if value else 'false'}"]


def _before_moment(value: Any) -> datetime:
    if not isinstance(value, date):
        raise InvalidFilter("Expected a date.")
    return value if isinstance(value, datetime) else _midnight(value)


def _datetime_holds(raw: Any, value: Any) -> bool | None:
    if raw is None:
        return False
    if not isinstance(raw, str):
        return None
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return None if moment.tzinfo is None else moment < _before_moment(value)


def _typed(kind: Callable[[Any], bool], test: Callable[[Any, Any], bool]
           ) -> Callable[[Any, Any], bool | None]:
    """Unset never matches; a value of another type is the index's to judge."""
    return lambda raw, value: False if raw is None else (test(raw, value) if kind(raw) else None)


ATTRIBUTE_KINDS: dict[str, AttributeKind] = {
    # Text is matched word by word by the index's tokenizer (folding case and diacritics).
    "Text": AttributeKind(_text_clauses, lambda raw, value: _words_hold(str(value), raw),
                          index_only=True),
    "Keyword": AttributeKind(lambda n, v: [f"{n} = {quote(str(v))}"],
                             _typed(lambda r: isinstance(r, str), lambda r, v: r == str(v))),
    # `= x` on a KeywordList means "holds x".
    "KeywordList": AttributeKind(_keyword_list_clauses,
                                 _typed(lambda r: isinstance(r, list), lambda r, v: str(v) in r)),
    "Int": AttributeKind(_int_clauses,
                         _typed(lambda r: _number(r) and float(r).is_integer(),
                                lambda r, v: int(r) == v)),
    "Double": AttributeKind(_double_clauses, _typed(_number, lambda r, v: float(r) == float(v))),
    "Bool": AttributeKind(_bool_clauses, _typed(lambda r: isinstance(r, bool),
                                                lambda r, v: r is v)),
    # A date filter on a Datetime means "before that day".
    "Datetime": AttributeKind(lambda n, v: [f"{n} < {quote_time(_before_moment(v))}"],
                              _datetime_holds),
}


def attribute_clauses(name: str, kind: str, value: Any) -> list[str]:
    """Clauses for one custom attribute, by its registered type."""
    if not isinstance(name, str) or not ATTRIBUTE_NAME_RE.match(name):
        raise InvalidFilter("Unknown attribute.")
    if kind not in ATTRIBUTE_KINDS:
        raise InvalidFilter("Unknown attribute type.")
    return ATTRIBUTE_KINDS[kind].clauses(name, value)


def _attributes(values: dict[str, tuple[str, Any]], scope: Scope) -> list[str]:
    return [c for name, (kind, value) in sorted(values.items())
            for c in attribute_clauses(name, kind, value)]


def _attributes_hold(values: dict[str, tuple[str, Any]], row: Any, scope: Scope
                     ) -> bool | None:
    return _all(ATTRIBUTE_KINDS[kind].holds(row.attributes.get(name), value)
                for name, (kind, value) in values.items())


def _all(verdicts: Any) -> bool | None:
    """Three-valued AND: one certain mismatch settles it; otherwise any "maybe" is "maybe"."""
    out: bool | None = True
    for verdict in verdicts:
        if verdict is False:
            return False
        if verdict is None:
            out = None
    return out


def _started(row: Any) -> datetime | None:
    return row.started_at


def _closed(row: Any) -> datetime | None:
    return row.closed_at


# In the order of the list form's parameters, which is the order of URLs and saved views.
FIELDS: tuple[Field, ...] = (
    # Words are matched by the index's tokenizer (folding case and diacritics).
    Field("words", "q", _words, lambda v, row, s: _words_hold(v, row.title),
          parse=_parse_words, index_only=_always),
    Field("statuses", "status", _statuses, lambda v, row, s: row.status in v,
          parse=lambda v: list(v or [])),
    Field("priorities", "priority", _priorities, lambda v, row, s: row.priority in v,
          parse=lambda v: list(v or [])),
    Field("queues", "queue", _queues, lambda v, row, s: row.queue in v,
          parse=lambda v: list(v or [])),
    Field("assignee", "assignee", _assignee,
          lambda v, row, s: row.assignee == _who(v, s), parse=_parse_assignee),
    Field("tag", "tag", _tag, lambda v, row, s: v in row.tags, parse=_parse_tag),
    Field("breached", "breached", lambda v, s: _bool_clauses("CaseSlaBreached", v),
          lambda v, row, s: row.sla_breached is v),
    # Flagged by the case's at-risk timer (issue 17); the workflow unsets it once not open.
    Field("at_risk", "at_risk", lambda v, s: _bool_clauses("CaseAtRisk", v),
          lambda v, row, s: row.at_risk is v),
    Field("due_before", "due_before",
          lambda v, s: [f"CaseDueAt < {quote_time(_midnight(_is_date(v)))}"],
          lambda v, row, s: row.due_at is not None and row.due_at < _midnight(v)),
    # Relative to a `now` that the feed, judging a row later, does not share.
    Field("due_within_hours", "due_within", _due_within, lambda v, row, s: None,
          index_only=_always),
    Field("older_than_days", "older_than", _older_than, lambda v, row, s: None,
          index_only=_always),
    _first_day("opened_from", "StartTime", _started),
    _last_day("opened_to", "StartTime", _started),
    Field("execution", "execution", _execution,
          lambda v, row, s: EXECUTIONS[v].holds(row.execution_status)),
    _first_day("closed_from", "CloseTime", _closed),
    _last_day("closed_to", "CloseTime", _closed),
    # Built by the form from the attribute registry (names and types are known ones).
    Field("attributes", None, _attributes, _attributes_hold,
          index_only=lambda v: any(ATTRIBUTE_KINDS[k].index_only for k, _ in v.values())),
)
# Filter parameters, as they appear in URLs and saved views.
PARAMS = tuple(f.param for f in FIELDS if f.param)
# Day ranges whose ends are two fields; a range that ends before it starts is a mistake.
_RANGES = (("opened_from", "opened_to"), ("closed_from", "closed_to"))


def _given(value: Any) -> bool:
    """A field left at "any" (False is a value: "not breached")."""
    return value is not None and not (isinstance(value, str | list | dict) and not value)


@dataclass
class CaseFilter:
    """What a person can filter the case list by. Empty means "any". Each attribute is a row
    of FIELDS, which says how it is queried and matched."""

    statuses: list[str] = field(default_factory=list)
    priorities: list[int] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)
    assignee: str = ANYONE  # ANYONE, ME, UNASSIGNED or a username
    tag: str = ""
    breached: bool | None = None
    at_risk: bool | None = None
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

    def given(self) -> list[tuple[Field, Any]]:
        """The fields this filter sets, with their values, in the table's order."""
        return [(f, v) for f in FIELDS if _given(v := getattr(self, f.name))]

    def without_statuses(self) -> CaseFilter:
        return replace(self, statuses=[])

    def clauses(self, me: str = "", visible_queues: Sequence[str] | None = None,
                now: datetime | None = None) -> list[str]:
        """Query clauses; `visible_queues` (None = all) is the access rule, always applied.
        Relative filters count from `now`, floored to the minute so that identical filters
        give identical query text (and share one cached answer) for a minute."""
        scope = Scope(me, (now or datetime.now(UTC)).replace(second=0, microsecond=0))
        out = [BASE]
        if visible_queues is not None:
            allowed = [q for q in visible_queues if QUEUE_RE.match(q)]
            out.append(_in("CaseQueue", allowed) if allowed else NOTHING)
        for first, last in _RANGES:
            start, end = getattr(self, first), getattr(self, last)
            if start is not None and end is not None and start > end:
                raise InvalidFilter("The range ends before it starts.")
        for f, value in self.given():
            out.extend(f.clauses(value, scope))
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
        open screens it concerns). None where only the index can tell (title words, Text
        attributes, relative times): callers treat that as "maybe"."""
        scope = Scope(me)
        try:
            if row.execution_status == "continued_as_new":
                return False
            if visible_queues is not None and row.queue not in visible_queues:
                return False
        except (TypeError, AttributeError):
            return None
        return _all(_holds(f, value, row, scope) for f, value in self.given())


def _holds(f: Field, value: Any, row: Any, scope: Scope) -> bool | None:
    try:
        return f.holds(value, row, scope)
    except (TypeError, AttributeError, ValueError, OverflowError, KeyError):
        # A field of a type no row should have (one kept in the shared store by an older
        # version, say), or a filter value the query would refuse: "maybe", and carry on.
        return None


def cases_query(case_ids: Sequence[str], visible_queues: Sequence[str] | None = None) -> str:
    """These cases (each one's latest run) that the reader may see: one List for a page that
    names many cases, such as the inbox's titles. Ids that are not case ids are refused."""
    ids = sorted(set(case_ids))
    if not ids or not all(isinstance(c, str) and CASE_ID_RE.match(c) for c in ids):
        raise InvalidFilter("A case id looks like case-7K2M9QXA.")
    return " AND ".join([*CaseFilter().clauses(visible_queues=visible_queues),
                         _in("WorkflowId", ids)])


def changed_since_query(moment: datetime) -> str:
    """The change feed's question: every case (its latest run) changed at or after `moment`."""
    return f"{BASE} AND CaseUpdatedAt >= {quote_time(moment)}"


def changed_for_export_query(moment: datetime | None) -> str:
    """The case export's question (cases/analytics/exporter.py): every case (its latest run)
    changed or closed at or after `moment`, all of them when None. CloseTime too: a case
    terminated (or timed out) from outside never updates CaseUpdatedAt."""
    if moment is None:
        return BASE
    at = quote_time(moment)
    return f"{BASE} AND (CaseUpdatedAt >= {at} OR CloseTime >= {at})"


def _day_range(attribute: str, first: date | None, last: date | None) -> list[str]:
    """Clauses for whole UTC days from `first` to `last`, both included."""
    if first is not None and last is not None and first > last:
        raise InvalidFilter("The range ends before it starts.")
    out = []
    if first is not None:
        out.append(f"{attribute} >= {quote_time(_midnight(first))}")
    if last is not None:
        out.append(f"{attribute} < {quote_time(_midnight(last + timedelta(days=1)))}")
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
    return [f"{who} AND CloseTime = {quote_time(_midnight(first + timedelta(days=n)))}"
            " AND SearchPrecision = 'Day'" for n in range(days)]
