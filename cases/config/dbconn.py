"""When a request gives its database connection back.

With PostgreSQL each web process has a small pool (settings: DB_POOL_SIZE), and Django
returns a connection to it only when the request ends, so a request that waits a second on a
Temporal Query would hold one for that second. A page reads the database at its start (the
session, the user, the configuration) and seldom again, so it gives the connection back as
soon as that read is done; a later read borrows one again. Without a pool (SQLite, `make run`)
nothing changes: the thread keeps its connection as before.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.db import connections

T = TypeVar("T")


def release() -> None:
    """Give this thread's pooled connections back, unless a transaction is open on them.
    Synchronous: call it from the thread that used them."""
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or conn.in_atomic_block:
            continue
        if getattr(conn, "pool", None) is not None:
            conn.close()


async def read(fn: Callable[[], T]) -> T:
    """`fn` (ORM work) in the request's thread, giving the connection back in the same hop:
    for reads in the middle of a request that goes on to wait on Temporal."""

    def run() -> T:
        try:
            return fn()
        finally:
            release()

    return await sync_to_async(run)()
