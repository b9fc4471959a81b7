"""The production stack (issue 10, item 4): Django's cache on a real Redis, Django's tables on a
real PostgreSQL, and `make run-prod`'s whole process set started, used and stopped."""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.cache import cache, caches
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.retry import Retry

from cases.management.commands.seed_demo import DEFAULT_SEED, demo_case
from tracerail.settings import cache_settings, envurl

from .conftest import free_port, manage, run
from .test_deploy_settings import documented_env

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def django_env(tmp: Path | str, **extra: str) -> dict[str, str]:
    """The production settings module and nothing else inherited but PATH: the pytest
    process carries tests.settings and a test key, which must not leak into these."""
    return {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
            "DJANGO_SETTINGS_MODULE": "tracerail.settings",
            "SECRET_KEY": secrets.token_urlsafe(50), "TRACERAIL_VAR_DIR": str(tmp), **extra}


def shell(code: str, env: dict[str, str]) -> Any:
    """Run `code` in `manage.py shell` with `env`; it prints one JSON value as its last line."""
    result = manage(["shell", "-c", textwrap.dedent(code)], env)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


# --- settings ---------------------------------------------------------------------------


def test_redis_url_selects_django_redis_cache_and_the_default_is_per_process(tmp_path):
    code = """
        import json
        from django.conf import settings
        from django.core.cache import caches
        print(json.dumps([type(caches["default"]).__name__, settings.CACHES["default"]]))
    """
    kind, conf = shell(code, django_env(tmp_path, REDIS_URL="redis://127.0.0.1:6390/2"))
    assert kind == "SharedRedisCache"  # Django's, one pool per process
    assert conf["LOCATION"] == "redis://127.0.0.1:6390/2" and conf["KEY_PREFIX"] == "tracerail"
    # A pool that waits (up to the timeout) for a connection, sized from the process's
    # threads (REQUEST_THREADS 64 + EVENTS_THREADS 2 + asyncio's executor + 8).
    assert conf["OPTIONS"] == {"socket_connect_timeout": 2.0, "socket_timeout": 2.0,
                               "serializer": "cases.store.wire.JSONSerializer",
                               "pool_class": "redis.BlockingConnectionPool",
                               "max_connections": 64 + 2 + min(32, (os.cpu_count() or 1) + 4)
                               + 8, "timeout": 2.0}
    # `make run` sets no REDIS_URL and needs no service.
    kind, conf = shell(code, django_env(tmp_path, REDIS_TIMEOUT="0"))
    assert kind == "JSONLocMemCache" and conf["KEY_PREFIX"] == "tracerail"
    assert cache_settings("redis://h:6379/0", 0, 40)["default"]["OPTIONS"] == {
        "socket_connect_timeout": None, "socket_timeout": None,  # 0: no limit
        "serializer": "cases.store.wire.JSONSerializer",
        "pool_class": "redis.BlockingConnectionPool", "max_connections": 40, "timeout": None}


@pytest.mark.parametrize(("name", "value", "message"), [
    ("REDIS_URL", "localhost:6379", "REDIS_URL must be a URL starting with redis://"),
    ("REDIS_TIMEOUT", "-1", "REDIS_TIMEOUT must be 0 or more seconds, got -1.0"),
    ("REDIS_TIMEOUT", "soon", "REDIS_TIMEOUT must be a number, got 'soon'"),
])
def test_bad_cache_settings_stop_start_up_with_their_name(tmp_path, name, value, message):
    result = manage(["check"], django_env(tmp_path, **{name: value}))
    assert result.returncode != 0 and message in result.stderr


@pytest.mark.parametrize(("extra", "message"), [
    ({"DB_POOL_SIZE": "0"}, "DB_POOL_SIZE must be at least 1 and DB_POOL_TIMEOUT more than 0"),
    ({"DB_POOL_TIMEOUT": "0"}, "DB_POOL_SIZE must be at least 1 and DB_POOL_TIMEOUT more than 0"),
    ({"DB_POOL_SIZE": "many"}, "DB_POOL_SIZE must be a whole number, got 'many'"),
])
def test_bad_pool_settings_stop_start_up_with_their_name(tmp_path, extra, message):
    env = django_env(tmp_path, DATABASE_URL="postgres://u:p@127.0.0.1:1/db", **extra)
    result = manage(["check"], env)
    assert result.returncode != 0 and message in result.stderr
    # The pool is PostgreSQL's: SQLite (`make run`) neither reads these nor refuses them.
    env.pop("DATABASE_URL")
    assert manage(["check"], env).returncode == 0


@pytest.mark.parametrize("value", [
    "http://127.0.0.1:6379/0", "127.0.0.1:6379", "redis://", "redis://h:port/0",
    "redis://h:0/0", "redis://ok:6379/0,memcached://h:11211",
])
def test_a_redis_url_that_is_not_one_is_refused_by_name(monkeypatch, value):
    monkeypatch.setenv("REDIS_URL", value)
    with pytest.raises(ImproperlyConfigured, match=r"^REDIS_URL must be a URL starting with "
                       r"redis:// or rediss:// or unix://, got "):
        envurl("REDIS_URL", ("redis", "rediss", "unix"))


def test_a_refused_redis_url_does_not_repeat_its_password(monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2secret@cache:63x9/0")
    with pytest.raises(ImproperlyConfigured) as err:
        envurl("REDIS_URL", ("redis", "rediss", "unix"))
    assert "hunter2secret" not in str(err.value) and "redis://:***@cache:63x9/0" in str(err.value)


def test_valid_redis_urls_pass_unchanged(monkeypatch):
    for value in ("redis://127.0.0.1:6379/0", "rediss://:pw@cache.internal:6380/1",
                  "unix:///run/redis.sock", "redis://primary:6379/0,redis://replica:6379/0"):
        monkeypatch.setenv("REDIS_URL", value)
        assert envurl("REDIS_URL", ("redis", "rediss", "unix")) == value
    monkeypatch.setenv("REDIS_URL", " ")
    assert envurl("REDIS_URL", ("redis",)) is None


# --- Django's cache on a real Redis -------------------------------------------------------


@pytest.fixture
def redis_cache(settings, redis_server):
    """Django's default cache as the settings build it for REDIS_URL=<the test server>."""
    settings.CACHES = cache_settings(redis_server.url, 2.0)
    assert type(caches["default"]).__name__ == "SharedRedisCache"
    cache.clear()
    yield caches["default"]
    cache.clear()


def test_set_get_and_the_key_prefix_in_redis(redis_cache, redis_server):
    redis_cache.set("feed:head", {"version": 7, "ids": ["case-1"]}, timeout=30)
    assert redis_cache.get("feed:head") == {"version": 7, "ids": ["case-1"]}
    raw = redis.Redis.from_url(redis_server.url)
    # The raw client sees the prefixed key, which cache.make_key gives.
    assert redis_cache.make_key("feed:head") == "tracerail:1:feed:head"
    assert raw.exists("tracerail:1:feed:head") == 1 and raw.exists("feed:head") == 0
    assert 0 < raw.ttl("tracerail:1:feed:head") <= 30
    assert redis_cache.get("absent", "default") == "default"


def test_add_only_when_absent(redis_cache):
    assert redis_cache.add("lock:case-1", "web-1", timeout=1) is True
    assert redis_cache.add("lock:case-1", "web-2", timeout=1) is False
    assert redis_cache.get("lock:case-1") == "web-1"
    time.sleep(1.2)  # expired: free to take again
    assert redis_cache.add("lock:case-1", "web-2", timeout=5) is True
    assert redis_cache.get("lock:case-1") == "web-2"


def test_incr_counts_and_refuses_a_missing_key(redis_cache):
    with pytest.raises(ValueError):
        redis_cache.incr("feed:version")
    redis_cache.set("feed:version", 0, timeout=None)
    assert [redis_cache.incr("feed:version") for _ in range(3)] == [1, 2, 3]
    assert redis_cache.incr("feed:version", 10) == 13
    assert redis_cache.get("feed:version") == 13


INCREMENTER = """
import json, time
from django.core.cache import cache, caches
cache.incr("ready")
while not cache.get("go"):
    time.sleep(0.005)
print(json.dumps([cache.incr("counter") for _ in range(500)]))
"""


def test_incr_is_atomic_across_two_processes(redis_cache, redis_server, tmp_path):
    redis_cache.set("ready", 0, timeout=None)
    redis_cache.set("counter", 0, timeout=None)
    # Each process reaches Redis through the product's settings and REDIS_URL alone.
    env = django_env(tmp_path, REDIS_URL=redis_server.url)
    procs = [subprocess.Popen([sys.executable, "manage.py", "shell", "-c", INCREMENTER],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        deadline = time.monotonic() + 60
        while redis_cache.get("ready") < 2:  # both are connected: start them together
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
            time.sleep(0.05)
        redis_cache.set("go", 1)
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    seen = []
    for (out, err), p in zip(outputs, procs, strict=True):
        assert p.returncode == 0, err
        seen.append(json.loads(out.strip().splitlines()[-1]))
    assert redis_cache.get("counter") == 1000
    # Every increment got a value of its own: no two processes ever read the same count.
    assert sorted(seen[0] + seen[1]) == list(range(1, 1001))
    # ...and they did run side by side, or this proves nothing about atomicity.
    assert min(seen[1]) < max(seen[0]) and min(seen[0]) < max(seen[1])


def test_the_cache_comes_back_after_a_redis_restart(redis_cache, redis_server):
    redis_cache.set("warm", "yes", timeout=60)
    assert redis_cache.get("warm") == "yes"  # a pooled connection now exists
    redis_server.restart()
    # Same cache object, same pool: the stale connection is replaced, nothing raises; the
    # restarted Redis kept nothing (no persistence), so the page rebuilds what it needs.
    assert redis_cache.get("warm") is None
    assert redis_cache.add("warm", "again", timeout=60) is True
    assert redis_cache.get("warm") == "again"


def test_a_hung_redis_costs_a_bounded_wait_not_a_hang(settings, redis_server):
    settings.CACHES = cache_settings(redis_server.url, 0.5)
    cache.set("k", 1)
    os.kill(redis_server.process.pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            cache.get("k")
        assert time.monotonic() - started < 3
    finally:
        os.kill(redis_server.process.pid, signal.SIGCONT)
    assert cache.get("k") == 1
    cache.delete("k")


# --- Django's tables on a real PostgreSQL -------------------------------------------------


def test_migrate_and_the_orm_on_postgresql(postgres_server, tmp_path):
    env = django_env(tmp_path, DATABASE_URL=postgres_server.new_database())
    migrated = manage(["migrate", "--noinput"], env)
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    got = shell("""
        import json
        import psycopg
        from django.contrib.auth.models import Group, User
        from django.db import IntegrityError, connection, transaction
        from cases.models import Queue, SavedView
        user = User.objects.create_user("pg-agent", password="x" * 20)
        user.groups.add(Group.objects.get(name="Agent"))
        SavedView.objects.create(name="Mine, urgent", owner=user,
                                 query="assignee=me&priority=1")
        try:
            with transaction.atomic():
                SavedView.objects.create(name="broken", owner=user, scope="group")
            refused = None
        except IntegrityError as err:
            refused = str(err).splitlines()[0]
        with connection.cursor() as cursor:
            cursor.execute("select version()")
            version = cursor.fetchone()[0]
        print(json.dumps({
            "vendor": connection.vendor, "driver": connection.Database.__name__,
            "psycopg": psycopg.__version__, "server": version,
            "views": [(v.name, v.owner.username, v.query) for v in SavedView.objects.all()],
            "groups": list(User.objects.get(username="pg-agent")
                           .groups.values_list("name", flat=True)),
            "queues": sorted(Queue.objects.values_list("slug", flat=True)),
            "refused": refused,
        }))
    """, env)
    assert got["vendor"] == "postgresql" and got["driver"] == "psycopg"
    assert got["psycopg"].startswith("3.") and got["server"].startswith("PostgreSQL 15")
    assert got["views"] == [["Mine, urgent", "pg-agent", "assignee=me&priority=1"]]
    assert got["groups"] == ["Agent"]
    # The data migrations ran on PostgreSQL too.
    assert got["queues"] == ["billing", "general", "technical"]
    # The model's check constraint is the database's: a group view without a group is refused.
    assert got["refused"] is not None and "group_view_has_group" in got["refused"]


# For `shell` scripts: one GET through the deployed ASGI app (tracerail.asgi), as a server
# would send it; (status, headers, body).
ASGI_GET = """
import asyncio


async def asgi_get(url, cookie="", headers=()):
    from tracerail.asgi import application

    path, _, query = url.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": query.encode(), "root_path": "", "client": ("127.0.0.1", 1),
             "server": ("127.0.0.1", 80),
             "headers": [(b"host", b"127.0.0.1"), (b"cookie", cookie.encode()),
                         *((k.encode(), v.encode()) for k, v in headers)]}
    sent, asked = [], []

    async def receive():
        if not asked:
            asked.append(1)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()

    async def send(message):
        sent.append(message)

    await application(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body
"""


def test_a_web_process_holds_no_more_connections_than_its_pool(postgres_server, tmp_path):
    # 30 requests at once through the deployed ASGI app, each in a request thread of its
    # own: with a persistent connection per thread that is 30 connections (89 at 500 agents
    # in bench/agents.py, of PostgreSQL's 100); the pool keeps them to DB_POOL_SIZE.
    env = django_env(tmp_path, DATABASE_URL=postgres_server.new_database(), DB_POOL_SIZE="3")
    for step in (["migrate", "--noinput", "-v0"], ["collectstatic", "--noinput", "-v0"]):
        done = manage(step, env)
        assert done.returncode == 0, done.stdout + done.stderr
    got = shell(ASGI_GET + textwrap.dedent("""
        import asyncio, json, threading, time
        from importlib import import_module
        import psycopg
        from django.conf import settings
        from django.contrib.auth.models import Group, User
        from django.db import connections
        from django.test import RequestFactory
        from cases.config import reading as config
        from cases.config import dbconn
        from cases.models import Queue

        user = User.objects.create_user("pool-agent", password="x" * 20)
        user.groups.add(Group.objects.get(name="Agent"))
        Queue.objects.get(slug="general").agents.add(user)
        session = import_module(settings.SESSION_ENGINE).SessionStore()
        session.update({"_auth_user_id": str(user.pk),
                        "_auth_user_hash": user.get_session_auth_hash(),
                        "_auth_user_backend": "django.contrib.auth.backends.ModelBackend"})
        session.create()
        connections.close_all()

        # A request that has read its session, user and configuration holds no connection
        # while it goes on (to Temporal, in a real page).
        request = RequestFactory().get("/cases/")
        request.session = import_module(settings.SESSION_ENGINE).SessionStore(session.session_key)
        config.resolve(request)
        held_after_resolve = connections["default"].connection is not None
        signed_in = request.user.get_username()
        pool = connections["default"].pool

        def lent():
            stats = pool.get_stats()
            return stats["pool_size"] - stats["pool_available"]

        # Reads later in a request give theirs back too (the saved views, an assignee check).
        async def later_reads():
            await config.config_for(request, views=True, holders=True)
            await dbconn.read(User.objects.filter(username="pool-agent").exists)
            return lent()

        lent_after_reads = asyncio.run(later_reads())
        connections.close_all()

        url = settings.DATABASES["default"]
        dsn = f"postgresql://{url['USER']}:{url['PASSWORD']}@{url['HOST']}:{url['PORT']}/{url['NAME']}"
        peak, done = [0], threading.Event()

        def watch():
            with psycopg.connect(dsn, autocommit=True) as conn:
                while not done.is_set():
                    n = conn.execute("select count(*) from pg_stat_activity where "
                                     "datname = current_database() and pid <> pg_backend_pid() "
                                     "and backend_type = 'client backend'").fetchone()[0]
                    peak[0] = max(peak[0], n)
                    time.sleep(0.005)

        async def burst():
            cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}"
            answers = await asyncio.gather(*(asgi_get("/cases/new/", cookie=cookie)
                                             for _ in range(30)))
            return [status for status, _, _ in answers]

        watcher = threading.Thread(target=watch)
        watcher.start()
        statuses = asyncio.run(burst())
        time.sleep(0.2)
        done.set()
        watcher.join()
        print(json.dumps({"statuses": sorted(set(statuses)), "peak": peak[0],
                          "held_after_resolve": held_after_resolve, "user": signed_in,
                          "lent_after_reads": lent_after_reads}))
    """), env)
    assert got["statuses"] == [200]
    assert 1 <= got["peak"] <= 3, got
    assert got["user"] == "pool-agent" and got["held_after_resolve"] is False
    assert got["lent_after_reads"] == 0


def test_a_database_that_does_not_answer_is_a_503_page_that_says_so(tmp_path):
    # Nothing listens on the port: every request's first read (the session) fails after
    # DB_POOL_TIMEOUT, as it would with a pool that stays busy.
    env = django_env(tmp_path, DATABASE_URL=f"postgres://u:p@127.0.0.1:{free_port()}/db",
                     DB_POOL_TIMEOUT="0.5")
    done = manage(["collectstatic", "--noinput", "-v0"], env)
    assert done.returncode == 0, done.stdout + done.stderr
    got = shell(ASGI_GET + textwrap.dedent("""
        import json
        from django.conf import settings
        cookie = f"{settings.SESSION_COOKIE_NAME}={'a' * 32}"

        async def three():
            page = await asgi_get("/cases/?q=x", cookie=cookie)
            partial = await asgi_get("/cases/?q=x", cookie=cookie, headers=[
                ("hx-request", "true"), ("hx-current-url", "http://127.0.0.1/cases/?q=x")])
            api = await asgi_get("/api/cases/case-7K2M9QXA/", headers=[
                ("authorization", "Bearer nope")])
            return [(s, h, b.decode()) for s, h, b in (page, partial, api)]

        print(json.dumps(asyncio.run(three())))
    """), env)
    (page_status, page_headers, page), (part_status, part_headers, part), api = got
    assert page_status == 503 and page_headers["Retry-After"] == "5"
    assert "The database is not answering" in page and 'href="/cases/?q=x"' in page
    assert "Traceback" not in page and "psycopg" not in page
    assert part_status == 503 and part_headers["HX-Retarget"] == "main"
    assert part.lstrip().startswith('<section class="error-page"')
    assert 'href="http://127.0.0.1/cases/?q=x"' in part
    assert api[0] == 503 and json.loads(api[2]) == {
        "error": "The database is not answering; try again shortly."}


def test_a_second_start_keeps_the_cluster_and_its_data(postgres_server):
    import psycopg

    url = postgres_server.new_database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create table kept (note text)")
        conn.execute("insert into kept values ('still here')")
    log = Path(postgres_server.directory, "postgres.log")
    made = log.read_text().count("creating the cluster")
    postgres_server.restart()
    with psycopg.connect(url) as conn:
        assert conn.execute("select note from kept").fetchall() == [("still here",)]
    assert log.read_text().count("creating the cluster") == made == 1
    # SIGTERM became the fast shutdown, which leaves a cleanly shut-down cluster.
    assert "received fast shutdown request" in log.read_text()


def test_the_documented_production_env_runs_on_postgresql(postgres_server, tmp_path):
    env = {**django_env(tmp_path), **documented_env(),
           "DATABASE_URL": postgres_server.new_database()}
    result = manage(["check", "--deploy", "--database", "default", "--fail-level", "WARNING"],
                    env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    # The checks do not connect to PostgreSQL; reading the migration table does.
    shown = manage(["showmigrations", "auth"], env)
    assert shown.returncode == 0, shown.stderr
    assert " [ ] 0001_initial" in shown.stdout  # a new database, reached through psycopg
    env["DATABASE_URL"] = re.sub(r":[^:@/]+@", ":wrong@", env["DATABASE_URL"])
    refused = manage(["showmigrations", "auth"], env)
    assert refused.returncode != 0 and "password authentication failed" in refused.stderr


# --- `make run-prod`'s process set -----------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(ppid, []).append(int(entry))
    return tree


def descendants(pid: int) -> dict[int, str]:
    """Every process below `pid`, with its command line."""
    tree, found, todo = _children(), {}, [pid]
    while todo:
        for child in tree.get(todo.pop(), []):
            try:
                cmd = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            found[child] = cmd.decode(errors="replace").strip()
            todo.append(child)
    return found


def alive(pid: int, cmd: str) -> bool:
    """Still running as the same program (not a zombie, not a reused pid)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        now = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return False
    return state != "Z" and now == cmd


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


class Browser:
    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.cookies), NoRedirect())

    def get(self, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
        return self._open(urllib.request.Request(self.base + path, headers=headers))

    def post(self, path: str, data: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        body = urllib.parse.urlencode(data).encode()
        return self._open(urllib.request.Request(self.base + path, data=body, headers={
            "Referer": self.base + path}))

    def _open(self, request: urllib.request.Request) -> tuple[int, dict[str, str], bytes]:
        try:
            with self.opener.open(request, timeout=15) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as err:
            return err.code, dict(err.headers), err.read()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any) -> None:
        return None


def wait_for(check: Any, timeout: float, what: str, proc: subprocess.Popen[str],
             log: Path) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
        except (OSError, AssertionError):
            pass
        if proc.poll() is not None:
            pytest.fail(f"run-prod exited ({proc.returncode}) waiting for {what}:\n"
                        + log.read_text()[-4000:])
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n" + log.read_text()[-4000:])
        time.sleep(0.5)


def pollers(address: str, task_queue: str) -> list[str]:
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.client import Client

    async def ask() -> list[str]:
        client = await Client.connect(address)
        desc = await client.workflow_service.describe_task_queue(DescribeTaskQueueRequest(
            namespace="default", task_queue=TaskQueue(name=task_queue),
            task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW))
        return [p.identity for p in desc.pollers]

    return run(ask())


def test_run_prod_serves_the_production_shape_and_stops_every_process():
    # Not pytest's tmp dir (0700): PostgreSQL runs as an unprivileged user under root.
    var = Path(tempfile.mkdtemp(prefix="tracerail-prod-"))
    var.chmod(0o755)
    ports = {name: free_port() for name in
             ("WEB_PORT", "TEMPORAL_PORT", "TEMPORAL_UI_PORT", "PG_PORT", "REDIS_PORT")}
    env = {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "HOME": os.environ.get("HOME", str(var)), "LANG": "C.UTF-8",
           "TRACERAIL_VAR_DIR": str(var), "DEMO_CASES": "2",
           **{k: str(v) for k, v in ports.items()}}
    log = var / "run-prod.log"
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen([str(ROOT / "bin" / "run-prod")], cwd=ROOT, env=env,
                                stdout=out, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)
    web = Browser(f"http://127.0.0.1:{ports['WEB_PORT']}")
    seen: dict[int, str] = {}
    streams: list[Any] = []  # held open while stopping: open streams must not stall Ctrl-C
    try:
        wait_for(lambda: web.get("/healthz?temporal=1")[0] == 200, 80, "/healthz?temporal=1",
                 proc, log)
        up = time.monotonic() - started

        # Two run_worker processes, each polling the case task queue as itself.
        def two_pollers() -> list[str]:
            found = pollers(f"127.0.0.1:{ports['TEMPORAL_PORT']}", "tracerail-cases")
            return found if len(found) == 2 else []

        identities = wait_for(two_pollers, 30, "two worker pollers", proc, log)

        # The gunicorn master and its three uvicorn workers. With --preload the first worker
        # answers /healthz the moment it is forked, while the master still sleeps up to 0.1 s
        # between forks (CI once scanned between the second fork and the third).
        def whole_web() -> dict[int, str]:
            found = descendants(proc.pid)
            return found if sum("uvicorn_worker.UvicornWorker" in c
                                for c in found.values()) == 4 else {}

        seen = wait_for(whole_web, 30, "the gunicorn master and three workers", proc, log)
        workers = {pid for pid, cmd in seen.items() if "manage.py run_worker" in cmd}
        assert len(workers) == 2
        assert {int(i.split("@")[0]) for i in identities} == workers

        commands = list(seen.values())
        assert any(c.startswith("postgres -D " + str(var / "pg")) for c in commands)
        assert any(c.startswith("redis-server 127.0.0.1:" + str(ports["REDIS_PORT"]))
                   for c in commands)
        assert any("temporal server start-dev" in c
                   and "frontend.namespaceRPS.visibility=30" in c for c in commands)
        # Still four a moment later: no worker died on its first requests and was replaced.
        time.sleep(1)
        assert sorted(p for p, c in descendants(proc.pid).items()
                      if "uvicorn_worker.UvicornWorker" in c) == sorted(
            p for p, c in seen.items() if "uvicorn_worker.UvicornWorker" in c), "\n".join(
            line for line in log.read_text(errors="replace").splitlines() if "web" in line)

        # DEBUG off: an unknown page is the product's 404, not Django's debug page.
        status, _, body = web.get("/no-such-page/")
        assert status == 404 and b"Not found \xc2\xb7 Tracerail" in body
        assert b"URLconf" not in body and b"DEBUG = True" not in body

        status, _, login_page = web.get("/login/")
        assert status == 200 and b'name="password"' in login_page
        # Hashed names: collectstatic ran with the manifest storage DEBUG off uses...
        css = re.search(rb'href="(/static/css/app\.[0-9a-f]{12}\.css)"', login_page)
        assert css is not None, login_page[:2000]
        status, headers, _ = web.get(css.group(1).decode(), **{"Accept-Encoding": "gzip"})
        # ...and whitenoise serves them: compressed, cached for ever.
        assert status == 200 and headers["Content-Type"].startswith("text/css")
        assert headers.get("Content-Encoding") == "gzip"
        assert "immutable" in headers["Cache-Control"]

        # A whole login: the session is written to PostgreSQL by one gunicorn worker and
        # read by whichever answers next; the case list comes from Temporal.
        credentials = {line.split("\t")[0]: line.split("\t")[2].strip() for line in
                       (var / "demo-credentials.txt").read_text().splitlines()}
        token = next(c.value for c in web.cookies if c.name == "csrftoken")
        status, headers, _ = web.post("/login/", {
            "username": "admin", "password": credentials["admin"],
            "csrfmiddlewaretoken": token})
        assert status == 302 and headers["Location"] == "/cases/"

        demo = [demo_case(DEFAULT_SEED, i, ["billing", "general", "technical"]).case_id
                for i in range(2)]

        def listed() -> bool:
            got = [web.get("/cases/") for _ in range(4)]
            return all(s == 200 and all(i.encode() in b for i in demo) for s, _, b in got)

        wait_for(listed, 20, "the seeded cases in the list", proc, log)

        # Server push: a stream opens, and the change feed behind it keeps its lease in the
        # stack's Redis (REDIS_URL, prefixed keys), held by one of the gunicorn workers.
        stream = web.opener.open(urllib.request.Request(web.base + "/events/"), timeout=15)
        streams.append(stream)
        assert stream.headers["Content-Type"].startswith("text/event-stream")
        assert stream.readline() == b": connected\n"
        store = redis.Redis(port=ports["REDIS_PORT"],
                            password=(var / "redis-password").read_text().strip())

        def lease_holder() -> str | None:
            raw = store.get("tracerail:1:lease:feed-poller")  # redis-py's Lock: "host:pid:…"
            return raw.decode() if raw else None

        holder = wait_for(lease_holder, 20, "the feed's lease in Redis", proc, log)
        web_pids = {pid for pid, cmd in seen.items() if "uvicorn_worker.UvicornWorker" in cmd}
        assert int(holder.split(":")[1]) in web_pids
        # The stack's Redis answers only with the password its processes have in REDIS_URL.
        with pytest.raises(redis.exceptions.AuthenticationError):  # not retried for seconds
            redis.Redis(port=ports["REDIS_PORT"], retry=Retry(NoBackoff(), 0)).ping()
        assert (var / "redis-password").stat().st_mode & 0o777 == 0o600
        assert (var / "staticfiles" / "staticfiles.json").exists()
        assert (var / "secret-key").stat().st_mode & 0o777 == 0o600
    finally:
        seen.update(descendants(proc.pid))  # whatever started, if the test failed early
        stopping = time.monotonic()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl-C, to honcho only
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        stopped = time.monotonic() - stopping
        for stream in streams:
            stream.close()
        left = {pid: cmd for pid, cmd in seen.items() if alive(pid, cmd)}
        for pid in left:  # never leave a stray server behind, even when failing
            os.kill(pid, signal.SIGKILL)
        output = log.read_text()
        shutil.rmtree(var, ignore_errors=True)
    assert left == {}, output[-3000:]
    assert proc.returncode == 130  # honcho's code for "stopped by SIGINT"
    assert all(port_free(port) for port in ports.values())
    assert stopped < 10, f"stopping took {stopped:.1f}s"
    print(f"run-prod: /healthz?temporal=1 after {up:.1f}s, stopped in {stopped:.1f}s")
