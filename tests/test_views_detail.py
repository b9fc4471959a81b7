from __future__ import annotations

import pytest

from cases import gateway
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
    from cases.ids import new_case_id
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
