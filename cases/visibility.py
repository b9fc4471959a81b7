"""Filters → Visibility query text. The only place query syntax is written.

Every value is validated by type and quoted here; user text is never spliced into a query.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from workers.model import STATUSES

# A case that continued as new leaves its earlier runs in Visibility; only the latest counts.
BASE = "WorkflowType = 'Case' AND ExecutionStatus != 'ContinuedAsNew'"


class InvalidFilter(ValueError):
    pass


def quote(value: str) -> str:
    """A Keyword/Text literal. Quotes and backslashes are escaped; control characters,
    which the parser cannot take inside a literal, are refused."""
    if not isinstance(value, str):
        raise InvalidFilter("Expected text.")
    if any(ord(ch) < 32 for ch in value):
        raise InvalidFilter("Control characters are not allowed in a filter.")
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _in(attribute: str, values: Sequence[str]) -> str:
    if len(values) == 1:
        return f"{attribute} = {quote(values[0])}"
    return f"{attribute} IN ({', '.join(quote(v) for v in values)})"


def _all(clauses: Iterable[str]) -> str:
    return " AND ".join(f"({c})" if " OR " in c else c for c in clauses)


@dataclass
class CaseFilter:
    statuses: list[str] = field(default_factory=list)
    queues: list[str] = field(default_factory=list)

    def clauses(self) -> list[str]:
        out = [BASE]
        if self.statuses:
            bad = [s for s in self.statuses if s not in STATUSES]
            if bad:
                raise InvalidFilter(f"Unknown status {bad[0]!r}.")
            out.append(_in("CaseStatus", self.statuses))
        if self.queues:
            out.append(_in("CaseQueue", self.queues))
        return out

    def query(self) -> str:
        return _all(self.clauses())
