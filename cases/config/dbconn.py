"""When a request gives its database connection back.

With PostgreSQL each web process has a small pool (settings: DB_POOL_SIZE), and Django
returns a connection to it only when the request ends, so a request that waits a second on a
Temporal Query would hold one for that second. A page reads the database at its start (the
session, the user, the configuration) and seldom again, so it gives the connection back as
soon as that read is done; a later read borrows one again. Without a pool (SQLite, `make run`)
nothing changes: the thread keeps its connection as before.

A worker's activities have no request at all, so Django never drops a connection that broke
(PostgreSQL restarted) or aged: every activity that reads Django goes through `outside_request`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import close_old_connections, connections

T = TypeVar("T")
P = ParamSpec("P")


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


def outside_request(fn: Callable[P, T]) -> Callable[P, T]:
    """`fn` (synchronous ORM work) with what Django does around a request: a broken or aged
    connection is dropped before, and after (back to the pool, where there is one), on the
    thread that runs it, and `fn` starts on a connection that answers. Without it a worker
    thread kept a dead connection after PostgreSQL restarted, and every later call failed
    until the worker restarted."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        close_old_connections()
        _answering()
        try:
            return fn(*args, **kwargs)
        finally:
            close_old_connections()

    return run


def _answering() -> None:
    """Borrow connections that answer: a pool hands out what it holds without asking, and
    after a PostgreSQL restart it holds only dead ones, each of which would fail one try of
    the activity (its few retries can run out before the pool does). One `SELECT 1` per call;
    a database that is down still raises here, and the activity is retried."""
    tries = getattr(settings, "DB_POOL_SIZE", 0) + 1
    for conn in connections.all():
        for _ in range(tries):
            conn.ensure_connection()
            if conn.is_usable():
                break
            conn.close()  # a dead one goes back, and the pool discards it
