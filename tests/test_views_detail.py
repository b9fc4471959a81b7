from __future__ import annotations

import re

import pytest

from cases import temporal as gateway
from workers.model import Claim

from .conftest import run


def test_detail_renders_live_state(agent_client, open_case):
    case_id = open_case(title="Webhook <script>alert(1)</script>", description="Line one")
    response = agent_client.get(f"/cases/{case_id}/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Webhook &lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "<script>alert(1)" not in content
    assert "Line one" in content
    assert 'data-version="1"' in content
    assert 'name="claim-version" value="1"' in content


@pytest.mark.parametrize("case_id", ["nope", "case-", "case-abcdefgh", "CASE-AAAAAAAA"])
def test_malformed_ids_are_404(agent_client, temporal, case_id):
    assert agent_client.get(f"/cases/{case_id}/").status_code == 404


def test_unknown_well_formed_id_is_404(agent_client, temporal):
    response = agent_client.get("/cases/case-00000000/")
    assert response.status_code == 404
    assert b"Not found" in response.content


def test_detail_without_worker_is_degraded_not_broken(agent_client, settings, temporal):
    from cases.temporal.ids import new_case_id
    from workers.model import NewCase

    settings.TEMPORAL_TASK_QUEUE = "nobody-polls-this-queue"
    settings.TEMPORAL_QUERY_TIMEOUT = 1.0
    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(title="Orphaned", queue="general"), "intake"))
    response = agent_client.get(f"/cases/{case_id}/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Live details are unavailable" in content
    assert case_id in content
    assert 'method="post"' not in content.split('id="case"')[1]  # no action forms


def test_claimed_case_shows_assignee_and_no_claim_button(agent_client, open_case):
    case_id = open_case()
    run(gateway.act(case_id, Claim(actor="bob")))
    content = agent_client.get(f"/cases/{case_id}/").content.decode()
    assert '<dd class="assignee">bob</dd>' in content
    assert "/claim/" not in content


def test_live_refresh_is_204_when_nothing_changed(agent_client, open_case):
    case_id = open_case()
    unchanged = agent_client.get(f"/cases/{case_id}/?since=1", HTTP_HX_REQUEST="true")
    assert unchanged.status_code == 204 and unchanged.content == b""
    run(gateway.act(case_id, Claim(actor="bob")))
    changed = agent_client.get(f"/cases/{case_id}/?since=1", HTTP_HX_REQUEST="true")
    assert changed.status_code == 200
    content = changed.content.decode()
    assert '<dd class="assignee">bob</dd>' in content
    assert f'hx-get="/cases/{case_id}/?since=2"' in content


def test_closed_case_stops_polling(supervisor_client, open_case):
    from workers.model import Close

    case_id = open_case()
    content = supervisor_client.get(f"/cases/{case_id}/").content.decode()
    assert "?since=1" in content and "every 5s" in content
    # Pushed changes re-ask at once; the poll is the fallback while no stream is open.
    assert re.search(rf'sse-connect="/events/\?case={case_id}&amp;last=[\w-]*"', content)
    assert "&& !tracerail.pushed()]" in content and "sse:case[" in content
    run(gateway.act(case_id, Close(actor="sam")))
    content = supervisor_client.get(f"/cases/{case_id}/").content.decode()
    assert "every 5s" not in content and "?since=" not in content
    assert "sse-connect" not in content  # an ended case changes no more
    assert "This case is closed; it takes no more actions." in content


def test_action_response_also_updates_the_list_row(agent_client, open_case):
    case_id = open_case(title="Row follows")
    response = agent_client.post(f"/cases/{case_id}/claim/", {"claim-version": "1"},
                                 HTTP_HX_REQUEST="true")
    content = response.content.decode()
    row = content.split("<template>")[1].split("</template>")[0]
    assert f'id="row-{case_id}"' in row and 'hx-swap-oob="true"' in row
    assert "alice" in row and "In progress" in row


def test_agent_outside_queue_gets_404_even_without_worker(agent_client, settings, temporal):
    from cases.temporal.ids import new_case_id
    from workers.model import NewCase

    settings.TEMPORAL_TASK_QUEUE = "nobody-polls-this-queue"
    settings.TEMPORAL_QUERY_TIMEOUT = 0.5
    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(title="Billing orphan", queue="billing"), "intake"))
    assert agent_client.get(f"/cases/{case_id}/").status_code == 404


def test_live_refresh_without_worker_swaps_a_degraded_partial(agent_client, settings,
                                                              temporal):
    from cases.temporal.ids import new_case_id
    from workers.model import NewCase

    settings.TEMPORAL_TASK_QUEUE = "nobody-polls-this-queue"
    settings.TEMPORAL_QUERY_TIMEOUT = 0.5
    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(title="Worker gone", queue="technical"), "intake"))
    response = agent_client.get(f"/cases/{case_id}/?since=1", HTTP_HX_REQUEST="true")
    content = response.content.decode()
    assert response.status_code == 200
    assert content.lstrip().startswith('<article id="case" class="case degraded"')
    assert "<html" not in content and "Live details are unavailable" in content
    # It keeps polling, so the page recovers by itself when the worker is back.
    assert f'hx-get="/cases/{case_id}/"' in content and "every 5s" in content


def test_server_timing_tells_the_time_waited_on_temporal_apart(agent_client, open_case):
    """Every answer says how long Django took and how much of it was Temporal's (the bench
    and the browser's devtools read it): a case page asks one Query, a health check none."""
    case_id = open_case()

    def timing(response) -> dict[str, tuple[float, str]]:
        parts = {}
        for part in response["Server-Timing"].split(","):
            name, *params = [p.strip() for p in part.split(";")]
            fields = dict(p.split("=", 1) for p in params)
            parts[name] = (float(fields["dur"]), fields.get("desc", ""))
        return parts

    page = timing(agent_client.get(f"/cases/{case_id}/"))
    assert page["temporal"][1] == '"1 calls"' and 0 < page["temporal"][0] <= page["app"][0]
    quiet = timing(agent_client.get("/healthz"))
    assert quiet["temporal"] == (0.0, '"0 calls"') and quiet["app"][0] >= 0
