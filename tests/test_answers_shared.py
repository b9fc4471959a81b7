"""A question the feed cannot keep fresh (title words) is asked once per feed position for the
whole deployment, not once per web process (cases/live/answers.py `_asked_elsewhere`). Two event
loops on two threads stand for two web processes sharing one store."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from cases import store
from cases import temporal as gateway
from cases.live import answers, feed


class Listener:
    def __init__(self, seq: int) -> None:
        self.seq = seq

    def healthy(self) -> bool:
        return True

    def position(self) -> tuple[str, int]:
        return ("epoch-1", self.seq)

    def since(self, epoch: str | None, seq: int) -> list[Any] | None:
        return [] if seq >= self.seq else None


class Running:
    def __init__(self, seq: int) -> None:
        self.listener = Listener(seq)


@pytest.fixture
def shared(settings: Any) -> None:
    settings.VISIBILITY_CACHE_SECONDS = 3.0
    store.shared().clear()


def _in_processes(n: int, question: Any) -> list[Any]:
    """`question()` on n event loops at once, as n web processes would ask it."""
    results: list[Any] = [None] * n

    def process(i: int) -> None:
        results[i] = asyncio.run(question())

    threads = [threading.Thread(target=process, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    return results


def test_three_processes_at_one_feed_position_ask_once(shared, monkeypatch):
    monkeypatch.setattr(feed, "current", lambda: Running(7))
    calls: list[float] = []

    async def call() -> gateway.CasePage:
        calls.append(time.time())
        await asyncio.sleep(0.3)  # Visibility taking its time: the others arrive meanwhile
        return gateway.CasePage([], None)

    async def question() -> Any:
        return await answers._answer("list", "vis:list:title", call, lambda row: None, None, 50)

    assert _in_processes(3, question) == [gateway.CasePage([], None)] * 3
    assert len(calls) == 1
    # The next change (a new feed position) is a new question: asked once again.
    monkeypatch.setattr(feed, "current", lambda: Running(8))
    store.shared().delete("vis:list:title")  # the catch-up could not tell (a title filter)
    _in_processes(3, question)
    assert len(calls) == 2


def test_a_process_that_died_asking_costs_the_others_a_moment(shared, monkeypatch):
    monkeypatch.setattr(feed, "current", lambda: Running(9))
    monkeypatch.setattr(answers, "ASK_WAIT_SECONDS", 0.3)
    # Another process claimed the question and never answered.
    store.shared().add("vis:count:x:asking:epoch-1:9", 1, timeout=5)
    calls: list[int] = []

    async def call() -> int:
        calls.append(1)
        return 4

    started = time.monotonic()
    assert asyncio.run(answers._answer("count", "vis:count:x", call, lambda row: None,
                                       None)) == 4
    assert calls == [1] and 0.25 < time.monotonic() - started < 2
