"""The deployment's Visibility budget, kept in the shared store.

Visibility is rate-limited per namespace (30 calls/s on Temporal Cloud, shared by every reader;
10-30 self-hosted). Every List and Count this deployment makes takes a slot here first (Redis in
production), so N web processes and the change feed together stay within VISIBILITY_RPS;
callers wait for a slot instead of being refused by the cluster. Answers are shared and kept
fresh by cases/live/answers.py and the change feed.

The store knows nothing of Temporal: a caller that gets no slot in time hears NoSlot, and
cases/temporal/rows.py says to the page what that means (VisibilityBusy, a 503).
"""

from __future__ import annotations

import asyncio
import random
import time

from django.conf import settings

from cases import store


class NoSlot(Exception):
    """No slot within VISIBILITY_WAIT_SECONDS; `waited` is how long this caller waited."""

    def __init__(self, waited: float) -> None:
        super().__init__(f"no Visibility slot after {waited:.1f} s")
        self.waited = waited


async def acquire(priority: bool = False) -> None:
    """A fixed one-second window per deployment: at most VISIBILITY_RPS calls in each, of
    which pages take all but one: the change feed's poll (`priority`), which keeps every
    screen fresh, is never starved by page reads. A page waits at most
    VISIBILITY_WAIT_SECONDS for a slot, then raises NoSlot; the feed's poll always waits."""
    rate = settings.VISIBILITY_RPS
    if rate <= 0:
        return
    limit = rate if priority or rate < 2 else rate - 1
    shared = store.shared()
    started = time.time()
    give_up = started + settings.VISIBILITY_WAIT_SECONDS
    while True:
        now = time.time()
        window = int(now)
        key = f"vis:budget:{window}"
        try:
            shared.add(key, 0, timeout=5)
            used = shared.incr(key)
            if used > limit and not priority:
                shared.decr(key)  # not taken: the feed's slot stays free
        except Exception:  # the store away: fall back to this process's own share
            return await _local.acquire(None if priority else give_up)
        if used <= limit:
            return
        # Spread the ones that wait over the next window instead of all at its start.
        wake = window + 1 + random.uniform(0, 0.2)
        if not priority and wake > give_up:
            raise NoSlot(now - started)
        await asyncio.sleep(wake - now)


class _RateLimiter:
    """A token bucket for this process alone: used only while the shared store is away."""

    def __init__(self) -> None:
        self.tokens = 0.0
        self.stamp: float | None = None

    async def acquire(self, give_up: float | None = None) -> None:
        rate = settings.VISIBILITY_RPS
        if rate <= 0:
            return
        loop = asyncio.get_running_loop()
        started = time.time()
        while True:
            now = loop.time()
            if self.stamp is None:
                self.stamp, self.tokens = now, float(rate)
            self.tokens = min(float(rate), self.tokens + (now - self.stamp) * rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            wait = (1 - self.tokens) / rate
            if give_up is not None and time.time() + wait > give_up:
                raise NoSlot(time.time() - started)
            await asyncio.sleep(wait)


_local = _RateLimiter()
