"""A list page's results (one page of cases and the per-status counts), from the shared answers.

One home for the list's Visibility questions, asked by the list view and by the push streams
(cases/web/events.py), which render a changed list once for every tab that shows it.

Counts are the biggest spender (SQL visibility cannot GROUP BY a custom attribute: one Count per
status). When the list has no status filter and its first page holds every match (no next
page), the counts are the page's own rows tallied: no Count is asked at all. That is the usual
"my cases" list, the one list every agent has to themselves.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

from django.conf import settings

from cases import temporal
from cases.config.access import Access
from cases.live import answers
from cases.temporal.visibility import CaseFilter
from workers.model import STATUSES

Query = tuple[str, "answers.Matcher"]


@dataclass(frozen=True)
class Questions:
    """What a list asks Visibility: the page's List and one Count per status."""

    listing: Query
    counts: dict[str, Query]
    tally: bool  # counts may come from the page itself (no status filter)

    @property
    def key(self) -> tuple[str, ...]:
        """The same key for everyone who would get the same answers (the access rule is in
        the query text)."""
        return (self.listing[0], *(q for q, _ in self.counts.values()))


def questions(case_filter: CaseFilter, access: Access) -> Questions:
    """Raises InvalidFilter. Counts ignore the status filter so every chip shows its number;
    each query comes with its filter read in Python so the change feed keeps answers fresh."""
    me, visible = access.username, access.visible_queues
    base = case_filter.without_statuses()

    def pair(f: CaseFilter) -> Query:
        return f.query(me, visible), partial(f.matches, me=me, visible_queues=visible)

    return Questions(pair(case_filter), {s: pair(replace(base, statuses=[s])) for s in STATUSES},
                     tally=not case_filter.statuses)


@dataclass
class Results:
    page: temporal.CasePage
    counts: dict[str, int]


async def results(asked: Questions, page_token: str | None = None, *,
                  defer_counts: bool = False, counts_only: bool = False) -> Results:
    """`defer_counts`: leave `counts` empty unless the page itself tallies them (the first
    paint of a list waits for its rows only); `counts_only`: the Counts, no page."""
    if counts_only:
        return Results(temporal.CasePage(rows=[], next_page_token=None), await _counts(asked))
    query, matches = asked.listing
    list_call = answers.list_cases(query, settings.CASE_PAGE_SIZE, page_token, matches=matches)
    if asked.tally and not page_token:
        page = await list_call
        if not page.next_page_token:
            counts = dict.fromkeys(STATUSES, 0)
            for row in page.rows:
                if row.status in counts:
                    counts[row.status] += 1
            return Results(page, counts)
        return Results(page, {} if defer_counts else await _counts(asked))
    if defer_counts:
        return Results(await list_call, {})
    page, counts = await asyncio.gather(list_call, _counts(asked))
    return Results(page, counts)


async def _counts(asked: Questions) -> dict[str, Any]:
    return await answers.count_many({s: q for s, (q, _) in asked.counts.items()},
                                    matchers={s: m for s, (_, m) in asked.counts.items()})
