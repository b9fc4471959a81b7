from __future__ import annotations

import re

from cases import temporal as gateway

from .conftest import run


def _form(client) -> dict[str, str]:
    page = client.get("/cases/new/").content.decode()
    case_id = re.search(r'name="case_id" value="(case-\w+)"', page)
    assert case_id is not None
    return {"case_id": case_id.group(1), "title": "Cannot log in", "queue": "technical",
            "priority": "2", "description": "Since Monday", "requester_name": "Grace",
            "requester_email": "grace@example.com", "tags": "vip, login"}


def test_create_redirects_to_detail_from_the_workflow(agent_client, temporal):
    data = _form(agent_client)
    response = agent_client.post("/cases/new/", data)
    assert response.status_code == 302
    assert response["Location"] == f"/cases/{data['case_id']}/"
    detail = agent_client.get(response["Location"])
    assert detail.status_code == 200
    assert b"Cannot log in" in detail.content and b"grace@example.com" in detail.content
    state = run(gateway.get_case(data["case_id"]))
    assert state.created_by == "alice" and state.tags == ["vip", "login"] and state.priority == 2


def test_double_submit_opens_one_case(agent_client, temporal):
    data = _form(agent_client)
    first = agent_client.post("/cases/new/", data)
    second = agent_client.post("/cases/new/", data)
    assert first["Location"] == second["Location"]
    assert run(gateway.count_cases(f"WorkflowId = '{data['case_id']}'")) <= 1


def test_invalid_form_keeps_input_and_shows_errors(agent_client, temporal):
    data = _form(agent_client) | {"title": "", "requester_email": "not-an-email",
                                   "tags": "ok, bad tag!"}
    response = agent_client.post("/cases/new/", data)
    assert response.status_code == 400
    content = response.content.decode()
    assert "This field is required." in content
    assert "Enter a valid email address." in content
    assert "A tag uses letters" in content
    assert 'value="Since Monday"' in content or "Since Monday" in content
    assert 'value="Grace"' in content
