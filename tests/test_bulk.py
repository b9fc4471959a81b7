from __future__ import annotations

from cases import temporal as gateway
from workers.model import Claim, Close

from .conftest import run


def _bulk(client, ids, **data):
    return client.post("/cases/bulk/", {"case": ids, **data})


def test_supervisor_bulk_assign_reports_each_case(supervisor_client, agent, open_case):
    a, b = open_case(), open_case()
    closed = open_case()
    run(gateway.act(closed, Close(actor="sam")))
    response = _bulk(supervisor_client, [a, b, closed, "case-00000000"], action="assign",
                     assignee="alice", key="k1")
    assert response.status_code == 200
    content = response.content.decode()
    assert "2 done" in content and "2 refused" in content and "0 failed" in content
    assert run(gateway.get_case(a)).assignee == "alice"
    assert run(gateway.get_case(b)).assignee == "alice"
    closed_row = content.split(f'id="outcome-{closed}"')[1].split("</tr>")[0]
    assert "Refused" in closed_row and "This case is closed." in closed_row
    missing_row = content.split('id="outcome-case-00000000"')[1].split("</tr>")[0]
    assert "No such case" in missing_row


def test_agent_bulk_applies_permissions_per_case(agent, other_agent, agent_client, open_case):
    mine, bobs = open_case(queue="technical"), open_case(queue="technical")
    hidden = open_case(queue="billing")
    run(gateway.act(mine, Claim(actor="alice")))
    run(gateway.act(bobs, Claim(actor="bob")))
    content = _bulk(agent_client, [mine, bobs, hidden], action="set_priority",
                    priority="1").content.decode()
    assert "1 done" in content and "2 refused" in content
    assert run(gateway.get_case(mine)).priority == 1
    assert run(gateway.get_case(bobs)).priority == 3
    assert run(gateway.get_case(hidden)).priority == 3
    assert "held by bob" in content.split(f'id="outcome-{bobs}"')[1].split("</tr>")[0]


def test_bulk_tag_and_close_and_retry_is_idempotent(supervisor_client, open_case):
    ids = [open_case() for _ in range(3)]
    _bulk(supervisor_client, ids, action="add_tag", tag="batch7", key="same")
    again = _bulk(supervisor_client, ids, action="add_tag", tag="batch7", key="same")
    # A retried POST (same key) returns the first outcome instead of "already tagged".
    assert "3 done" in again.content.decode()
    for case_id in ids:
        state = run(gateway.get_case(case_id))
        assert state.tags == ["batch7"] and state.version == 2
    content = _bulk(supervisor_client, ids, action="close").content.decode()
    assert "3 done" in content
    assert all(run(gateway.describe_case(c)).execution_status == "completed" for c in ids)


def test_bulk_input_errors_change_nothing(supervisor_client, open_case):
    case_id = open_case()
    response = _bulk(supervisor_client, [case_id], action="assign", assignee="ghost")
    assert response.status_code == 400 and "No such user." in response.content.decode()
    response = _bulk(supervisor_client, [], action="close")
    assert "Select at least one case." in response.content.decode()
    response = _bulk(supervisor_client, [case_id], action="add_tag", tag="bad tag")
    assert "A tag uses" in response.content.decode()
    assert run(gateway.get_case(case_id)).version == 1


def test_bulk_needs_csrf(supervisor, temporal):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(supervisor)
    assert client.post("/cases/bulk/", {"case": ["case-00000000"],
                                        "action": "close"}).status_code == 403
