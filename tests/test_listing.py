"""A list page's questions (cases/live/listing.py): the chips' counts from the page itself."""

from __future__ import annotations

import time

from cases import temporal as gateway
from cases.config.access import ADMIN, Access
from cases.live import listing
from cases.temporal.visibility import CaseFilter

from .conftest import eventually, listed, run


def test_a_list_whose_first_page_holds_every_match_counts_its_chips_from_its_rows(
        open_case, monkeypatch, temporal):
    word = f"tally{time.time_ns() % 10**9}"
    for n in range(3):
        open_case(title=f"{word} printer {n}", queue="general")
    eventually(lambda: listed(3, word))
    counted: list[str] = []
    real = gateway.count_cases

    async def counting(query: str) -> int:
        counted.append(query)
        return await real(query)

    monkeypatch.setattr(gateway, "count_cases", counting)
    access = Access("tests", ADMIN, None)
    found = run(listing.results(listing.questions(CaseFilter(words=word), access)))
    assert len(found.page.rows) == 3 and found.page.next_page_token is None
    assert found.counts["new"] == 3 and sum(found.counts.values()) == 3
    assert counted == []  # tallied from the page: no Count asked
    # With a status filter the chips count what the page does not show: Counts are asked.
    found = run(listing.results(listing.questions(
        CaseFilter(words=word, statuses=["waiting"]), access)))
    assert found.page.rows == [] and found.counts["new"] == 3 and counted
