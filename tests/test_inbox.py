# ruff: noqa: F811  (the fixtures imported from test_notifications are used by name)
"""The in-app inbox (issue 22, defects 5 and 7): one rule for what a person may see of their
notices, shared by the page, the badge, the pushed count and marking read; and notices that
keep references only, the words coming from Temporal when the page is shown."""

from __future__ import annotations

import os
import signal
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import pytest

from cases import temporal as gateway
from workers.model import AddComment, Assign, Watch

from .conftest import eventually, logged_in, manage, manage_in_background, run, timeline
from .test_notifications import (  # noqa: F401 (fixtures)
    ALICE,
    _assert,
    _open,
    people,
    smtp,
    worker_env,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _pushed_count(user: Any) -> str:
    """The unread count an open push stream of `user` is handed (`event: inbox`)."""
    from .test_events import Stream, _sync
    from .test_stream_access import _client

    got: list[str] = []

    async def scenario() -> None:
        client = await _client(user)
        stream = Stream(await client.get(f"/events/?case={'case-' + 'C' * 8}"))
        while True:
            name, data = await stream.message()
            if name == "inbox":
                got.append(data)
                return

    _sync(scenario)
    return got[0]


def test_the_badge_counts_what_the_inbox_hides(people, fake_feed, settings):
    """Defect 5: bob works the technical queue only. Of his three unread notices one is of a
    billing case and one predates the notices' queue (migration 0010's queue ""): the page
    shows one, and the badge, the pushed count and "mark all read" agree with it."""
    from cases.models import Notification

    settings.STREAM_WATCH_SECONDS = 0.05
    bob = people["bob"]
    seen = Notification.objects.create(user=bob, case_id="case-CCCCCCCC", event="2",
                                       queue="technical", kind="watching")
    hidden = [Notification.objects.create(user=bob, case_id="case-DDDDDDDD", event=event,
                                          queue=queue, kind="watching")
              for event, queue in (("2", "billing"), ("3", ""))]
    client = logged_in(bob)
    assert "(1 unread)" in client.get("/notifications/").content.decode()
    assert client.get("/notifications/badge.json").json() == {"unread": 1}
    assert _pushed_count(bob) == "1"
    client.post("/notifications/read/")
    assert Notification.objects.get(pk=seen.pk).read_at is not None
    assert all(Notification.objects.get(pk=n.pk).read_at is None for n in hidden)


def _database_bytes(database: Path) -> bytes:
    """The database file and whatever SQLite keeps beside it (WAL, journal, shared memory)."""
    return b"".join(p.read_bytes() for p in sorted(database.parent.glob(database.name + "*")))


def test_the_database_keeps_no_case_text_after_a_mention_a_comment_and_a_breach(
        smtp, settings, tmp_path, temporal):
    """Defect 7: a worker of its own on a file-based SQLite database delivers a mention, a
    comment and an SLA breach (in-app and by email); the database's bytes then hold none of
    the case's title, the comments or the lines the notices told."""
    database = tmp_path / "inbox.sqlite3"
    env = worker_env(settings, f"sqlite:///{database}", tmp_path, temporal)
    made = manage(["shell", "-c", (
        "from django.contrib.auth.models import Group, User\n"
        "from cases.models import Queue\n"
        "technical = Queue.objects.get_or_create(slug='technical', "
        "defaults={'name': 'Technical'})[0]\n"
        "for name, role in (('alice', 'Agent'), ('bob', 'Agent'), ('sam', 'Supervisor')):\n"
        "    u = User.objects.create_user(name, email=name + '@example.com')\n"
        "    u.groups.add(Group.objects.get_or_create(name=role)[0])\n"
        "    if role == 'Agent':\n"
        "        technical.agents.add(u)\n")], env)
    assert made.returncode == 0, made.stderr
    queue = f"inbox-text-{uuid.uuid4().hex[:6]}"
    settings.TEMPORAL_TASK_QUEUE = queue
    settings.CASE_SLA_SECONDS = [4, 3600, 3600, 3600]
    settings.CASE_SLA_AT_RISK = [1, 1, 1, 1]
    worker = manage_in_background(["run_worker", "--task-queue", queue, "--wait", "30"], env)
    title = "Quokka flamingo outage"
    mention = "Zeppelin marmalade, @bob please look"
    comment = "Porcupine xylophone dusk"
    try:
        case_id = _open(title=title, priority=1)

        def answered() -> None:
            assert worker.poll() is None, worker.communicate()[0]
            try:
                run(gateway.get_case(case_id))
            except gateway.WorkerUnavailable as err:
                raise AssertionError("the worker has not taken the case yet") from err

        eventually(answered, timeout=60, interval=0.5)
        run(gateway.act(case_id, Watch(actor="alice", authority=ALICE)))
        run(gateway.act(case_id, AddComment(actor="sam", body=mention)))
        run(gateway.act(case_id, AddComment(actor="bob", body=comment)))

        def all_told() -> list[tuple[str, str, str]]:
            with sqlite3.connect(database) as db:
                rows = db.execute("SELECT u.username, n.event, n.kind FROM "
                                  "cases_notification n JOIN auth_user u ON u.id = n.user_id"
                                  ).fetchall()
            kinds = {(name, kind) for name, _, kind in rows}
            assert {("bob", "mentioned"), ("alice", "watching"),
                    ("sam", "sla_breached")} <= kinds, rows
            return rows

        eventually(all_told, timeout=60, interval=0.3)
        smtp.one_to("sam@example.com", timeout=30)
        eventually(lambda: _assert(len(smtp.to("alice@example.com")) >= 1), timeout=30)
        lines = [e.text for e in timeline(case_id)
                 if e.kind in ("comment", "sla breached")]
        assert len(lines) == 3, lines
        data = _database_bytes(database)
        assert b"cases_notification" in data  # the right file
        for text in (title, mention, comment, *lines):
            assert text.encode() not in data, f"{text!r} is in the database"
        for word in ("Quokka", "Zeppelin", "Porcupine"):
            assert word.encode() not in data, f"{word!r} is in the database"
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
    # And after the worker closed its connections (a WAL checkpointed into the file).
    data = _database_bytes(database)
    for word in ("Quokka", "Zeppelin", "Porcupine"):
        assert word.encode() not in data, f"{word!r} is in the database"


def test_migration_0012_drops_the_copied_text(tmp_path):
    """Notices told before this change kept their case's title, line and comment: after the
    migration the rows keep their references and no byte of the database holds the text."""
    database = tmp_path / "old.sqlite3"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tracerail.settings",
           "TRACERAIL_VAR_DIR": str(tmp_path), "DATABASE_URL": f"sqlite:///{database}",
           "REDIS_URL": ""}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    old = manage(["migrate", "--noinput", "cases", "0010"], env)
    assert old.returncode == 0, old.stderr
    with sqlite3.connect(database) as db:
        db.execute("INSERT INTO auth_user (password, is_superuser, username, first_name, "
                   "last_name, email, is_staff, is_active, date_joined) VALUES "
                   "('', 0, 'bob', '', '', '', 0, 1, '2026-01-01')")
        db.execute("INSERT INTO cases_notification (user_id, case_id, queue, event, kind, "
                   "text, body, title, created) VALUES (1, 'case-EEEEEEEE', 'technical', "
                   "'2', 'mentioned', 'Albatross line', 'Wombat body', 'Narwhal title', "
                   "'2026-01-01')")
    assert b"Narwhal" in _database_bytes(database)
    new = manage(["migrate", "--noinput"], env)
    assert new.returncode == 0, new.stderr
    with sqlite3.connect(database) as db:
        rows = db.execute("SELECT case_id, event, kind FROM cases_notification").fetchall()
        columns = {c[1] for c in db.execute("PRAGMA table_info(cases_notification)")}
    assert rows == [("case-EEEEEEEE", "2", "mentioned")]
    assert not {"text", "body", "title"} & columns
    data = _database_bytes(database)
    for word in ("Albatross", "Wombat", "Narwhal"):
        assert word.encode() not in data, f"{word!r} is still in the database"


def test_the_inbox_shows_titles_and_words_from_temporal_with_one_visibility_call(
        smtp, people, temporal):
    """The page's titles are one Visibility List for all of its cases, and what was said
    comes from each case's history: the notice itself holds neither."""
    from cases.models import Notification

    from .conftest import settled_visibility_calls

    first = _open(title="Kettle descaling")
    second = _open(title="Lanyard shortage")
    for case_id, words in ((first, "@bob the kettle again"), (second, "@bob lanyards, please")):
        run(gateway.act(case_id, AddComment(actor="alice", body=words, authority=ALICE)))
    run(gateway.act(second, Assign(actor="sam", assignee="bob")))
    eventually(lambda: _assert(Notification.objects.filter(user=people["bob"]).count() == 3),
               timeout=20)
    client = logged_in(people["bob"])
    client.get("/notifications/badge.json")  # the session's first reads, not the page's
    before = settled_visibility_calls(temporal)
    page = client.get("/notifications/").content.decode()
    assert settled_visibility_calls(temporal) - before == 1
    for text in ("Kettle descaling", "Lanyard shortage", "@bob the kettle again",
                 "@bob lanyards, please", "alice commented", "sam assigned the case to bob"):
        assert text in page, text
    assert "(3 unread)" in page


def test_the_inbox_lists_notices_by_reference_when_temporal_is_unreachable(people, settings,
                                                                           temporal):
    from cases.models import Notification

    bob = people["bob"]
    Notification.objects.create(user=bob, case_id="case-FFFFFFFF", event="3",
                                queue="technical", kind="mentioned", actor="alice")
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"
    gateway.reset_client()
    try:
        response = logged_in(bob).get("/notifications/")
    finally:
        settings.TEMPORAL_ADDRESS = temporal.address
        gateway.reset_client()
    assert response.status_code == 200
    page = response.content.decode()
    assert "case-FFFFFFFF" in page and "alice" in page and "(1 unread)" in page
    assert "Titles and what was said are unavailable" in page


def _cluster_bytes(directory: str) -> bytes:
    """Every table file of a PostgreSQL cluster (its WAL, a log of what was written, aside)."""
    found = []
    for path in Path(directory).rglob("*"):
        if path.is_file() and "pg_wal" not in path.parts and path.suffix != ".log":
            found.append(path.read_bytes())
    return b"".join(found)


def test_migration_0012_drops_the_copied_text_on_postgresql(postgres_server, tmp_path):
    """PostgreSQL's DROP COLUMN leaves the values in the rows; the migration's blanking and
    rewrite take them out of the table files too."""
    url, env = postgres_server.migrated(tmp_path, "cases", "0010")
    with postgres_server.connect(url) as db:
        db.execute("INSERT INTO auth_user (password, is_superuser, username, first_name, "
                   "last_name, email, is_staff, is_active, date_joined) VALUES "
                   "('', false, 'bob', '', '', '', false, true, now())")
        db.execute("INSERT INTO cases_notification (user_id, case_id, queue, event, kind, "
                   "text, body, title, created) SELECT id, 'case-EEEEEEEE', 'technical', '2', "
                   "'mentioned', 'Albatross line', 'Wombat body', 'Narwhal title', now() "
                   "FROM auth_user")
        db.execute("CHECKPOINT")
    assert b"Narwhal" in _cluster_bytes(postgres_server.directory)
    new = manage(["migrate", "--noinput"], env)
    assert new.returncode == 0, new.stderr
    with postgres_server.connect(url) as db:
        rows = db.execute("SELECT case_id, event, kind FROM cases_notification").fetchall()
        columns = {r[0] for r in db.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'cases_notification'::regclass "
            "AND attnum > 0 AND NOT attisdropped")}
        db.execute("CHECKPOINT")
    assert rows == [("case-EEEEEEEE", "2", "mentioned")]
    assert not {"text", "body", "title"} & columns
    data = _cluster_bytes(postgres_server.directory)
    for word in (b"Albatross", b"Wombat", b"Narwhal"):
        assert word not in data, f"{word!r} is still in the table files"
