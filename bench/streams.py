"""Idle streams: what K open, idle event streams cost one web process, and whether a change
still reaches every one of them quickly.

Run from the repository root:

    .venv/bin/python -m bench.streams [--streams 5000] [--rate 100] [--idle 60] [--changes 3]

Starts its own stack (bench/harness.py): a Temporal dev server, one `manage.py run_worker`,
Redis as the shared store when the tree has a `REDIS_URL` setting (`--redis off`: the
in-process change log) and ONE web process, `uvicorn tracerail.asgi:application`. Seeds
`--cases` cases and picks one open case, the probe. Users of the Supervisor group get a
session each, written straight through Django's session engine (no password hashing), with
EVENTS_MAX_PER_SESSION (8) streams per session, so no stream displaces another.

Then, from one asyncio client on raw sockets (the bench's own process):

1. warm-up: a few streams opened and closed (imports, the feed's thread, first renders), then
   the web process's RSS, threads and CPU time are read from /proc/<pid> with no stream open,
   over an idle baseline window (`--baseline` s);
2. `--streams` K streams are opened at `--rate` per second (at most `--concurrency` opening
   at once), every one watching the probe: `--kind case` streams `/events/?case=<probe>`,
   `list` streams `/events/?queue=<probe's queue>`, `mixed` (default) half of each;
3. idle window (`--idle` s): nothing changes; RSS, threads and CPU seconds of the web process
   (utime + stime from /proc/<pid>/stat) before and after;
4. `--changes` times: a comment on the probe (a workflow Update through the gateway, as an
   action does), then the time from the Update's answer until each stream received the event
   naming it (`event: case` / `event: row`), until all have or `--wait` s passed.

The file-descriptor limit is raised (RLIMIT_NOFILE to its hard limit) before anything starts;
the web process inherits it. Speed goals are reported, never asserted: the exit code is not 0
only when the benchmark itself failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import os
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from bench.agents import start_redis, tree_has_redis_setting
from bench.harness import Stack, exit_hard, load_average, machine, percentile, say

MARKERS = {"case": b"event: case\n", "list": b"event: row\n"}
CLK_TCK = os.sysconf("SC_CLK_TCK")
GOAL_SECONDS = 3.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=5000, help="idle streams to hold open")
    parser.add_argument("--rate", type=float, default=100.0, help="streams opened per second")
    parser.add_argument("--concurrency", type=int, default=64,
                        help="streams being opened at once, at most")
    parser.add_argument("--kind", choices=("mixed", "case", "list"), default="mixed",
                        help="case-page streams, list streams on the probe's queue, or half each")
    parser.add_argument("--baseline", type=float, default=30.0,
                        help="seconds of the idle window with no stream open")
    parser.add_argument("--idle", type=float, default=60.0,
                        help="seconds of the idle window with every stream open")
    parser.add_argument("--changes", type=int, default=3, help="changes made to the probe")
    parser.add_argument("--wait", type=float, default=30.0,
                        help="seconds to wait for a change to reach every stream")
    parser.add_argument("--cases", type=int, default=30)
    parser.add_argument("--redis", choices=("auto", "off"), default="auto",
                        help="auto: Redis as the shared store when the tree has REDIS_URL")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


# --- the web process, from /proc ---------------------------------------------------------------


@dataclass
class Sample:
    at: float
    rss_kb: int
    threads: int
    cpu_s: float
    fds: Counter[str]


def sample(pid: int) -> Sample:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = next(int(line.split()[1]) for line in status.splitlines()
               if line.startswith("VmRSS:"))
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat.rpartition(")")[2].split()  # after the command name, which may hold spaces
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    fds: Counter[str] = Counter()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            fds[target.split(":", 1)[0] if ":" in target else "file"] += 1
    return Sample(time.monotonic(), rss, len(os.listdir(f"/proc/{pid}/task")),
                  (utime + stime) / CLK_TCK, fds)


def sockets(pid: int, names: dict[int, str]) -> Counter[str]:
    """The process's sockets by what they connect: its TCP sockets by local or remote port
    (`names`: port -> name), the rest by kind."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            if target.startswith("socket:["):
                inodes.add(int(target[8:-1]))
    found: Counter[str] = Counter()
    for table in ("tcp", "tcp6", "udp", "udp6", "unix"):
        with contextlib.suppress(OSError):
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
            for line in lines:
                cols = line.split()
                inode = int(cols[6] if table == "unix" else cols[9])
                if inode not in inodes:
                    continue
                inodes.discard(inode)
                if table == "unix":
                    found["unix"] += 1
                    continue
                local, remote = (int(c.rsplit(":", 1)[1], 16) for c in cols[1:3])
                found[names.get(local) or names.get(remote) or
                      f"{table} :{local}->:{remote}"] += 1
    found["other"] += len(inodes)
    return +found


# --- the client ---------------------------------------------------------------------------------


@dataclass
class Stream:
    path: str
    session: str
    kind: str
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    open_ms: float = 0.0
    error: str = ""
    ended: bool = False
    received: int = 0  # bytes after the response head
    got: dict[int, float] = field(default_factory=dict)  # change number -> monotonic time


class Client:
    def __init__(self, port: int) -> None:
        self.port = port
        self.streams: list[Stream] = []
        self.armed = 0  # the change being waited for (0: none)
        self.waiting: set[int] = set()  # indexes of streams that have not received it
        self.all_in = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def open(self, stream: Stream, index: int) -> None:
        start = time.monotonic()
        try:
            async with asyncio.timeout(60):
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port,
                                                               limit=1 << 20)
                writer.write((f"GET {stream.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                              f"Cookie: sessionid={stream.session}\r\n"
                              "Accept: text/event-stream\r\nCache-Control: no-cache\r\n"
                              "User-Agent: tracerail-bench-streams\r\n\r\n").encode())
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                status = head.split(b" ", 2)[1]
                if status != b"200":
                    writer.close()
                    stream.error = f"HTTP {status.decode()}"
                    return
                # The stream is open once its first frame (": connected", the id) is in.
                first = await reader.read(65536)
                if not first:
                    raise ConnectionError("closed before the first frame")
                stream.received += len(first)
        except (OSError, TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as err:
            stream.error = type(err).__name__
            return
        stream.reader, stream.writer = reader, writer
        stream.open_ms = (time.monotonic() - start) * 1000
        self.tasks.append(asyncio.create_task(self.follow(stream, index)))

    async def follow(self, stream: Stream, index: int) -> None:
        """Read until the stream ends; note when the armed change's event came. A marker is
        looked for in each read as it arrived (a frame split across reads is joined with
        the tail of the previous read)."""
        assert stream.reader is not None
        marker = MARKERS[stream.kind]
        tail = b""
        try:
            while data := await stream.reader.read(65536):
                stream.received += len(data)
                if self.armed and index in self.waiting and marker in tail + data:
                    stream.got[self.armed] = time.monotonic()
                    self.waiting.discard(index)
                    if not self.waiting:
                        self.all_in.set()
                tail = data[-len(marker):]
        except (OSError, asyncio.IncompleteReadError):
            pass
        stream.ended = True

    def arm(self, number: int) -> None:
        self.armed = number
        self.waiting = {i for i, s in enumerate(self.streams)
                        if s.writer is not None and not s.ended}
        self.all_in.clear()
        if not self.waiting:
            self.all_in.set()

    def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        for s in self.streams:
            if s.writer is not None:
                s.writer.close()


async def open_all(client: Client, streams: list[Stream], rate: float,
                   concurrency: int) -> float:
    gate = asyncio.Semaphore(concurrency)
    start = time.monotonic()
    last_said = start

    async def one(i: int, s: Stream) -> None:
        async with gate:
            await client.open(s, i)

    pending = []
    base = len(client.streams)
    for i, s in enumerate(streams):
        client.streams.append(s)
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        await gate.acquire()  # never more than `concurrency` waiting to connect
        gate.release()
        pending.append(asyncio.create_task(one(base + i, s)))
        if time.monotonic() - last_said > 10:
            last_said = time.monotonic()
            opened = sum(1 for x in streams if x.writer is not None)
            say(f"{opened} streams open, {i + 1} asked for")
    await asyncio.gather(*pending)
    return time.monotonic() - start


# --- setup --------------------------------------------------------------------------------------


def create_sessions(count: int) -> list[str]:
    """`count` Supervisor users (every queue visible), one session each, written straight into
    the session engine: no password, no hashing."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import Group, User

    store = importlib.import_module(settings.SESSION_ENGINE).SessionStore
    group = Group.objects.get_or_create(name="Supervisor")[0]
    keys = []
    for i in range(count):
        user = User(username=f"watcher{i:05d}")
        user.set_unusable_password()
        user.save()
        user.groups.add(group)
        session = store()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        keys.append(session.session_key or "")
    return keys


async def pick_probe(case_ids: list[str]) -> tuple[str, str]:
    from cases.temporal import gateway

    for case_id in case_ids:
        state = await gateway.get_case(case_id)
        if state.status not in ("resolved", "closed"):
            return case_id, state.queue
    raise RuntimeError("no open case to watch")


def raise_fd_limit() -> int:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# --- the run ------------------------------------------------------------------------------------


@dataclass
class Result:
    notes: list[str] = field(default_factory=list)
    rows: list[tuple[str, str]] = field(default_factory=list)


async def idle_window(pid: int, seconds: float) -> tuple[Sample, Sample]:
    first = sample(pid)
    await asyncio.sleep(seconds)
    return first, sample(pid)


async def run(stack: Stack, args: argparse.Namespace, sessions: list[str], probe: str,
              queue: str, pid: int, result: Result) -> None:
    from cases.temporal import gateway
    from workers.model import AddComment

    client = Client(stack.web_port)
    per_session = 8

    def path(kind: str) -> str:
        return f"/events/?case={probe}" if kind == "case" else f"/events/?queue={queue}"

    def kind_of(i: int) -> str:
        return args.kind if args.kind != "mixed" else ("case", "list")[i % 2]

    # Warm-up: a few streams opened and closed, so the baseline holds what any stream needs.
    warm = [Stream(path(kind_of(i)), sessions[0], kind_of(i)) for i in range(4)]
    await open_all(client, warm, 10, 4)
    client.close()
    client = Client(stack.web_port)
    await asyncio.sleep(3)
    base0, base1 = await idle_window(pid, args.baseline)
    base_cpu = (base1.cpu_s - base0.cpu_s) / (base1.at - base0.at) * 60
    say(f"no streams: RSS {base1.rss_kb / 1024:.0f} MB, {base1.threads} threads, "
        f"{base_cpu:.2f} CPU s/min idle")

    streams = [Stream(path(kind_of(i)), sessions[i // per_session], kind_of(i))
               for i in range(args.streams)]
    say(f"opening {args.streams} streams at {args.rate:g}/s")
    took = await open_all(client, streams, args.rate, args.concurrency)
    opened = [s for s in streams if s.writer is not None]
    errors = Counter(s.error for s in streams if s.error)
    say(f"{len(opened)} streams open after {took:.0f} s"
        + (f"; errors: {dict(errors)}" if errors else ""))
    await asyncio.sleep(5)  # what the opening started settles
    idle0, idle1 = await idle_window(pid, args.idle)
    idle_cpu = (idle1.cpu_s - idle0.cpu_s) / (idle1.at - idle0.at) * 60
    n = max(1, len(opened))
    still = sum(1 for s in opened if not s.ended)
    names = {stack.web_port: "HTTP (streams)", stack.temporal_port: "Temporal"}
    if args.redis_port:
        names[args.redis_port] = "Redis"
    held = sockets(pid, names)
    say(f"{len(opened)} streams: RSS {idle1.rss_kb / 1024:.0f} MB, {idle1.threads} threads, "
        f"{idle_cpu:.2f} CPU s/min idle; {still} still open")

    # Changes: each a comment on the probe, timed from the Update's answer.
    spans: list[float] = []
    per_change = []
    for number in range(1, args.changes + 1):
        client.arm(number)
        expected = len(client.waiting)
        sent = time.monotonic()
        state = await gateway.act(probe, AddComment(actor="bench", body=f"change {number}"))
        answered = time.monotonic()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.all_in.wait(), args.wait)
        times = [s.got[number] - answered for s in streams if number in s.got]
        spans += times
        within = sum(1 for t in times if t <= GOAL_SECONDS)
        per_change.append(
            f"change {number} (version {state.version}, Update {1000 * (answered - sent):.0f} "
            f"ms): {len(times)}/{expected} streams got it, {within} within "
            f"{GOAL_SECONDS:g} s; p50 {percentile(times, 50):.2f} s, p95 "
            f"{percentile(times, 95):.2f} s, max {max(times, default=float('nan')):.2f} s, "
            f"first {min(times, default=float('nan')):.2f} s")
        say(per_change[-1])
        await asyncio.sleep(5)
    after = sample(pid)
    client.close()

    total = args.changes * len(opened)
    open_ms = [s.open_ms for s in opened]
    result.rows = [
        ("streams open / asked for", f"{len(opened)} / {args.streams} ({args.kind}; "
         f"{still} still open after the idle window)"
         + (f"; errors: {', '.join(f'{k} {v}' for k, v in errors.items())}" if errors else "")),
        ("opening", f"{took:.0f} s at {args.rate:g}/s asked; time to first frame p50 "
         f"{percentile(open_ms, 50):.0f} ms, p95 {percentile(open_ms, 95):.0f} ms"),
        ("web RSS: no streams → open and idle", f"{base1.rss_kb / 1024:.0f} MB → "
         f"{idle1.rss_kb / 1024:.0f} MB"),
        ("RSS per stream", f"{(idle1.rss_kb - base1.rss_kb) / n:.1f} kB"),
        ("threads in the web process", f"{base1.threads} → {idle1.threads} "
         f"(after the changes: {after.threads})"),
        ("open fds in the web process", f"{base1.fds.total()} → {idle1.fds.total()} ("
         + ", ".join(f"{k} {base1.fds[k]} → {v}" for k, v in idle1.fds.most_common()) + ")"),
        ("sockets of the web process, streams open", ", ".join(
            f"{k} {v}" for k, v in held.most_common())),
        ("web CPU idle, no streams", f"{base_cpu:.2f} CPU s/min (over {args.baseline:g} s)"),
        ("web CPU idle, streams open", f"{idle_cpu:.2f} CPU s/min (over {args.idle:g} s)"),
        ("CPU per stream per minute (net of no-stream idle)",
         f"{(idle_cpu - base_cpu) / n * 1000:.3f} CPU ms"),
        ("change → every stream (all changes)",
         f"{len(spans)}/{total} deliveries; p50 {percentile(spans, 50):.2f} s, p95 "
         f"{percentile(spans, 95):.2f} s, max {max(spans, default=float('nan')):.2f} s"),
        (f"deliveries within {GOAL_SECONDS:g} s",
         f"{sum(1 for t in spans if t <= GOAL_SECONDS)}/{total}"),
    ]
    result.notes += per_change


def report(args: argparse.Namespace, result: Result) -> str:
    lines = [
        f"Tracerail idle streams — {machine()}",
        *result.notes,
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in result.rows],
        "",
        "Change times run from the Update's answer in the bench to the event arriving at the "
        "client (the feed polls Visibility about once a second, so most of it is the poll "
        "and the index); the client is one asyncio loop on the same CPUs, so its own reading "
        "is in the figures too. CPU = utime + stime of the web process from /proc/<pid>/stat; "
        "RSS = VmRSS; threads = /proc/<pid>/task.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    limit = raise_fd_limit()
    if limit < args.streams + 200:
        raise SystemExit(f"the fd limit is {limit}: too low for {args.streams} streams")
    result = Result()
    with Stack(keep_dir=args.keep) as stack:
        stack.start_backend()
        store = "in-process change log (one web process)"
        args.redis_port = 0
        if args.redis == "auto" and tree_has_redis_setting():
            url = start_redis(stack)
            args.redis_port = int(url.rsplit(":", 1)[1].split("/")[0])
            stack.env["REDIS_URL"] = os.environ["REDIS_URL"] = url
            store = f"Redis change log ({url})"
        case_ids = stack.seed(args.cases)
        stack.wait_until_ready(case_ids)
        probe, queue = stack.run(pick_probe(case_ids))
        sessions = create_sessions((args.streams + 7) // 8)
        stack.start_web()
        pid = next(c.proc.pid for c in stack.children.children if c.name == "web")
        result.notes += [
            f"web: one uvicorn process (pid {pid}), DEBUG=false; {store}; fd limit {limit}",
            f"probe: {probe} (queue {queue}); {len(sessions)} Supervisor sessions, 8 streams "
            f"each; load average before {load_average()}",
        ]
        stack.run(run(stack, args, sessions, probe, queue, pid, result))
        result.notes.append(f"load average after {load_average()}")
        stack.check_alive()
    print(report(args, result), flush=True)


if __name__ == "__main__":
    with exit_hard():
        main()
