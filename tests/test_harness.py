"""The test harness's own promises (tests/conftest.py), where a broken one would make other
tests flaky rather than fail."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction

from .conftest import eventually

pytestmark = pytest.mark.django_db(transaction=True)


def test_eventually_waits_out_a_table_another_thread_holds_locked():
    """A worker's activity writing while the test reads: in the in-memory test database the
    read fails at once with "database table is locked" (CI failed on it in tests/test_inbox.py);
    `eventually` must treat that as "not yet" and read again once the writer commits."""
    if connection.vendor != "sqlite":
        pytest.skip("the shared-cache table lock is SQLite's")
    writing, release = threading.Event(), threading.Event()

    def writer() -> None:
        try:
            with transaction.atomic():
                Group.objects.create(name="held")
                writing.set()
                release.wait(5)
        finally:
            connection.close()

    thread = threading.Thread(target=writer)
    thread.start()
    assert writing.wait(5)
    threading.Timer(0.3, release.set).start()
    try:
        assert eventually(lambda: Group.objects.filter(name="held").count(), timeout=5) == 1
    finally:
        release.set()
        thread.join(5)
