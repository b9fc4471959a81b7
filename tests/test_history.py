"""Time travel: the case as it was after any accepted change, from its own event history."""

from __future__ import annotations

import re

from cases import gateway
from workers.model import AddComment, Claim, Close, SetPriority

from .conftest import run


def test_history_lists_every_state_and_shows_each(agent_client, open_case):
    case_id = open_case(queue="technical", title="Time machine")
    run(gateway.act(case_id, Claim(actor="alice")))
    run(gateway.act(case_id, SetPriority(actor="alice", priority=1)))
    run(gateway.act(case_id, AddComment(actor="bob", body="later remark")))
    checkpoints = run(gateway.case_checkpoints(case_id))
    assert [c.state.version for c in checkpoints] == [1, 2, 3, 4]
    assert [c.label for c in checkpoints] == [
        "opened by intake", "claim by alice", "set priority by alice", "comment by bob"]
    assert checkpoints[-1].state == run(gateway.get_case(case_id))

    page = agent_client.get(f"/cases/{case_id}/history/").content.decode()
    links = re.findall(r'href="\?at=(\d+)"', page)
    assert len(links) == 4
    # As it was after the claim: assigned, priority 3, no comment yet.
    claim_event = checkpoints[1].event_id
    then = agent_client.get(f"/cases/{case_id}/history/?at={claim_event}").content.decode()
    assert '<dd class="assignee">alice</dd>' in then
    assert '<span class="prio p3">3</span>' in then and "later remark" not in then
    assert "No comments yet." in then
    assert 'method="post"' not in then.split("<main>")[1]  # read-only
    assert agent_client.get(f"/cases/{case_id}/history/?at=999999").status_code == 404


def test_history_of_a_closed_case_and_access(agent_client, supervisor_client, open_case):
    hidden = open_case(queue="billing")
    assert agent_client.get(f"/cases/{hidden}/history/").status_code == 404
    run(gateway.act(hidden, Close(actor="sam")))
    checkpoints = run(gateway.case_checkpoints(hidden))
    assert checkpoints[-1].state.status == "closed"
    assert supervisor_client.get(f"/cases/{hidden}/history/").status_code == 200
    assert supervisor_client.get("/cases/case-00000000/history/").status_code == 404
