"""The deployment's Visibility budget (cases/store/budget.py): the change feed's
poll goes first, and a page never waits past VISIBILITY_WAIT_SECONDS: it says Temporal is busy."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cases import store
from cases import temporal as gateway
from cases.store.budget import NoSlot, acquire

from .conftest import run


@pytest.fixture
def budget(settings: Any) -> Any:
    settings.VISIBILITY_RPS = 3
    settings.VISIBILITY_WAIT_SECONDS = 0.5
    store.shared().clear()

    def fill(used: int) -> None:
        """This window and the next two already hold `used` calls."""
        now = int(time.time())
        for window in range(now, now + 3):
            store.shared().set(f"vis:budget:{window}", used, timeout=5)

    return fill


def test_the_feeds_poll_takes_the_slot_pages_leave_it(budget):
    budget(2)  # pages may take 2 of 3: the last one is the feed's
    started = time.monotonic()
    run(acquire(priority=True))
    assert time.monotonic() - started < 0.2
    with pytest.raises(NoSlot):
        run(acquire())


def test_a_page_that_waits_past_the_deadline_is_told_so(budget, agent_client):
    budget(3)
    started = time.monotonic()
    with pytest.raises(gateway.VisibilityBusy) as refused:
        run(gateway.count_cases("WorkflowType = 'Case'"))
    assert time.monotonic() - started < 1.5
    assert "3 calls a second" in refused.value.message
    response = agent_client.get("/cases/")
    assert response.status_code == 503
    assert b"Temporal is answering this deployment&#x27;s other screens first" in \
        response.content
    assert response["Retry-After"] == "5"


def test_a_refused_page_leaves_the_count_as_it_was(budget):
    budget(2)
    with pytest.raises(NoSlot):
        run(acquire())
    assert store.shared().get(f"vis:budget:{int(time.time())}") in (2, None)
