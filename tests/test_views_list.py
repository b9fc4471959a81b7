from __future__ import annotations

import re

from cases import temporal as gateway
from cases.live import answers
from cases.temporal import rows as temporal_rows
from workers.model import Claim

from .conftest import eventually, run


def test_list_shows_cases_from_visibility(agent_client, open_case):
    case_id = open_case(title="Refund <b>not</b> received")

    def listed() -> bytes:
        response = agent_client.get("/cases/")
        assert response.status_code == 200
        assert case_id.encode() in response.content
        return response.content

    content = eventually(listed)
    # User text is escaped, never rendered as markup.
    assert b"Refund &lt;b&gt;not&lt;/b&gt; received" in content


def test_status_filter_narrows_the_list(agent_client, open_case):
    fresh = open_case(title="Fresh one")
    claimed = open_case(title="Claimed one")
    run(gateway.act(claimed, Claim(actor="alice")))

    def filtered() -> None:
        content = agent_client.get("/cases/?status=in_progress").content
        assert claimed.encode() in content
        assert fresh.encode() not in content

    eventually(filtered)


def test_unknown_status_is_ignored_not_an_error(agent_client, temporal):
    response = agent_client.get("/cases/?status=%27%20OR%201%3D1")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Select a valid choice" in content and "Fix the filter to see cases." in content


def test_htmx_request_gets_only_the_results_partial(agent_client, open_case):
    open_case()
    response = agent_client.get("/cases/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert b'id="results"' in response.content
    assert b"<html" not in response.content


def test_paging_uses_next_page_token(agent_client, open_case, settings):
    settings.CASE_PAGE_SIZE = 2
    for i in range(3):
        open_case(title=f"Paged {i}")

    def three_listed() -> None:
        assert run(gateway.count_cases("WorkflowType = 'Case'")) >= 3

    eventually(three_listed)
    first = agent_client.get("/cases/")
    assert first.content.count(b'class="case-row') == 2
    import re

    token = re.search(rb'page=([^"&]+)"', first.content)
    assert token is not None
    second = agent_client.get(f"/cases/?page={token.group(1).decode()}")
    assert second.status_code == 200
    assert second.content.count(b'class="case-row') >= 1
    ids_first = set(re.findall(rb"row-(case-\w+)", first.content))
    ids_second = set(re.findall(rb"row-(case-\w+)", second.content))
    assert ids_first.isdisjoint(ids_second)


def test_temporal_down_is_a_503_page(agent_client, settings, temporal):
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"
    gateway.reset_client()
    try:
        response = agent_client.get("/cases/")
        assert response.status_code == 503
        assert b"Temporal is not answering" in response.content
        assert b"Traceback" not in response.content
    finally:
        settings.TEMPORAL_ADDRESS = temporal.address
        gateway.reset_client()
    # And it recovers by itself.
    assert agent_client.get("/cases/").status_code == 200


def _ids(content: bytes) -> set[str]:
    import re

    return {m.decode() for m in re.findall(rb'id="row-(case-\w+)"', content)}


def test_every_filter_narrows_exactly(supervisor_client, open_case):
    from datetime import UTC, datetime, timedelta

    from workers.model import AddTag, SetDue

    urgent = open_case(title="Urgent zanzibar outage", priority=1, queue="billing")
    low = open_case(title="Low zanzibar question", priority=4, queue="general")
    tagged = open_case(title="Tagged zanzibar thing", priority=3, queue="technical")
    run(gateway.act(tagged, AddTag(actor="sam", tag="zanzitag")))
    run(gateway.act(urgent, Claim(actor="sam")))
    run(gateway.act(low, SetDue(actor="sam", due_at=datetime.now(UTC) + timedelta(days=400))))
    everyone = {urgent, low, tagged}

    cases = {
        "q=zanzibar": everyone,
        "q=zanzibar+outage": {urgent},
        "q=zanzibar&priority=1&priority=4": {urgent, low},
        "q=zanzibar&queue=general": {low},
        "q=zanzibar&assignee=me": {urgent},
        "q=zanzibar&assignee=sam": {urgent},
        "q=zanzibar&assignee=none": {low, tagged},
        "q=zanzibar&tag=zanzitag": {tagged},
        "q=zanzibar&status=in_progress": {urgent},
        "q=zanzibar&breached=no": everyone,
        "q=zanzibar&breached=yes": set(),
        f"q=zanzibar&due_before={(datetime.now(UTC) + timedelta(days=30)).date()}":
            {urgent, tagged},
    }

    def all_filters_exact() -> None:
        for params, expected in cases.items():
            got = _ids(supervisor_client.get(f"/cases/?{params}").content)
            assert got == expected, (params, got, expected)

    eventually(all_filters_exact)


def test_invalid_filter_values_are_inline_errors_not_queries(agent_client, temporal):
    response = agent_client.get("/cases/?assignee=a+b&tag=no%27pe&due_before=yesterday")
    assert response.status_code == 200
    content = response.content.decode()
    assert "That is not a username." in content
    assert "A tag uses letters" in content
    assert "Enter a valid date." in content
    assert "Fix the filter to see cases." in content


def test_status_counts_ignore_the_status_filter(supervisor_client, open_case):
    import re

    a = open_case(title="Countme quokka one")
    b = open_case(title="Countme quokka two")
    run(gateway.act(b, Claim(actor="sam")))

    def counts() -> None:
        content = supervisor_client.get("/cases/?q=quokka&status=new").content.decode()
        assert _ids(content.encode()) == {a}
        # The full page's chips wait for their own request (issue 18: rows first).
        assert not re.findall(r'id="count-(\w+)">(\d+)<', content)
        assert '<span id="status-counts" hidden hx-get="/cases/?q=quokka&amp;status=new"' in content
        chips = supervisor_client.get("/cases/?q=quokka&status=new", HTTP_HX_REQUEST="true",
                                      HTTP_HX_TARGET="status-counts").content.decode()
        found = dict(re.findall(r'id="count-(\w+)" hx-swap-oob="true">(\d+)<', chips))
        assert found["new"] == "1" and found["in_progress"] == "1" and found["closed"] == "0"
        assert "case-row" not in chips

    eventually(counts)


def test_htmx_refresh_carries_counts_out_of_band(supervisor_client, open_case):
    open_case(title="Oob wombat")
    response = supervisor_client.get("/cases/?q=wombat", HTTP_HX_REQUEST="true")
    content = response.content.decode()
    assert 'id="count-new" hx-swap-oob="true"' in content
    # The results element re-polls its own URL, filters included, while visible.
    assert 'hx-get="/cases/?q=wombat"' in content
    # ... but only while no push stream is open; a push makes it re-fetch at once.
    assert ("every 10s[document.visibilityState === 'visible' && !tracerail.selecting() "
            "&& !tracerail.pushed()]") in content
    assert "sse:list[document.visibilityState === 'visible'" in content
    assert 'id="live"' not in content  # a refresh leaves the stream alone


def test_a_new_filter_brings_its_own_push_stream(supervisor_client, open_case):
    response = supervisor_client.get("/cases/?q=wombat&priority=2", HTTP_HX_REQUEST="true",
                                     HTTP_HX_TARGET="live")
    content = response.content.decode()
    # The stream starts from the change log's position when the page was made (`last`).
    assert re.search(r'<div id="live" hx-ext="sse" '
                     r'sse-connect="/events/\?q=wombat&amp;priority=2&amp;last=[\w-]*">', content)
    assert 'sse-swap="row"' in content and 'id="results"' in content
    page = supervisor_client.get("/cases/?q=wombat").content.decode()
    assert re.search(r'sse-connect="/events/\?q=wombat&amp;last=[\w-]*"', page)
    assert 'hx-target="#live"' in page
    assert "{#" not in page and "Server push" not in page  # template comments stay comments


def test_paging_keeps_filters(supervisor_client, open_case, settings):
    import re

    settings.CASE_PAGE_SIZE = 2
    made = {open_case(title=f"Pager numbat {i}") for i in range(5)}
    eventually(lambda: _count_is(supervisor_client, "numbat", 5))
    seen: set[str] = set()
    url = "/cases/?q=numbat"
    for _ in range(3):
        content = supervisor_client.get(url).content
        page_ids = _ids(content)
        assert page_ids and page_ids.isdisjoint(seen)
        seen |= page_ids
        nxt = re.search(rb'href="\?([^"]+)" class="next-page"', content)
        if nxt is None:
            break
        query = nxt.group(1).decode().replace("&amp;", "&")
        assert "q=numbat" in query
        url = f"/cases/?{query}"
    assert seen == made


def _count_is(client, word: str, n: int) -> None:
    assert run(gateway.count_cases(f"WorkflowType = 'Case' AND CaseTitle = '{word}'")) == n


def test_identical_visibility_calls_are_shared_for_a_few_seconds(settings, open_case):
    import asyncio

    settings.VISIBILITY_CACHE_SECONDS = 30
    answers.forget()
    query = "WorkflowType = 'Case' AND CaseTitle = 'sharedcachetest'"
    try:
        assert run(answers.count_cases(query)) == 0
        open_case(title="sharedcachetest")
        import time

        time.sleep(0.5)  # well past Visibility's lag: a fresh call would see the case
        assert run(answers.count_cases(query)) == 0  # the shared answer
        answers.forget()
        eventually(lambda: _assert_eq(run(answers.count_cases(query)), 1))

        # Concurrent identical calls share one RPC.
        calls = 0
        real = temporal_rows._count_cases

        async def counting(q: str) -> int:
            nonlocal calls
            calls += 1
            await asyncio.sleep(0.05)
            return await real(q)

        answers.forget()
        temporal_rows._count_cases = counting  # type: ignore[assignment]

        async def many() -> list[int]:
            return await asyncio.gather(*(answers.count_cases(query) for _ in range(20)))

        assert run(many()) == [1] * 20
        assert calls == 1
    finally:
        temporal_rows._count_cases = real  # type: ignore[assignment]
        answers.forget()


def _assert_eq(a: object, b: object) -> None:
    assert a == b
