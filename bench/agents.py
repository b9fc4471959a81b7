"""Agents at work: 50 / 200 / 500 simulated agents doing what the pages do, per mode.

Run from the repository root:

    .venv/bin/python -m bench.agents [--agents 50,200,500] [--minutes 2] [--mode push,poll]

Starts its own stack (bench/harness.py): a Temporal dev server with Temporal Cloud's
Visibility limit (`frontend.namespaceRPS.visibility=30`) and its `/metrics` port, one
`manage.py run_worker`, Redis as the shared cache when the tree has a `REDIS_URL` setting,
and the web app under gunicorn with 2 uvicorn workers (`-k uvicorn_worker.UvicornWorker -w 2`)
with the production defaults for Visibility: `VISIBILITY_CACHE_SECONDS=3` and each process's
share of the namespace's 30 calls/s (`VISIBILITY_RPS=15`). Then 300 cases are seeded.
Django's own tables are SQLite, or with `--database postgres` a PostgreSQL made by
`bin/prod-postgres` (the production stack's; its pool per process, `DB_POOL_SIZE`).

Each simulated agent (a user in the Agent group, member of one queue) arrives during the ramp
and opens its list page, a queue list (`/cases/?queue=<q>`, 3 in 5 agents) or "my cases"
(`/cases/?assignee=me`), and keeps it live:

- `poll` (today's pages): GET the results partial with `HX-Request: true` every
  LIST_REFRESH_SECONDS (10 s);
- `push`: holds `GET /events/?<same filter>` (server-sent events) open; `event: row` carries
  a changed row, `event: results` the list's new results (when its membership changed) and
  `event: counts` the chips; it re-fetches the results partial only when told `event: list`.

Now and then (every `--open-every` s on average) it opens a case from its list in a second
tab ("my cases" agents pick from their queue's list, a "queue look", when they have nothing
yet and 3 times in 10 otherwise, as agents look for work): GET /cases/<id>/, and keeps it
open for about `--case-open` s: in `poll` mode it asks
`?since=<version>` every CASE_REFRESH_SECONDS (5 s) with HX-Request, in `push` mode it holds
`/events/?case=<id>` and re-fetches `?since=` when told `event: case`. About once a minute
(`--act-every`) it acts on the open case (opening one first if none is): it claims an
unassigned case, changes the status of its own, or comments, posting the form's fields
(version, key) with the CSRF token from the case page and HX-Request, as the forms do.

Per level it reports Visibility calls per second as the server's own `/metrics` counts them
(`service_requests` of ListWorkflowExecutions, CountWorkflowExecutions and
ScanWorkflowExecutions, read before and after the steady-state window), calls per
agent-minute, errors by request kind and status (timeouts included), p50/p95 per request kind,
and freshness: from an action's response at one agent to the first other agent's open screen
receiving it (push: the first event naming that case on another agent's stream; poll: the
first refresh response showing the new row or version).

Sessions are written straight through Django's session engine: a real login costs a password
hash (hundreds of ms of CPU each), which is not what this measures.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import importlib
import os
import random
import re
import resource
import shutil
import signal
import sys
import time
import urllib.parse
import uuid
from collections import Counter, deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from bench.harness import (
    BIN,
    REPO,
    TEMPORAL_PORTS,
    Stack,
    exit_hard,
    free_port,
    load_average,
    machine,
    percentile,
    say,
    wait_for_port,
)

VISIBILITY_OPERATIONS = ("ListWorkflowExecutions", "CountWorkflowExecutions",
                         "ScanWorkflowExecutions")
REQUESTS, REFUSED = "service_requests", "service_errors_resource_exhausted"
QUERY_OPERATIONS = ("QueryWorkflow",)
KINDS = ("list load", "list refresh", "queue look", "case load", "case refresh", "action")
BUSY_PHRASE = "Many people are changing this case right now"

ROW_RE = re.compile(r'<tr id="row-([^"]+)"[^>]*>(.*?)</tr>', re.S)
# The "Updated" cell (case_tags.case_row). Written for its old class ("nowrap"), this matched
# nothing since issue 18's layout, so any row pushed for a case counted as showing a change.
UPDATED_RE = re.compile(r'<td class="col-updated"><time datetime="([^"]+)"')
VERSION_RE = re.compile(r'<article id="case"[^>]*?data-version="(\d+)"')
FORM_RE = re.compile(r'class="action action-(\w+)')
ASSIGNEE_RE = re.compile(r'<dd class="assignee">(.*?)</dd>', re.S)
STATUS_RE = re.compile(r'<option value="(\w+)" selected>')
SSE_CONNECT_RE = re.compile(r'sse-connect="([^"]+)"')
# Tabs whose stream broke within this many seconds of the kill are the restart's tabs; the
# Visibility calls of this many seconds after it are the reconnect's.
RESTART_GRACE = 8.0
RECONNECT_WINDOW = 10.0
RESTART_SETTLE = 30.0  # seconds the window must go on after the kill
# A change made this long before the kill may still have been on its way to the screens.
IN_FLIGHT = 3.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", default="50,200,500", help="comma-separated levels")
    parser.add_argument("--minutes", type=float, default=2.0,
                        help="steady-state window per level, after the ramp")
    parser.add_argument("--mode", default="push,poll",
                        help="push, poll, or both (comma-separated; poll is today's design)")
    parser.add_argument("--ramp", type=float, default=30.0,
                        help="seconds over which the agents of a level arrive")
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--open-every", type=float, default=30.0,
                        help="mean seconds between closing a case tab and opening the next")
    parser.add_argument("--case-open", type=float, default=60.0,
                        help="mean seconds a case tab stays open")
    parser.add_argument("--act-every", type=float, default=60.0,
                        help="mean seconds between an agent's actions")
    parser.add_argument("--processes", type=int, default=2, help="gunicorn uvicorn workers")
    parser.add_argument("--server-visibility-rps", type=int, default=30,
                        help="the dev server's frontend.namespaceRPS.visibility (Cloud: 30)")
    parser.add_argument("--app-visibility-rps", type=float, default=0,
                        help="VISIBILITY_RPS (default: with Redis, the deployment's budget, "
                        "server's - 5; without, each process's share, server's / processes)")
    parser.add_argument("--cache-seconds", type=float, default=3.0,
                        help="VISIBILITY_CACHE_SECONDS (the product's default)")
    parser.add_argument("--redis", choices=("auto", "off"), default="auto",
                        help="auto: Redis as the shared cache when the tree has REDIS_URL")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite",
                        help="Django's own tables (sessions, users, configuration): SQLite "
                        "as `make run` has them, or PostgreSQL as `make run-prod` has them")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds a request may take before it counts as a timeout")
    parser.add_argument("--restart-after", type=float, default=0.0,
                        help="push mode: kill one gunicorn worker this many seconds into the "
                        "steady window (its master starts a new one) and measure the tabs' "
                        "way back; 0: no restart")
    parser.add_argument("--restart-signal", choices=("KILL", "TERM"), default="KILL",
                        help="KILL: the process dies at once (a crash, an OOM kill); TERM: a "
                        "graceful stop (streams are cut after gunicorn's 5 s graceful timeout)")
    parser.add_argument("--restart-worker", choices=("first", "last"), default="first",
                        help="which worker to restart, in the order the master lists them "
                        "(the first started usually holds the feed poller's lease)")
    parser.add_argument("--probe-every", type=float, default=1.0,
                        help="with --restart-after: seconds between the bench's own comments "
                        "on one probe case per queue, so changes keep being made")
    parser.add_argument("--reconnect", default="0.5,3",
                        help="an event stream that broke reconnects after a random delay in "
                        "this range of seconds (or the server's `retry:`), sending its last "
                        "id as Last-Event-ID, as EventSource does")
    parser.add_argument("--seed", type=int, default=20261126)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    args.levels = [int(v) for v in args.agents.split(",") if v]
    args.modes = [m for m in args.mode.split(",") if m]
    if not set(args.modes) <= {"push", "poll"} or not args.modes:
        parser.error("--mode: push, poll or push,poll")
    low, _, high = args.reconnect.partition(",")
    args.reconnect_range = (float(low), float(high or low))
    if args.restart_after:
        if args.modes != ["push"]:
            parser.error("--restart-after measures push streams: use --mode push")
        if args.processes < 2:
            parser.error("--restart-after needs --processes 2 or more (one is restarted)")
        if args.minutes * 60 < args.restart_after + RESTART_SETTLE:
            parser.error(f"--minutes must leave {RESTART_SETTLE:.0f} s after --restart-after")
    return args


# --- a small HTTP/1.1 client on asyncio streams ------------------------------------------------


class HttpError(Exception):
    """A response that ended badly, or a stream that could not be opened."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


@dataclass
class Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k == name), "")

    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


_told: set[str] = set()


def _server_timing(value: str) -> tuple[float | None, float | None]:
    """`app` and `temporal` of a Server-Timing header (cases/web/middleware.server_timing)."""
    found: dict[str, float] = {}
    for part in value.split(","):
        name, *params = [p.strip() for p in part.split(";")]
        for param in params:
            key, _, dur = param.partition("=")
            if key == "dur":
                with contextlib.suppress(ValueError):
                    found[name] = float(dur)
    return found.get("app"), found.get("temporal")


def _say_why(kind: str, err: HttpError) -> None:
    """A connection error's cause, once per kind of cause, on stderr: the table only counts."""
    why = f"{kind}: {err.kind}: {err.__cause__!r}"
    if err.__cause__ is not None and why not in _told and len(_told) < 20:
        _told.add(why)
        print(f"[bench] {why}", file=sys.stderr)


class Conn:
    """One keep-alive connection, like one browser connection: requests one at a time."""

    def __init__(self, port: int, jar: dict[str, str]) -> None:
        self.port, self.jar = port, jar
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.busy = False  # HTTP/1.1: one request at a time; a second would read its answer
        self.last_id = ""  # an event stream's last `id:` (EventSource's lastEventId)
        self.retry_ms: int | None = None  # an event stream's `retry:`, if the server sent one

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None

    def _head(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}",
                 "Accept: text/html", "User-Agent: tracerail-bench-agents"]
        if self.jar:
            lines.append("Cookie: " + "; ".join(f"{k}={v}" for k, v in self.jar.items()))
        lines += [f"{k}: {v}" for k, v in headers.items()]
        if body or method == "POST":
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body

    async def _read_head(self) -> tuple[int, list[tuple[str, str]]]:
        assert self.reader is not None
        raw = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = raw.decode("latin-1").split("\r\n")
        headers = []
        for line in header_lines:
            if line:
                key, _, value = line.partition(":")
                headers.append((key.strip().lower(), value.strip()))
        for key, value in headers:
            if key == "set-cookie":
                name, _, rest = value.partition("=")
                self.jar[name.strip()] = rest.split(";", 1)[0]
        return int(status_line.split(" ", 2)[1]), headers

    async def request(self, method: str, path: str, headers: dict[str, str] | None = None,
                      form: dict[str, str] | None = None) -> Reply:
        if self.busy:
            raise RuntimeError("a connection carries one request at a time: use another")
        self.busy = True
        try:
            return await self._request(method, path, headers, form)
        finally:
            self.busy = False

    async def _request(self, method: str, path: str, headers: dict[str, str] | None,
                       form: dict[str, str] | None) -> Reply:
        hdrs = dict(headers or {})
        body = b""
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            hdrs["Content-Type"] = "application/x-www-form-urlencoded"
        for attempt in (1, 2):
            reused = self.writer is not None
            if not reused:
                self.reader, self.writer = await asyncio.open_connection(
                    "127.0.0.1", self.port, limit=1 << 22)
            assert self.reader is not None and self.writer is not None
            try:
                self.writer.write(self._head(method, path, hdrs, body))
                await self.writer.drain()
                status, resp_headers = await self._read_head()
            except (ConnectionError, asyncio.IncompleteReadError) as err:
                # The server closed an idle keep-alive connection: reconnect once, as a
                # browser does. A fresh connection that fails is an error.
                self.close()
                if reused and attempt == 1 and not getattr(err, "partial", b""):
                    continue
                raise HttpError("connection") from err
            reply = Reply(status, resp_headers, await self._read_body(method, status,
                                                                      resp_headers))
            if reply.header("connection").lower() == "close":
                self.close()
            return reply
        raise AssertionError("unreachable")

    async def _read_body(self, method: str, status: int,
                         headers: list[tuple[str, str]]) -> bytes:
        assert self.reader is not None
        get = dict(headers).get
        if method == "HEAD" or status in (204, 304) or status < 200:
            return b""
        if "chunked" in get("transfer-encoding", ""):
            parts = []
            async for chunk in self._chunks():
                parts.append(chunk)
            return b"".join(parts)
        if get("content-length") is not None:
            return await self.reader.readexactly(int(get("content-length", "0")))
        data = await self.reader.read()
        self.close()
        return data

    async def _chunks(self) -> AsyncIterator[bytes]:
        assert self.reader is not None
        while True:
            size = int((await self.reader.readline()).split(b";", 1)[0].strip() or b"0", 16)
            if size == 0:
                while (await self.reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass
                return
            chunk = await self.reader.readexactly(size + 2)
            yield chunk[:-2]

    async def events(self, path: str) -> AsyncIterator[tuple[str, str]]:
        """GET an event stream on this connection and yield (event, data) until it ends, as
        EventSource does: the last `id:` seen is kept (`last_id`) and sent back as
        Last-Event-ID when the same Conn opens the stream again; an id-only frame (no data)
        dispatches nothing to a page but is yielded here as ("id", <id>) for the bench's
        bookkeeping; `retry:` sets `retry_ms`. ("open", "") comes first, once the stream
        answers 200."""
        self.close()
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port,
                                                                 limit=1 << 22)
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if self.last_id:
            headers["Last-Event-ID"] = self.last_id
        self.writer.write(self._head("GET", path, headers, b""))
        await self.writer.drain()
        status, resp_headers = await self._read_head()
        if status != 200:
            await self._read_body("GET", status, resp_headers)
            raise HttpError(f"HTTP {status}")
        yield "open", ""
        source = (self._chunks()
                  if "chunked" in dict(resp_headers).get("transfer-encoding", "")
                  else self._until_eof())
        buffer, event, data, seen_id = "", "", [], None
        async for chunk in source:
            buffer += chunk.decode("utf-8", "replace").replace("\r\n", "\n")
            *lines, buffer = buffer.split("\n")
            for line in lines:
                if not line:
                    if seen_id is not None:
                        self.last_id = seen_id
                    if data:
                        yield event or "message", "\n".join(data)
                    elif seen_id is not None:
                        yield "id", seen_id
                    event, data, seen_id = "", [], None
                elif line.startswith("event:"):
                    event = line[6:].strip()
                elif line.startswith("data:"):
                    data.append(line[5:].removeprefix(" "))
                elif line.startswith("id:"):
                    seen_id = line[3:].removeprefix(" ")
                elif line.startswith("retry:") and line[6:].strip().isdigit():
                    self.retry_ms = int(line[6:].strip())
        raise HttpError("stream ended")

    async def _until_eof(self) -> AsyncIterator[bytes]:
        assert self.reader is not None
        while chunk := await self.reader.read(65536):
            yield chunk


# --- what one level records ----------------------------------------------------------------


@dataclass
class Sample:
    kind: str
    start: float
    ms: float
    outcome: str  # "ok", "HTTP <status>", "timeout", "connection", ...
    # The server's own account (its Server-Timing header): Django's time and, of it, the
    # time waited on Temporal; None when the answer had none.
    app_ms: float | None = None
    temporal_ms: float | None = None


@dataclass
class Pending:
    """An action whose effect no other agent's screen has shown yet."""

    actor: int
    sent: float
    answered: float
    version: int
    updated: datetime | None


@dataclass
class Level:
    mode: str
    agents: int
    window: tuple[float, float] = (0.0, 0.0)
    samples: list[Sample] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)  # of actions, from the markup
    stream_errors: Counter[str] = field(default_factory=Counter)
    pending: dict[str, list[Pending]] = field(default_factory=dict)
    recent: dict[str, deque[tuple[float, int, int | None, datetime | None]]] = field(
        default_factory=dict)
    fresh_ms: list[float] = field(default_factory=list)
    actions: int = 0  # applied actions answered inside the window (freshness candidates)
    visibility: float = 0.0
    refused: float = 0.0
    # Workflow Queries in the steady window, as the server counts them (issue 26: a change
    # is read once whatever the number of tabs open on it).
    queries: int = 0
    load: str = ""
    # CPU seconds over the steady window: per group of the stack's processes, and the
    # bench's own (the load generator shares the 2 cores with what it measures).
    cpu: dict[str, float] = field(default_factory=dict)
    tabs: list[Tab] = field(default_factory=list)  # every event stream opened
    made: list[Made] = field(default_factory=list)  # every change applied (actions, probes)
    restart: Restart | None = None

    def in_window(self, t: float) -> bool:
        return self.window[0] <= t <= self.window[1]

    def observe(self, agent: int, case_id: str, version: int | None = None,
                updated: datetime | None = None) -> None:
        """Agent `agent`'s open screen just received case `case_id` (at a version, with an
        updated time, or, for a `list` event, just its name)."""
        now = time.monotonic()
        self.recent.setdefault(case_id, deque(maxlen=32)).append((now, agent, version, updated))
        waiting = self.pending.get(case_id)
        if not waiting:
            return
        keep = []
        for p in waiting:
            if p.actor != agent and _shows(p, version, updated):
                self.fresh_ms.append(max(0.0, now - p.answered) * 1000)
            else:
                keep.append(p)
        self.pending[case_id] = keep

    def acted(self, p: Pending, case_id: str) -> None:
        if not self.in_window(p.answered):
            return
        self.actions += 1
        # Another screen may have been told before this agent's own answer arrived.
        for t, agent, version, updated in self.recent.get(case_id, ()):
            if t >= p.sent and agent != p.actor and _shows(p, version, updated):
                self.fresh_ms.append(0.0)
                return
        self.pending.setdefault(case_id, []).append(p)


# --- a tab's event stream, as the restart measure follows it ----------------------------------


@dataclass
class Made:
    """A change applied (an agent's action that was done, or a probe comment), as the screens
    that show it must come to see it."""

    case_id: str
    queue: str
    version: int
    updated: datetime | None
    at: float  # monotonic time its answer arrived
    by: int = -1  # the agent who acted (-1: the bench's probe)


@dataclass
class Tab:
    """One page's event stream (`kind` "queue", "mine" or "case"; `watch` the queue slug or
    the case id) over its whole life, reconnects included."""

    agent: int
    kind: str
    watch: str
    opened: list[float] = field(default_factory=list)  # each time the stream answered 200
    dropped: list[float] = field(default_factory=list)  # each time it broke
    closed: float = float("inf")  # the page itself closed the tab
    # Per (re)connection: what the first batch (everything before the first id) held.
    first_batches: list[tuple[float, str, int]] = field(default_factory=list)
    batch: list[tuple[str, str]] | None = None  # the current connection's first batch
    last_pos: tuple[str, int] | None = None
    backwards: int = 0
    backwards_on_reconnect: int = 0  # ... in the first id of a (re)connection
    duplicates: Counter[str] = field(default_factory=Counter)
    applied: set[tuple[str, str]] = field(default_factory=set)  # (case, row state / version)
    # (time, case, version or None, updated or None) of what the screen got: rows, results,
    # re-fetches and case events.
    seen: list[tuple[float, str, int | None, datetime | None]] = field(default_factory=list)

    def on_open(self) -> None:
        self.opened.append(time.monotonic())
        self.batch = []

    def on_frame(self, event: str, data: str) -> None:
        now = time.monotonic()
        if event == "id":
            pos = _position(data)
            if pos is not None:
                if (self.last_pos is not None and pos[0] == self.last_pos[0]
                        and pos[1] < self.last_pos[1]):
                    self.backwards += 1
                    self.backwards_on_reconnect += self.batch is not None
                self.last_pos = pos
            if self.batch is not None:
                reread = any(e in ("list", "case") and not d.strip() for e, d in self.batch)
                replayed = sum(1 for e, _ in self.batch if e in ("row", "case", "results",
                                                                  "counts", "list"))
                self.first_batches.append((now, "re-read" if reread else "resumed", replayed))
                self.batch = None
            return
        if self.batch is not None:
            self.batch.append((event, data))
        key = ""
        if event == "row":
            found = ROW_RE.search(data)
            if found:
                updated = UPDATED_RE.findall(found[2])
                key = f"{found[1]}@{updated[-1] if updated else ''}" + \
                    ("+ended" if "ended" in found[2] else "")
                self.saw(found[1], None, _updated(found[2]), now)
        elif event == "case" and data.strip().isdigit():
            key = f"{self.watch}#{data.strip()}"
            self.saw(self.watch, int(data.strip()), None, now)
        elif event == "case-html":
            found = VERSION_RE.search(data)
            if found:
                key = f"{self.watch}#{found[1]}"
                self.saw(self.watch, int(found[1]), None, now)
        if key:
            if (event, key) in self.applied:
                self.duplicates[event] += 1
            self.applied.add((event, key))

    def saw(self, case_id: str, version: int | None, updated: datetime | None,
            now: float | None = None) -> None:
        self.seen.append((time.monotonic() if now is None else now, case_id, version,
                          updated))

    def saw_html(self, html: str) -> None:
        now = time.monotonic()
        for case_id, body in ROW_RE.findall(html):
            self.saw(case_id, None, _updated(body), now)

    def shows(self, m: Made) -> bool:
        return (self.kind == "queue" and m.queue == self.watch) or (
            self.kind == "case" and m.case_id == self.watch)

    def first_seen(self, m: Made) -> float | None:
        """When this screen first showed `m` (or a later state of its case)."""
        for t, case_id, version, updated in self.seen:
            if case_id != m.case_id:
                continue
            if version is not None and version >= m.version:
                return t
            if updated is not None and m.updated is not None and \
                    updated.timestamp() >= m.updated.timestamp() - 0.01:
                return t
        return None


def _position(text: str) -> tuple[str, int] | None:
    epoch, _, seq = text.rpartition("-")
    return (epoch, int(seq)) if seq.isdigit() else None


@dataclass
class Restart:
    killed_pid: int = 0
    signal: str = "KILL"
    at: float = 0.0  # monotonic time of the kill
    respawned: float = 0.0  # when the master had a new worker (pid seen)
    baseline_vis: float = 0.0  # Visibility calls/s from the window's start to the kill
    window_calls: float = 0.0  # Visibility calls in the RECONNECT_WINDOW after the kill
    log_moved: float = float("nan")  # seconds from the kill to the log's next append
    lease_moved: float = float("nan")  # seconds from the kill until another held the lease
    later_calls: float = 0.0  # ... in the next RECONNECT_WINDOW


def _shows(p: Pending, version: int | None, updated: datetime | None) -> bool:
    if version is not None:
        return version >= p.version
    if updated is not None:
        return p.updated is not None and updated >= p.updated
    return True  # an event that only names the case


def _sse_path(page: str) -> str:
    """The stream URL a page's htmx `sse-connect` opens (with its `last=` position)."""
    found = SSE_CONNECT_RE.search(page)
    return html.unescape(found[1]) if found else ""


def _updated(row_html: str) -> datetime | None:
    found = UPDATED_RE.findall(row_html)
    return datetime.fromisoformat(found[-1]) if found else None


# --- one simulated agent ---------------------------------------------------------------------


HX = {"HX-Request": "true"}


class Agent:
    def __init__(self, index: int, session_key: str, list_path: str, queue_path: str,
                 level: Level, args: argparse.Namespace, port: int, rnd: random.Random) -> None:
        self.index, self.level, self.args, self.rnd = index, level, args, rnd
        self.list_path, self.queue_path = list_path, queue_path
        self.queue = queue_path.rpartition("=")[2]
        self.jar = {"sessionid": session_key}
        self.case_rec: Tab | None = None  # the open case tab's stream record
        self.port = port
        self.rows: list[str] = []
        self.case_id = ""
        self.version = 0
        self.page = ""
        self.next_act = 0.0
        self.conns: list[Conn] = []

    def conn(self) -> Conn:
        c = Conn(self.port, self.jar)
        self.conns.append(c)
        return c

    def close(self) -> None:
        for c in self.conns:
            c.close()

    async def timed(self, conn: Conn, kind: str, method: str, path: str,
                    headers: dict[str, str] | None = None,
                    form: dict[str, str] | None = None) -> Reply | None:
        start = time.monotonic()
        outcome, reply = "ok", None
        try:
            reply = await asyncio.wait_for(conn.request(method, path, headers, form),
                                           self.args.timeout)
        except TimeoutError:
            conn.close()  # mid-answer: the connection cannot be reused
            outcome = "timeout"
        except HttpError as err:
            outcome = err.kind
            _say_why(kind, err)
        except OSError as err:
            outcome = type(err).__name__
        else:
            if reply.status not in (200, 204):
                outcome = f"HTTP {reply.status}"
        app, spent = _server_timing(reply.header("server-timing")) if reply else (None, None)
        self.level.samples.append(Sample(kind, start, (time.monotonic() - start) * 1000,
                                         outcome, app, spent))
        return reply if outcome == "ok" else None

    # -- the list tab

    def saw_rows(self, html: str) -> None:
        rows = []
        pending = self.level.pending
        for case_id, body in ROW_RE.findall(html):
            rows.append(case_id)
            if pending.get(case_id):
                self.level.observe(self.index, case_id, updated=_updated(body))
        self.rows = rows

    async def list_tab(self, stop: asyncio.Event) -> None:
        conn = self.conn()
        reply = await self.timed(conn, "list load", "GET", self.list_path)
        stream_path = ""
        if reply is not None:
            self.saw_rows(reply.text())
            stream_path = _sse_path(reply.text())
        partial = {**HX, "HX-Current-URL": self.list_path, "HX-Target": "results"}
        if self.args.mode_now == "poll":
            every = self.args.list_refresh
            while not stop.is_set():
                await _sleep(stop, every)
                if stop.is_set():
                    return
                reply = await self.timed(conn, "list refresh", "GET", self.list_path, partial)
                if reply is not None:
                    self.saw_rows(reply.text())
            return
        stream = self.conn()
        query = self.list_path.partition("?")[2]
        kind = "mine" if "assignee=me" in self.list_path else "queue"
        rec = Tab(self.index, kind, self.queue)
        self.level.tabs.append(rec)
        if reply is not None:
            rec.saw_html(reply.text())

        async def refetch() -> None:
            reply = await self.timed(conn, "list refresh", "GET", self.list_path, partial)
            if reply is not None:
                self.saw_rows(reply.text())
                rec.saw_html(reply.text())

        async def on_event(event: str, data: str) -> None:
            if event == "row":
                found = ROW_RE.search(data)
                if found:
                    self.level.observe(self.index, found[1], updated=_updated(found[2]))
            elif event == "results":
                self.saw_rows(data)  # the list's new results, pushed: no request
                rec.saw_html(data)
            elif event == "list":
                self.level.observe(self.index, data.strip())
                await refetch()

        await self.hold_stream(stream, stream_path or f"/events/?{query}", on_event, stop,
                               rec=rec)

    async def hold_stream(self, stream: Conn, path: str, on_event, stop: asyncio.Event,
                          until: float = float("inf"), rec: Tab | None = None) -> None:
        """Keep an EventSource open until `stop` or the monotonic time `until`. As a browser
        does, a stream that broke is opened again after the server's `retry:` or a random
        `--reconnect` delay, with its last id as Last-Event-ID."""
        while not stop.is_set() and time.monotonic() < until:
            try:
                async with asyncio.timeout(max(0.0, until - time.monotonic())
                                           if until != float("inf") else None):
                    async for event, data in stream.events(path):
                        if rec is not None:
                            if event == "open":
                                rec.on_open()
                            else:
                                rec.on_frame(event, data)
                        if event not in ("open", "id"):
                            await on_event(event, data)
            except TimeoutError:
                break
            except (HttpError, OSError, asyncio.IncompleteReadError) as err:
                kind = err.kind if isinstance(err, HttpError) else type(err).__name__
                if self.level.in_window(time.monotonic()):
                    self.level.stream_errors[kind] += 1
                if rec is not None:
                    rec.dropped.append(time.monotonic())
                stream.close()
                delay = (stream.retry_ms / 1000 if stream.retry_ms is not None
                         else self.rnd.uniform(*self.args.reconnect_range))
                await _sleep(stop, delay)
        if rec is not None:
            rec.closed = time.monotonic()
        stream.close()

    # -- the case tab

    async def case_tab(self, stop: asyncio.Event) -> None:
        rnd, args = self.rnd, self.args
        # A pushed refresh may come while an action is on its way: a browser sends it on a
        # second connection, never interleaved on the first.
        conn, refreshes = self.conn(), self.conn()
        self.next_act = time.monotonic() + rnd.uniform(0.5, 1.5) * args.act_every
        while not stop.is_set():
            # Between cases: until the next one is opened, or an action is due.
            gap = rnd.expovariate(1 / args.open_every)
            await _sleep(stop, min(gap, max(0.0, self.next_act - time.monotonic())))
            if stop.is_set():
                return
            choices = self.rows
            if (not choices or rnd.random() < 0.3) and self.queue_path != self.list_path:
                # A "my cases" agent looks at the queue for work now and then (always when
                # nothing is theirs yet), in this tab, as a person would.
                reply = await self.timed(conn, "queue look", "GET", self.queue_path)
                choices = ROW_RE.findall(reply.text()) if reply is not None else []
                choices = [case_id for case_id, _ in choices]
            if not choices:
                self.next_act = time.monotonic() + rnd.uniform(0.5, 1.5) * args.act_every
                continue
            self.case_id = rnd.choice(choices)
            path = f"/cases/{self.case_id}/"
            reply = await self.timed(conn, "case load", "GET", path)
            if reply is None:
                continue
            self.seen_case(reply.text())
            until = time.monotonic() + rnd.uniform(0.5, 1.5) * args.case_open
            if args.mode_now == "poll":
                refresher = self.poll_case(refreshes, path, until, stop)
            else:
                refresher = self.push_case(refreshes, path, until, stop)
            await asyncio.gather(refresher, self.actor(conn, path, until, stop))
            self.case_id = ""

    def seen_case(self, html: str) -> None:
        found = VERSION_RE.search(html)
        if found:
            self.version = int(found[1])
            self.level.observe(self.index, self.case_id, version=self.version)
            if self.case_rec is not None and self.case_rec.watch == self.case_id:
                self.case_rec.saw(self.case_id, self.version, None)
        self.page = html

    async def poll_case(self, conn: Conn, path: str, until: float, stop: asyncio.Event
                        ) -> None:
        while not stop.is_set():
            await _sleep(stop, min(self.args.case_refresh, until - time.monotonic()))
            if stop.is_set() or time.monotonic() >= until:
                return
            await self.refresh_case(conn, path)

    async def refresh_case(self, conn: Conn, path: str) -> None:
        reply = await self.timed(conn, "case refresh", "GET", f"{path}?since={self.version}",
                                 {**HX, "HX-Current-URL": path, "HX-Target": "case"})
        if reply is not None and reply.status == 200:
            self.seen_case(reply.text())

    async def push_case(self, conn: Conn, path: str, until: float, stop: asyncio.Event
                        ) -> None:
        case_id = self.case_id
        rec = self.case_rec = Tab(self.index, "case", case_id)
        self.level.tabs.append(rec)
        rec.saw(case_id, self.version, None)

        async def on_event(event: str, data: str) -> None:
            if event == "case" and data.strip().isdigit():
                version = int(data.strip())
                self.level.observe(self.index, case_id, version=version)
                if version > self.version:
                    await self.refresh_case(conn, path)
            elif event == "case":
                await self.refresh_case(conn, path)  # re-read: the page asks again
            elif event == "case-html":
                # The case itself, pushed: swapped in as app.js does (a newer version only),
                # so the next action is sent from it.
                found = VERSION_RE.search(data)
                if found and int(found[1]) > self.version:
                    self.seen_case(data)

        await self.hold_stream(self.conn(), _sse_path(self.page) or f"/events/?case={case_id}",
                               on_event, stop, until, rec)

    async def actor(self, conn: Conn, path: str, until: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = time.monotonic()
            if now >= until:
                return
            if self.next_act > now:
                await _sleep(stop, min(self.next_act, until) - now)
                continue
            await _sleep(stop, self.rnd.uniform(1, 4))  # reading, typing
            if stop.is_set():
                return
            await self.act(conn, path)
            self.next_act = time.monotonic() + self.rnd.uniform(0.5, 1.5) * self.args.act_every

    async def act(self, conn: Conn, path: str) -> None:
        offered = set(FORM_RE.findall(self.page))
        assignee = ASSIGNEE_RE.search(self.page)
        unassigned = assignee is not None and assignee[1].strip() == "Unassigned"
        if "claim" in offered and unassigned:
            action, fields = "claim", {}
        elif "set_status" in offered and self.rnd.random() < 0.5:
            current = re.search(r'name="set_status-status".*?</select>', self.page, re.S)
            now = STATUS_RE.search(current[0]) if current else None
            choices = [s for s in ("new", "in_progress", "waiting")
                       if now is None or s != now[1]]
            action, fields = "set_status", {"status": self.rnd.choice(choices)}
        elif "comment" in offered:
            action, fields = "comment", {
                "body": f"agent {self.index} looked at this ({uuid.uuid4().hex[:8]})"}
        else:
            self.level.outcomes["nothing offered"] += 1
            return
        form = {f"{action}-version": str(self.version), f"{action}-key": uuid.uuid4().hex,
                **{f"{action}-{k}": v for k, v in fields.items()},
                "csrfmiddlewaretoken": self.jar.get("csrftoken", "")}
        sent = time.monotonic()
        reply = await self.timed(conn, "action", "POST", f"{path}{action}/",
                                 {**HX, "HX-Current-URL": path, "HX-Target": "case",
                                  "X-CSRFToken": self.jar.get("csrftoken", "")}, form)
        answered = time.monotonic()
        if reply is None:
            return
        text = reply.text()
        if ": done." in text and 'class="flash ok"' in text:
            outcome = "done"
        elif BUSY_PHRASE in text:
            outcome = "busy"
        elif "Below is the case as it is now" in text:
            outcome = "stale"
        else:
            outcome = "refused"
        if self.level.in_window(sent):
            self.level.outcomes[f"{action} {outcome}"] += 1
        case_id = self.case_id
        self.seen_case(text)
        if outcome == "done":
            row = ROW_RE.search(text)
            updated = _updated(row[2]) if row else None
            self.level.acted(Pending(self.index, sent, answered, self.version, updated),
                             case_id)
            self.level.made.append(Made(case_id, self.queue, self.version, updated, answered,
                                        self.index))

    async def run(self, arrive: float, stop: asyncio.Event) -> None:
        await _sleep(stop, arrive)
        if stop.is_set():
            return
        try:
            await asyncio.gather(self.list_tab(stop), self.case_tab(stop))
        finally:
            self.close()


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    if seconds <= 0:
        await asyncio.sleep(0)  # always yield: a loop of zero sleeps must not starve the rest
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


# --- setup -----------------------------------------------------------------------------------


@dataclass
class Person:
    username: str
    session_key: str
    list_path: str
    queue_path: str  # the queue's list, where an agent finds cases to take


def create_agents(count: int, queues: list[str]) -> list[Person]:
    """Agents of one queue each; 3 in 5 watch their queue, the others "my cases". Sessions
    are written straight into the configured session engine: no password, no hashing."""
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import Group, User

    from cases.models import Queue

    store = importlib.import_module(settings.SESSION_ENGINE).SessionStore
    agents = Group.objects.get_or_create(name="Agent")[0]
    by_slug = {q.slug: q for q in Queue.objects.filter(slug__in=queues)}
    people = []
    for i in range(count):
        user = User(username=f"agent{i:03d}")
        user.set_unusable_password()
        user.save()
        user.groups.add(agents)
        queue = queues[i % len(queues)]
        by_slug[queue].agents.add(user)
        session = store()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        path = "/cases/?assignee=me" if i % 5 in (1, 3) else f"/cases/?queue={queue}"
        people.append(Person(user.username, session.session_key or "", path,
                             f"/cases/?queue={queue}"))
    return people


def tree_has_redis_setting() -> bool:
    return "REDIS_URL" in (REPO / "tracerail" / "settings.py").read_text()


def start_redis(stack: Stack) -> str:
    server = shutil.which("redis-server")
    if server is None:
        raise RuntimeError("The tree supports REDIS_URL but there is no redis-server "
                           "(apt-get install -y redis-server), or pass --redis off")
    port = free_port(TEMPORAL_PORTS, stack.ports)
    child = stack.children.start("redis", [server, "--bind", "127.0.0.1", "--port", str(port),
                                           "--save", "", "--appendonly", "no"], stack.env)
    wait_for_port(port, child.proc, "redis-server", 30)
    say(f"Redis on 127.0.0.1:{port}")
    return f"redis://127.0.0.1:{port}/0"


def start_postgres(stack: Stack) -> str:
    """A throwaway cluster made and run by bin/prod-postgres, the production stack's own
    script (its server settings, max_connections included, are the stack's)."""
    port = free_port(TEMPORAL_PORTS, stack.ports)
    var = stack.workdir / "pg"
    var.mkdir(parents=True, exist_ok=True)
    # Under root the server runs as an unprivileged user, who must reach its directory.
    stack.workdir.chmod(stack.workdir.stat().st_mode | 0o011)
    var.chmod(0o755)
    child = stack.children.start("postgres", [REPO / "bin" / "prod-postgres", "-c", "fsync=off"],
                                 {**stack.env, "TRACERAIL_VAR_DIR": str(var),
                                  "PG_PORT": str(port)})
    wait_for_port(port, child.proc, "PostgreSQL", 120)
    password = (var / "pg-password").read_text().strip()
    say(f"PostgreSQL on 127.0.0.1:{port}")
    return f"postgres://tracerail:{password}@127.0.0.1:{port}/tracerail"


def start_gunicorn(stack: Stack, args: argparse.Namespace, redis_url: str) -> None:
    env = {**stack.env, "VISIBILITY_CACHE_SECONDS": str(args.cache_seconds),
           "VISIBILITY_RPS": str(args.app_visibility_rps)}
    if redis_url:
        env["REDIS_URL"] = redis_url
    say(f"starting gunicorn, {args.processes} uvicorn workers, on {stack.web_url}")
    child = stack.children.start("web", [
        BIN / "gunicorn", "tracerail.asgi:application", "-k", "uvicorn_worker.UvicornWorker",
        "-w", str(args.processes), "-b", f"127.0.0.1:{stack.web_port}",
        "--graceful-timeout", "5", "--log-level", "warning",
    ], env)
    wait_for_port(stack.web_port, child.proc, "gunicorn", 60)


async def pick_probes(case_ids: list[str], queues: list[str]) -> dict[str, str]:
    """One open case per queue, for the restart's probe comments."""
    from cases.temporal import gateway

    probes: dict[str, str] = {}
    for case_id in case_ids:
        state = await gateway.get_case(case_id)
        if state.queue in queues and state.queue not in probes and \
                state.status not in ("resolved", "closed"):
            probes[state.queue] = case_id
        if len(probes) == len(queues):
            break
    return probes


async def probe_push(port: int, person: Person) -> str:
    """'' when GET /events/ answers with an event stream, else why not."""
    conn = Conn(port, {"sessionid": person.session_key})
    try:
        async with asyncio.timeout(5):
            reply_head = conn.events(f"/events/?{person.list_path.partition('?')[2]}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1):
                    await anext(reply_head)
        return ""
    except HttpError as err:
        return f"GET /events/ answers {err.kind}"
    except TimeoutError:
        return ""
    finally:
        conn.close()


# --- CPU ----------------------------------------------------------------------------------------

# Which of the stack's children make up each group whose CPU is reported.
CPU_GROUPS = {"web": ("web",), "worker": ("worker",), "temporal": ("temporal",),
              "stores": ("postgres", "redis")}
_TICK = os.sysconf("SC_CLK_TCK")


def _tree(pid: int) -> list[int]:
    """A process and all its descendants (gunicorn's master and its workers; PostgreSQL's
    postmaster and its backends)."""
    found, todo = [], [pid]
    while todo:
        p = todo.pop()
        found.append(p)
        for task in Path(f"/proc/{p}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return found


def _cpu_ticks(pid: int) -> int | None:
    """utime + stime of one process, in clock ticks (fields 14 and 15 of /proc/<pid>/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the name may hold spaces and parentheses
    return int(fields[11]) + int(fields[12])


def cpu_snapshot(stack: Stack) -> dict[str, dict[int, int]]:
    """Per group, per live pid, CPU ticks so far; 'bench' is this process's getrusage."""
    snap: dict[str, dict[int, int]] = {}
    for group, names in CPU_GROUPS.items():
        ticks: dict[int, int] = {}
        for child in stack.children.children:
            if child.name in names and child.proc.poll() is None:
                for pid in _tree(child.proc.pid):
                    t = _cpu_ticks(pid)
                    if t is not None:
                        ticks[pid] = t
        snap[group] = ticks
    own = resource.getrusage(resource.RUSAGE_SELF)
    snap["bench"] = {0: round((own.ru_utime + own.ru_stime) * _TICK)}
    return snap


def cpu_seconds(before: dict[str, dict[int, int]], after: dict[str, dict[int, int]]
                ) -> dict[str, float]:
    """CPU seconds spent between two snapshots per group. A process started in between counts
    from zero; one that ended in between (a killed web worker) loses its last stretch."""
    return {group: sum(t - before.get(group, {}).get(pid, 0) for pid, t in ticks.items())
            / _TICK for group, ticks in after.items()}


# --- one level -------------------------------------------------------------------------------


async def run_level(stack: Stack, args: argparse.Namespace, people: list[Person], mode: str,
                    count: int) -> Level:
    level = Level(mode, count)
    args.mode_now = mode
    stop = asyncio.Event()
    rnd = random.Random(f"{args.seed}:{mode}:{count}")
    agents = [Agent(i, p.session_key, p.list_path, p.queue_path, level, args, stack.web_port,
                    random.Random(rnd.random())) for i, p in enumerate(people[:count])]
    start = time.monotonic()
    # The window opens once every agent has arrived and had one refresh period to settle.
    settle = max(args.list_refresh, args.case_refresh)
    level.window = (start + args.ramp + settle, start + args.ramp + settle + args.minutes * 60)
    tasks = [asyncio.create_task(a.run(i * args.ramp / count, stop))
             for i, a in enumerate(agents)]
    say(f"{mode}, {count} agents: ramp {args.ramp:.0f} s, settle {settle} s, "
        f"window {args.minutes * 60:.0f} s")
    loop = asyncio.get_running_loop()
    if args.restart_after:
        tasks.append(asyncio.create_task(probe(level, args, stop)))
    await asyncio.sleep(level.window[0] - time.monotonic())
    before = await loop.run_in_executor(None, stack.server_metrics, (REQUESTS, REFUSED),
                                        VISIBILITY_OPERATIONS)
    queries_before = await loop.run_in_executor(None, stack.server_metrics, (REQUESTS,),
                                                QUERY_OPERATIONS, "frontend")
    load_before = load_average()
    cpu_before = cpu_snapshot(stack)
    if args.restart_after:
        await restart_one(stack, args, level, before)
    await asyncio.sleep(level.window[1] - time.monotonic())
    after = await loop.run_in_executor(None, stack.server_metrics, (REQUESTS, REFUSED),
                                       VISIBILITY_OPERATIONS)
    queries_after = await loop.run_in_executor(None, stack.server_metrics, (REQUESTS,),
                                               QUERY_OPERATIONS, "frontend")
    level.queries = round(queries_after[REQUESTS] - queries_before[REQUESTS])
    level.cpu = cpu_seconds(cpu_before, cpu_snapshot(stack))
    level.load = f"{load_before} → {load_average()}"
    seconds = level.window[1] - level.window[0]
    level.visibility = (after[REQUESTS] - before[REQUESTS]) / seconds
    level.refused = (after[REFUSED] - before[REFUSED]) / seconds
    # Screens keep going a little, so the window's last actions can still be seen elsewhere.
    await asyncio.sleep(args.list_refresh + args.cache_seconds + 2)
    stop.set()
    # Let what is in flight finish (bounded by the request timeout), then drop the rest.
    _, still = await asyncio.wait(tasks, timeout=args.timeout + 5)
    for task in still:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for a in agents:
        a.close()
    stack.check_alive()
    return level


# --- the restart -----------------------------------------------------------------------------


async def probe(level: Level, args: argparse.Namespace, stop: asyncio.Event) -> None:
    """Changes that keep being made whatever the agents do: a comment on each probe case (one
    per queue, so every queue list is told) every `--probe-every` seconds."""
    from cases.temporal import gateway
    from workers.model import AddComment

    async def one(case_id: str, queue: str, n: int) -> None:
        try:
            state = await gateway.act(case_id, AddComment(actor="bench-probe",
                                                          body=f"probe {n}"))
        except Exception as err:  # counted, and the next probe goes on
            level.outcomes[f"probe {type(err).__name__}"] += 1
            return
        level.made.append(Made(case_id, queue, state.version, state.updated_at,
                               time.monotonic()))

    n = 0
    while not stop.is_set():
        n += 1
        await asyncio.gather(*(one(case_id, queue, n) for queue, case_id in args.probes.items()))
        await _sleep(stop, args.probe_every)


def _workers(master: int) -> list[int]:
    try:
        text = Path(f"/proc/{master}/task/{master}/children").read_text()
    except OSError:
        return []
    return [int(pid) for pid in text.split()]


async def restart_one(stack: Stack, args: argparse.Namespace, level: Level,
                      before: dict[str, float]) -> None:
    """`--restart-after` seconds into the window, one gunicorn worker is signalled (its master
    starts another); the Visibility calls of the next RECONNECT_WINDOW seconds, and of the one
    after, are read from the server's own counters."""
    import redis

    loop = asyncio.get_running_loop()
    master = next(c.proc.pid for c in stack.children.children if c.name == "web")
    # The change log's head and the poller's lease, read straight from Redis: did the log
    # stand still after the kill, and did the lease change hands (the killed worker held it)?
    db = redis.Redis.from_url(args.redis_url)
    seq_key = next(iter(db.scan_iter(match="*log:seq", count=1000)), None)
    lease_key = next(iter(db.scan_iter(match="*lease:feed-poller", count=1000)), None)

    def peek() -> tuple[bytes | None, bytes | None]:
        return (db.get(seq_key) if seq_key else None, db.get(lease_key) if lease_key else None)

    await asyncio.sleep(level.window[0] + args.restart_after - time.monotonic())
    workers = _workers(master)
    if not workers:
        raise RuntimeError("gunicorn has no workers to restart")
    victim = workers[0] if args.restart_worker == "first" else workers[-1]
    rs = level.restart = Restart(killed_pid=victim, signal=args.restart_signal)
    at_kill = await loop.run_in_executor(None, stack.server_metrics, (REQUESTS,),
                                         VISIBILITY_OPERATIONS)
    rs.at = time.monotonic()
    rs.baseline_vis = (at_kill[REQUESTS] - before[REQUESTS]) / (rs.at - level.window[0])
    seq0, lease0 = peek()
    os.kill(rs.killed_pid, getattr(signal, f"SIG{args.restart_signal}"))
    say(f"restart: SIG{args.restart_signal} to gunicorn worker {rs.killed_pid} "
        f"({len(workers)} workers)")
    while time.monotonic() < rs.at + RECONNECT_WINDOW:
        now_workers = _workers(master)
        if not rs.respawned and any(p not in workers for p in now_workers):
            rs.respawned = time.monotonic()
            say(f"restart: new worker after {rs.respawned - rs.at:.1f} s")
        seq, lease = peek()
        if seq != seq0 and rs.log_moved != rs.log_moved:
            rs.log_moved = time.monotonic() - rs.at
        if lease is not None and lease != lease0 and rs.lease_moved != rs.lease_moved:
            rs.lease_moved = time.monotonic() - rs.at
        await asyncio.sleep(0.05)
    mid = await loop.run_in_executor(None, stack.server_metrics, (REQUESTS,),
                                     VISIBILITY_OPERATIONS)
    rs.window_calls = mid[REQUESTS] - at_kill[REQUESTS]
    await asyncio.sleep(rs.at + 2 * RECONNECT_WINDOW - time.monotonic())
    after = await loop.run_in_executor(None, stack.server_metrics, (REQUESTS,),
                                       VISIBILITY_OPERATIONS)
    rs.later_calls = after[REQUESTS] - mid[REQUESTS]


def restart_report(level: Level, args: argparse.Namespace) -> list[str]:
    rs = level.restart
    if rs is None:
        return []
    hit = [t for t in level.tabs
           if any(rs.at <= d <= rs.at + RESTART_GRACE for d in t.dropped)]
    back, fresh, stale, closed, reread, resumed, replayed = [], [], 0, 0, 0, 0, 0
    missed_tabs = 0
    for tab in hit:
        drop = min(d for d in tab.dropped if d >= rs.at)
        reopened = next((o for o in tab.opened if o > drop), None)
        batch = next((b for b in tab.first_batches if b[0] > drop), None)
        if batch is not None:
            reread += batch[1] == "re-read"
            resumed += batch[1] == "resumed"
            replayed += batch[2]
        if reopened is None:
            if tab.closed < rs.at + RESTART_SETTLE:
                closed += 1
            else:
                stale += 1
            continue
        back.append(reopened - rs.at)
        if tab.kind == "mine":
            continue  # which changes "my cases" must show is not known to the bench
        # What it must come to show: every change to what it watches from just before the
        # kill (perhaps still on its way) until it was back.
        owed = [m for m in level.made
                if rs.at - IN_FLIGHT <= m.at <= reopened and tab.shows(m)]
        times = [tab.first_seen(m) for m in owed]
        if any(t is None for t in times):
            if tab.closed < rs.at + RESTART_SETTLE:
                closed += 1
            else:
                stale += 1
                missed_tabs += 1
            continue
        fresh.append(max([reopened, *[t for t in times if t is not None]]) - rs.at)
    dups: Counter[str] = Counter()
    backwards = on_reconnect = 0
    for tab in level.tabs:
        dups.update(tab.duplicates)
        backwards += tab.backwards
        on_reconnect += tab.backwards_on_reconnect
    hit_dups: Counter[str] = Counter()
    for tab in hit:
        hit_dups.update(tab.duplicates)

    def dist(values: list[float]) -> str:
        if not values:
            return "-"
        return (f"p50 {percentile(values, 50):.1f} s, p95 {percentile(values, 95):.1f} s, "
                f"max {max(values):.1f} s")

    kinds = Counter(t.kind for t in hit)
    # How long the log stood still: the first probe made after the kill, to the first
    # screen that showed it (the poller's lease, if the killed process held it, must expire
    # before another process polls).
    stall = float("nan")
    for m in sorted((m for m in level.made if m.at > rs.at and m.by < 0),
                    key=lambda m: m.at)[:1]:
        firsts = [t for t in (tab.first_seen(m) for tab in level.tabs if tab.shows(m))
                  if t is not None]
        stall = min(firsts) - m.at if firsts else float("nan")
    around = sum(1 for m in level.made if rs.at - IN_FLIGHT <= m.at <= rs.at + RECONNECT_WINDOW)
    goal = sum(1 for f in fresh if f <= 10)
    expected = rs.baseline_vis * RECONNECT_WINDOW
    return [
        "",
        f"Restart: SIG{rs.signal} to the {args.restart_worker} of {args.processes} gunicorn "
        f"workers (pid "
        f"{rs.killed_pid}) {args.restart_after:g} s into the window; its master had a new "
        f"worker after {rs.respawned - rs.at:.1f} s" if rs.respawned else
        f"Restart: SIG{rs.signal} to worker {rs.killed_pid}; no new worker within "
        f"{RECONNECT_WINDOW:g} s",
        "",
        "| measure | value |",
        "|---|---|",
        f"| tabs whose stream broke (within {RESTART_GRACE:g} s of the kill) | {len(hit)} of "
        f"{len({id(t) for t in level.tabs if t.opened and t.opened[0] < rs.at < t.closed})} "
        f"open ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}) |",
        f"| stream back (kill → reopened) | {dist(back)} |",
        f"| fresh (kill → showing every change made from {IN_FLIGHT:g} s before the kill "
        f"until it was back; queue and case tabs) | {dist(fresh)} |",
        f"| fresh within 10 s | {goal} of {len(fresh) + stale} "
        f"({stale} never fresh, {missed_tabs} of them missing a change; {closed} closed by "
        f"the page first) |",
        f"| first answer after reconnecting: resumed (replay) / re-read | {resumed} / "
        f"{reread} ({replayed} frames replayed) |",
        f"| Visibility calls in the {RECONNECT_WINDOW:g} s after the kill | "
        f"{rs.window_calls:.0f} (baseline {rs.baseline_vis:.1f}/s → {expected:.0f} expected; "
        f"excess {rs.window_calls - expected:+.0f}); next {RECONNECT_WINDOW:g} s: "
        f"{rs.later_calls:.0f} |",
        f"| duplicates (a row state or case version applied twice by one tab) | all tabs: "
        f"{sum(dups.values())} ({', '.join(f'{k} {n}' for k, n in dups.items()) or '-'}); "
        f"restarted tabs: {sum(hit_dups.values())} |",
        f"| event ids going backwards (same epoch) | {backwards} ({on_reconnect} in the "
        f"first id after a reconnect) |",
        f"| first probe made after the kill → first screen showing it | {stall:.1f} s |",
        f"| kill → the change log's next append (Redis) | {rs.log_moved:.1f} s |",
        "| kill → another process holds the poller's lease | "
        + (f"{rs.lease_moved:.1f} s (the killed worker held it) |"
           if rs.lease_moved == rs.lease_moved else
           f"not within {RECONNECT_WINDOW:g} s (the survivor held it) |"),
        "",
        f"changes made: {len(level.made)} in the level ({around} "
        f"from {IN_FLIGHT:g} s before the kill to {RECONNECT_WINDOW:g} s after; probes: a "
        f"comment on one case per queue every {args.probe_every:g} s); reconnect delay "
        f"{args.reconnect_range[0]:g}-{args.reconnect_range[1]:g} s or the server's retry.",
    ]


# --- report ------------------------------------------------------------------------------------


def summarize(level: Level) -> dict[str, str]:
    lat: dict[str, str] = {}
    where: dict[str, str] = {}
    errors: Counter[str] = Counter()
    counted = 0
    for kind in KINDS:
        # Arrivals happen during the ramp: list loads count from the start of the level.
        mine = [s for s in level.samples if s.kind == kind
                and (kind == "list load" or level.in_window(s.start))]
        counted += len(mine)
        ok = [s.ms for s in mine if s.outcome == "ok"]
        for s in mine:
            if s.outcome != "ok":
                errors[f"{kind} {s.outcome}"] += 1
        lat[kind] = (f"{percentile(ok, 50):.0f} / {percentile(ok, 95):.0f}" if ok else "-")
        where[kind] = _tail(mine)
    for kind, n in level.stream_errors.items():
        errors[f"stream {kind}"] += n
    minutes = (level.window[1] - level.window[0]) / 60
    fresh = level.fresh_ms

    stack_cpu = sum(v for g, v in level.cpu.items() if g != "bench")
    # Every case page load asks its case (a Query); a refresh asks at most one (it may share
    # the process's read of the change). What the server counted beyond those is what
    # changes cost: the pushes' reads, the refused actions' re-reads.
    loads = sum(1 for s in level.samples if s.kind == "case load" and level.in_window(s.start))
    refreshes = sum(1 for s in level.samples
                    if s.kind == "case refresh" and level.in_window(s.start))
    changes = sum(1 for m in level.made if level.in_window(m.at))

    def per_agent_minute(group: str) -> str:
        return f"{level.cpu.get(group, 0.0) * 1000 / (level.agents * minutes):.0f}"

    return {
        "mode": level.mode,
        "agents": str(level.agents),
        "vis/s": f"{level.visibility:.1f}",
        "per agent-min": f"{level.visibility * 60 / level.agents:.2f}",
        "refused/s": f"{level.refused:.1f}",
        "requests": str(counted),
        "errors": ", ".join(f"{k}: {n}" for k, n in sorted(errors.items())) or "0",
        **{f"{k} p50/p95 ms": v for k, v in lat.items()},
        **{f"{k} tail": v for k, v in where.items()},
        "freshness p50/p95 ms": (f"{percentile(fresh, 50):.0f} / {percentile(fresh, 95):.0f}"
                                 if fresh else "-"),
        "seen/acted": f"{len(fresh)}/{level.actions}",
        "actions": ", ".join(f"{k} {n}" for k, n in sorted(level.outcomes.items())) or "-",
        "actions/min": f"{sum(level.outcomes.values()) / minutes:.0f}",
        "load": level.load,
        **{f"cpu {g}": per_agent_minute(g) for g in (*CPU_GROUPS, "bench")},
        "cpu bench %": f"{level.cpu.get('bench', 0.0) * 100 / (minutes * 60):.0f}",
        "cpu stack %": f"{stack_cpu * 100 / (minutes * 60):.0f}",
        "queries": str(level.queries),
        "page reads": f"{loads} + {refreshes}",
        "changes": str(changes),
        # Between: every refresh Queried (low) and none did (high).
        "queries per change": (f"{(level.queries - loads - refreshes) / changes:.2f} to "
                               f"{(level.queries - loads) / changes:.2f}" if changes else "-"),
    }


def _tail(samples: list[Sample]) -> str:
    """Where the slowest twentieth of a kind's answers spent their time, on average, by the
    server's Server-Timing: in front of Django (the round trip less `app`: the event loop,
    the connection, the load generator's own loop), in Django less Temporal, and waiting on
    Temporal. "-" when there are too few answers to say."""
    ok = [s for s in samples if s.outcome == "ok" and s.app_ms is not None]
    if len(ok) < 20:
        return "-"
    edge = percentile([s.ms for s in ok], 95)
    slow = [s for s in ok if s.ms >= edge]
    front = sum(s.ms - (s.app_ms or 0.0) for s in slow) / len(slow)
    spent = sum(s.temporal_ms or 0.0 for s in slow) / len(slow)
    app = sum(s.app_ms or 0.0 for s in slow) / len(slow)
    return f"{len(slow)}: {front:.0f} / {app - spent:.0f} / {spent:.0f}"


def report(levels: list[Level], args: argparse.Namespace, notes: list[str]) -> str:
    rows = [summarize(level) for level in levels]
    main_cols = ["mode", "agents", "vis/s", "per agent-min", "refused/s", "requests",
                 *[f"{k} p50/p95 ms" for k in KINDS], "freshness p50/p95 ms", "seen/acted"]
    lines = [
        f"Tracerail agents — {args.cases} cases, {machine()}",
        f"web: gunicorn -k uvicorn_worker.UvicornWorker -w {args.processes}; one run_worker; "
        f"dev server frontend.namespaceRPS.visibility={args.server_visibility_rps}; "
        f"VISIBILITY_RPS={args.app_visibility_rps:g}"
        f"{' (deployment)' if args.redis_url else ' per process'}, "
        f"VISIBILITY_CACHE_SECONDS={args.cache_seconds:g}",
        f"per level: ramp {args.ramp:.0f} s, steady window {args.minutes:g} min; list refresh "
        f"{args.list_refresh} s, case refresh {args.case_refresh} s (poll); a case opened every "
        f"~{args.open_every:g} s for ~{args.case_open:g} s, an action every ~{args.act_every:g} s",
        *notes,
        "",
        "| " + " | ".join(main_cols) + " |",
        "|" + "|".join("---" for _ in main_cols) + "|",
    ]
    lines += ["| " + " | ".join(r[c] for c in main_cols) + " |" for r in rows]
    lines += ["", "| mode | agents | server CPU ms per agent-minute: web (gunicorn master + "
              "workers) | worker | Temporal | PostgreSQL + Redis | load generator (this "
              "process) ms per agent-minute | load generator % of a core | stack % of a core |",
              "|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['agents']} | {r['cpu web']} | {r['cpu worker']} | "
              f"{r['cpu temporal']} | {r['cpu stores']} | {r['cpu bench']} | "
              f"{r['cpu bench %']} | {r['cpu stack %']} |" for r in rows]
    lines += ["", "| mode | agents | Queries in the window | case page loads + refreshes | "
              "changes applied | Queries per change beyond page reads (low to high) |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['agents']} | {r['queries']} | {r['page reads']} | "
              f"{r['changes']} | {r['queries per change']} |" for r in rows]
    tail_kinds = [k for k in KINDS if any(r[f"{k} tail"] != "-" for r in rows)]
    lines += ["", "| mode | agents | " + " | ".join(
        f"{k}: slowest 5 %, ms in front of Django / in Django / on Temporal" for k in tail_kinds)
        + " |", "|---|---|" + "---|" * len(tail_kinds)]
    lines += [f"| {r['mode']} | {r['agents']} | "
              + " | ".join(r[f"{k} tail"] for k in tail_kinds) + " |" for r in rows]
    for level in levels:
        lines += restart_report(level, args)
    lines += ["", "| mode | agents | actions/min | action outcomes | errors | "
              "load average 1/5/15 min (window start → end) |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['mode']} | {r['agents']} | {r['actions/min']} | {r['actions']} | "
              f"{r['errors']} | {r['load']} |" for r in rows]
    lines += [
        "",
        "vis/s = Visibility calls per second in the steady window, as the dev server's "
        "/metrics counts them (service_requests of List/Count/ScanWorkflowExecutions); "
        "refused/s = service_errors_resource_exhausted of the same operations;",
        "Queries = QueryWorkflow calls the dev server's frontend counted in the window (the "
        "clients' calls; its history and matching services count each once more); each case "
        "page "
        "load asks one and each refresh at most one, the rest are what changes cost the open "
        "tabs (pushed pages read a changed case once per process; the process whose action "
        "made it has the Update's result) and refused actions' re-reads; low counts every "
        "refresh as a Query, high none;",
        "per agent-min = vis/s x 60 / agents; latencies = client-observed round trips of the "
        "requests that succeeded (list load: every arrival, the rest: steady window only);",
        "freshness = an applied action's response at one agent → the first other agent's open "
        "screen receiving it (push: an event naming the case; poll: a refresh showing the new "
        "row or version; 0 when it arrived first); seen/acted = actions some other screen "
        "showed / actions applied in the window;",
        f"errors = non-200/204 answers, timeouts (> {args.timeout:g} s) and broken "
        "connections per request kind, and event streams that broke (reopened after the "
        f"server's retry or {args.reconnect_range[0]:g}-{args.reconnect_range[1]:g} s, "
        "with Last-Event-ID).",
        "slowest 5 % = the answers at or above a kind's p95: their count, then the mean of "
        "the round trip less the server's Server-Timing `app` (queued before Django: the "
        "event loop, the connection, this process's own loop), `app` less `temporal`, and "
        "`temporal` (the time its calls to Temporal took, summed);",
        "CPU = utime + stime from /proc/<pid>/stat of each process tree over the steady "
        "window (the load generator: getrusage of this process), divided by agents x window "
        "minutes; % of a core = CPU seconds / window seconds (the machine has 2).",
        "Sessions are written through Django's session engine, not by logging in: a login "
        "costs a password hash (PBKDF2, hundreds of ms of CPU), which is not what this "
        "measures.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with Stack(keep_dir=args.keep, server_visibility_rps=args.server_visibility_rps) as stack:
        database = "Django's tables: SQLite"
        if args.database == "postgres":
            # Before Django is set up: the bench writes its users and sessions there too.
            url = start_postgres(stack)
            stack.env["DATABASE_URL"] = os.environ["DATABASE_URL"] = url
            database = f"Django's tables: PostgreSQL ({url.rpartition('@')[2]})"
        stack.start_backend()
        from django.conf import settings

        args.list_refresh = settings.LIST_REFRESH_SECONDS
        args.case_refresh = settings.CASE_REFRESH_SECONDS
        notes = [database]
        redis_url = args.redis_url = ""
        if args.redis == "auto" and tree_has_redis_setting():
            redis_url = args.redis_url = start_redis(stack)
            stack.env["REDIS_URL"] = redis_url
            notes.append(f"shared cache: Redis ({redis_url})")
        else:
            notes.append("shared cache: none (per-process Visibility answers only"
                         + ("; this tree has no REDIS_URL setting)" if args.redis == "auto"
                            else "; --redis off)"))
        if not args.app_visibility_rps:
            # With Redis one budget is shared by the deployment (docs/deployment.md: a
            # little below the namespace's limit); without, each process keeps its own.
            args.app_visibility_rps = (max(1, args.server_visibility_rps - 5) if redis_url
                                       else args.server_visibility_rps / args.processes)
        case_ids = stack.seed(args.cases)
        stack.wait_until_ready(case_ids)
        if args.restart_after:
            args.probes = stack.run(pick_probes(case_ids, stack.queues()))
            notes.append("probe cases: " + ", ".join(f"{q} {c}" for q, c in args.probes.items()))
        people = create_agents(max(args.levels), stack.queues())
        start_gunicorn(stack, args, redis_url)
        if "push" in args.modes:
            why = stack.run(probe_push(stack.web_port, people[0]))
            if why:
                say(f"push mode skipped: {why}")
                notes.append(f"push mode not run: {why} (no event feed in this tree)")
                args.modes = [m for m in args.modes if m != "push"]
        notes.append(f"load average (1/5/15 min) before {load_average()}")
        levels = []
        for mode in args.modes:
            for count in args.levels:
                levels.append(stack.run(run_level(stack, args, people, mode, count)))
                say(f"{mode}, {count} agents: {levels[-1].visibility:.1f} Visibility calls/s")
                time.sleep(5)  # let the last answers and shared entries expire
        notes.append(f"load average (1/5/15 min) after {load_average()}")
    print(report(levels, args, notes), flush=True)


if __name__ == "__main__":
    with exit_hard():
        main()
