"""The process's one handle on the shared store: Django's cache named by FEED_CACHE (Redis in
production, local memory for `make run`), which holds the change feed, shared Visibility
answers and the deployment-wide Visibility budget.

`caches[alias]` is local to each asyncio task and each `asyncio.to_thread` call (asgiref's
Local follows the context), so every request, stream and feed read got a backend of its own
and, with Redis, a connection pool of its own: a new TCP connection per request, thousands a
minute at a few hundred agents. One backend per process instead: redis-py's pool is
thread-safe, and local-memory backends of one LOCATION share their data anyway.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from django.conf import settings
from django.core.cache import BaseCache, caches
from django.core.cache.backends.locmem import LocMemCache
from django.core.signals import setting_changed
from django.dispatch import receiver

_lock = threading.Lock()
_stores: dict[str, tuple[int, BaseCache]] = {}


def shared() -> BaseCache:
    """This process's backend for FEED_CACHE (again after a fork)."""
    alias, pid = settings.FEED_CACHE, os.getpid()
    with _lock:
        found = _stores.get(alias)
        if found is None or found[0] != pid:
            found = _stores[alias] = (pid, caches.create_connection(alias))
        return found[1]


def spans_processes() -> bool:
    """Does the store reach every process (Redis), or only this one (local memory)?"""
    return not isinstance(shared(), LocMemCache)


@receiver(setting_changed)
def _forget(setting: str, **kwargs: Any) -> None:
    if setting in ("CACHES", "FEED_CACHE"):  # tests point the store elsewhere
        with _lock:
            _stores.clear()
