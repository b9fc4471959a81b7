"""Many writers on one case: Temporal admits 10 Updates in flight per case and refuses the
rest, so the gateway makes writers take turns. Every writer's comment is applied exactly once
or handed back as CaseBusy; none is lost, none applied twice."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest

from cases import temporal as gateway
from cases.temporal import turns
from workers.model import AddComment, CaseState

from .conftest import LoopThread, current_state, run


@pytest.fixture
def patient(settings):
    # Correctness, not speed: each writer may wait as long as this slow shared machine needs
    # (bench/writers.py measures how long a crowd takes at the default deadline).
    settings.TEMPORAL_UPDATE_TIMEOUT = 120.0


async def _outcome(case_id: str, body: str, update_id: str) -> CaseState | Exception:
    try:
        return await gateway.act(case_id, AddComment(actor="alice", body=body), update_id)
    except Exception as err:  # recorded, so the assertion shows every way a writer ended
        return err


async def _crowd(case_id: str, writes: list[tuple[str, str]]) -> list[CaseState | Exception]:
    return list(await asyncio.gather(*(_outcome(case_id, b, u) for b, u in writes)))


def _writes(n: int, tag: str = "") -> list[tuple[str, str]]:
    return [(f"Comment {tag}{i} from the crowd", uuid.uuid4().hex) for i in range(n)]


def _comment_bodies(case_id: str) -> Counter[str]:
    return Counter(c.body for c in current_state(case_id).comments)


def _kinds(outcomes: list[Any]) -> Counter[str]:
    return Counter(type(o).__name__ for o in outcomes)


def _no_turns_left(case_id: str) -> bool:
    return not any(key[1] == case_id for key in turns._turns)


def test_two_hundred_writers_on_one_case_are_all_applied_once(temporal, open_case, patient):
    case_id = open_case(title="Everyone is here")
    writes = _writes(200)

    outcomes = temporal.loop.run(_crowd(case_id, writes), 300)

    assert _kinds(outcomes) == {"CaseState": 200}
    assert _comment_bodies(case_id) == Counter(body for body, _ in writes)
    assert _no_turns_left(case_id)  # the queue is dropped once the case is idle


def test_writers_without_a_turn_in_time_get_case_busy_and_nothing_of_theirs_applies(
        temporal, open_case, settings):
    # One turn at a time and a short deadline: a crowd of 200 cannot all get through.
    settings.TEMPORAL_UPDATES_PER_CASE = 1
    settings.TEMPORAL_UPDATE_TIMEOUT = 3.0
    case_id = open_case(title="Too many at once")
    writes = _writes(200)

    outcomes = temporal.loop.run(_crowd(case_id, writes), 120)

    kinds = _kinds(outcomes)
    assert set(kinds) == {"CaseState", "CaseBusy"}, kinds
    applied = [body for (body, _), o in zip(writes, outcomes, strict=True)
               if isinstance(o, CaseState)]
    assert _comment_bodies(case_id) == Counter(applied)
    busy = next(o for o in outcomes if isinstance(o, gateway.CaseBusy))
    assert busy.message == ("Many people are changing this case right now; nothing was "
                            "applied. Your text is below; send it again.")
    assert not isinstance(busy, gateway.TemporalUnavailable)
    assert _no_turns_left(case_id)

    # Sent again, a handed-back comment applies (once).
    body, update_id = next(w for w, o in zip(writes, outcomes, strict=True)
                           if isinstance(o, gateway.CaseBusy))
    settings.TEMPORAL_UPDATE_TIMEOUT = 30.0
    run(gateway.act(case_id, AddComment(actor="alice", body=body), update_id))
    assert _comment_bodies(case_id)[body] == 1


def test_an_action_sent_again_under_its_update_id_applies_once(temporal, open_case, patient):
    case_id = open_case(title="Double clickers")
    # Every form posted twice at once (a double click, a browser retry) in a crowd of 200.
    writes = _writes(100)
    outcomes = temporal.loop.run(_crowd(case_id, writes + writes), 300)

    assert _kinds(outcomes) == {"CaseState": 200}
    assert _comment_bodies(case_id) == Counter(body for body, _ in writes)
    firsts, seconds = outcomes[:100], outcomes[100:]
    # Both sends got the one Update's outcome: the same resulting version.
    assert [s.version for s in firsts] == [s.version for s in seconds]  # type: ignore[union-attr]

    # And once more, long after it was applied: the first outcome again, nothing added.
    body, update_id = writes[0]
    before = current_state(case_id)
    again = run(gateway.act(case_id, AddComment(actor="alice", body=body), update_id))
    assert again.version == firsts[0].version  # type: ignore[union-attr]
    assert current_state(case_id).version == before.version
    assert _comment_bodies(case_id)[body] == 1


def test_two_processes_whose_turns_add_up_past_the_limit_still_apply_every_comment(
        temporal, open_case, patient, settings):
    # Turns are per event loop, so a second loop stands in for a second web process: 8 + 8
    # turns exceed the 10 Updates Temporal admits, and only the back-off reconciles them.
    settings.TEMPORAL_UPDATES_PER_CASE = 8
    case_id = open_case(title="Two web processes")
    here, there = _writes(100, "here-"), _writes(100, "there-")
    other = LoopThread()
    try:
        elsewhere = other.submit(_crowd(case_id, there))
        outcomes = temporal.loop.run(_crowd(case_id, here), 300) + elsewhere.result(300)
    finally:
        other.loop.call_soon_threadsafe(other.loop.stop)

    assert _kinds(outcomes) == {"CaseState": 200}
    assert _comment_bodies(case_id) == Counter(body for body, _ in here + there)
    assert _no_turns_left(case_id)


@pytest.mark.django_db(transaction=True)
def test_a_crowd_on_the_case_page_is_applied_or_handed_back_never_a_503(
        temporal, agent, open_case, settings):
    """Over HTTP, with one turn per case and a short deadline, so some writers must be told
    the case is busy: each post is applied once or answered with its own text handed back."""
    from asgiref.sync import ThreadSensitiveContext
    from django.test import AsyncClient

    settings.TEMPORAL_UPDATES_PER_CASE = 1
    settings.TEMPORAL_UPDATE_TIMEOUT = 1.0
    case_id = open_case(queue="general")
    bodies = [f"Crowd note {i}" for i in range(60)]

    async def post(client: AsyncClient, body: str) -> Any:
        # One thread context per request, as an ASGI server gives each: without it every
        # request's synchronous parts share one thread and the crowd is served one by one.
        async with ThreadSensitiveContext():
            return await client.post(
                f"/cases/{case_id}/comment/",
                {"comment-body": body, "comment-key": uuid.uuid4().hex},
                headers={"HX-Request": "true"})

    async def crowd() -> list[Any]:
        client = AsyncClient()
        await client.aforce_login(agent)
        return list(await asyncio.gather(*(post(client, body) for body in bodies)))

    responses = asyncio.run(crowd())
    applied = _comment_bodies(case_id)
    assert all(n == 1 for n in applied.values())  # none twice
    busy = 0
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200, (response.status_code, body)
        content = response.content.decode()
        if body in applied:
            continue
        # Not applied: said in words, and the text is back in the comment box.
        assert "Many people are changing this case right now" in content, body
        assert f"{body}</textarea>" in content, body
        busy += 1
    assert busy > 0 and len(applied) + busy == len(bodies)
