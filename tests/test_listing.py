"""A list page's questions (cases/live/listing.py): the chips' counts from the page itself."""

from __future__ import annotations

import time

from cases import temporal as gateway
from cases.config.access import ADMIN, Access
from cases.live import answers, listing
from cases.temporal.visibility import CaseFilter

from .conftest import eventually, listed, run
from .test_feed import quick_feed  # noqa: F401  (a fixture)


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


def test_a_second_list_load_after_no_change_asks_visibility_no_count(
        quick_feed, supervisor_client, open_case, temporal):  # noqa: F811
    """Issue 26: the status chips' Counts are kept under the feed position like the rows, so
    a list that nobody changed costs no Count however often it is loaded, even with no
    time-based sharing at all (the tests' and benches' VISIBILITY_CACHE_SECONDS=0)."""
    import re

    from django.conf import settings

    from .conftest import settled_visibility_calls

    assert settings.VISIBILITY_CACHE_SECONDS == 0
    tag = f"chips{time.time_ns() % 10**9}"
    open_case(title="Kettle descaling", queue="general", tags=[tag])
    eventually(lambda: _assert(run(gateway.count_cases(f"CaseTags = '{tag}'")) == 1))
    eventually(lambda: _assert(quick_feed.listener.healthy()))
    # A status filter: the chips need Counts. A tag, not title words: the feed can tell
    # whether another test's change touches it (title words only the index can).
    path = f"/cases/?tag={tag}&status=waiting"

    def chips() -> dict[str, str]:
        content = supervisor_client.get(path, HTTP_HX_REQUEST="true",
                                        HTTP_HX_TARGET="status-counts").content.decode()
        return dict(re.findall(r'id="count-(\w+)" hx-swap-oob="true">(\d+)<', content))

    assert chips()["new"] == "1"
    # The case's own opening may reach the feed just after that first Count was asked: it
    # cannot tell whether the Count holds it and asks once more (answers._counted). Past
    # that margin the answers are settled.
    time.sleep(answers.MARGIN_SECONDS + 0.5)
    assert chips()["new"] == "1"
    counts = ("CountWorkflowExecutions",)
    before = settled_visibility_calls(temporal, operations=counts)
    assert chips()["new"] == "1"
    assert chips()["new"] == "1"
    assert settled_visibility_calls(temporal, operations=counts) - before == 0


def _assert(condition: bool) -> None:
    assert condition
