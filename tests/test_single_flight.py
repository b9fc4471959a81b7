"""cases/live/single_flight.py: identical concurrent calls share one, errors included."""

from __future__ import annotations

import asyncio

import pytest

from cases.live.single_flight import SingleFlight


def test_concurrent_callers_of_a_key_share_one_call_and_a_later_one_calls_again():
    flights: SingleFlight[int] = SingleFlight()
    calls: list[str] = []

    async def slow(key: str) -> int:
        calls.append(key)
        await asyncio.sleep(0.05)
        return len(calls)

    async def scenario() -> None:
        same = await asyncio.gather(*(flights.run("a", lambda: slow("a")) for _ in range(5)),
                                    flights.run("b", lambda: slow("b")))
        assert same[:5] == [same[0]] * 5 and calls.count("a") == 1 and calls.count("b") == 1
        assert flights.pending("a") is None  # landed: the next caller asks again
        await flights.run("a", lambda: slow("a"))
        assert calls.count("a") == 2

    asyncio.run(scenario())


def test_an_error_reaches_every_caller_and_a_caller_leaving_does_not_cancel_the_call():
    flights: SingleFlight[int] = SingleFlight()
    finished: list[int] = []

    async def failing() -> int:
        await asyncio.sleep(0.05)
        raise RuntimeError("Temporal is not answering.")

    async def slow() -> int:
        await asyncio.sleep(0.1)
        finished.append(1)
        return 7

    async def scenario() -> None:
        results = await asyncio.gather(*(flights.run("x", failing) for _ in range(3)),
                                       return_exceptions=True)
        assert all(isinstance(r, RuntimeError) for r in results)
        leaving = asyncio.ensure_future(flights.run("y", slow))
        staying = asyncio.ensure_future(flights.run("y", slow))
        await asyncio.sleep(0.01)
        leaving.cancel()
        assert await staying == 7 and finished == [1]
        with pytest.raises(asyncio.CancelledError):
            await leaving

    asyncio.run(scenario())
