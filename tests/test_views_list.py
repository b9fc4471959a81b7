from __future__ import annotations

from cases import gateway
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
