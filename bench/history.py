"""What does the case page cost for a case with a long history, three ways?

Run from the repository root:

    .venv/bin/python -m bench.history [--events N] [--samples K] [--note-chars C]

Starts its own Temporal dev server, worker and web app (see bench/harness.py), builds one case
to about N history events (default 2,000) with comment Updates through `temporal.act`, and a
twin of it that is then closed. It times, in one run:

1. warm worker: `temporal.get_case` (a Query) answered by `manage.py run_worker`, which has the
   case in its sticky cache;
2. cache evicted: the same Query answered by the only worker polling, one that keeps no
   workflow cache (`max_cached_workflows=0`), so every Query replays the whole history;
3. history projection: `temporal.case_history` (no worker involved), against the raw
   GetWorkflowExecutionHistory calls it is built on as the floor.

Between 1 and 2, `run_worker` is stopped and a worker with the default cache runs in this
process, timed twice: before any workflow task has gone through it (Temporal then sends every
Query with the whole history to the normal task queue, though the worker has the case cached)
and after one has (sticky again). That separates shipping the history from replaying it, and
compares the no-cache worker with a warm one in the same place.

And the pages on top: the History tab, the live case page (warm and evicted) and the page of
the closed twin, which is projected from its history. Samples are interleaved within each
phase; page timings are client-observed loopback round trips, like bench/pages.py.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import signal
import subprocess
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from bench.harness import (
    Stack,
    Timings,
    WebClient,
    exit_hard,
    interleaved,
    load_average,
    machine,
    percentile,
    say,
)
from bench.pages import check

if TYPE_CHECKING:
    from temporalio.worker import Worker

T = TypeVar("T")

USERNAME = "bench-supervisor"
PASSWORD = uuid.uuid4().hex
# Updates sent before the events one Update adds have been measured; the rest of the case is
# sized by that rate, so it ends within one Update's events of the target.
PROBE_UPDATES = 10
# Generous for the first Query after a worker switch, which may wait out a sticky queue whose
# worker is gone before the server hands it to the normal queue.
SWITCH_TIMEOUT = 60.0
DEFAULT_CACHE = 1000  # temporalio.worker.Worker's own default


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000,
                        help="history events to build the case to (default 2000)")
    parser.add_argument("--samples", type=int, default=30,
                        help="timed samples per method (default 30)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed rounds first")
    parser.add_argument(
        "--note-chars", type=int, default=30,
        help="length of each comment (default 30). Every Update's result, recorded in the "
             "history, carries all comments so far, so the history's bytes grow with the "
             "square of the comments: at about 75 characters the server suggests "
             "continue-as-new (4 MB) before 2,000 events")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.events < 20 or args.samples < 1 or args.warmup < 0 or args.note_chars < 1:
        parser.error("needs --events >= 20, --samples >= 1, --warmup >= 0, --note-chars >= 1")
    return args


# --- the case ----------------------------------------------------------------------------


@dataclass
class Built:
    case_id: str
    updates: int = 0
    run_ids: list[str] = field(default_factory=list)  # oldest first
    lengths: list[int] = field(default_factory=list)  # events per run
    size_bytes: int = 0  # the latest run's history, as the server counts it

    @property
    def events(self) -> int:
        return sum(self.lengths)

    def runs(self) -> str:
        if len(self.run_ids) == 1:
            return "one run (no continue-as-new)"
        counts = " + ".join(f"{n:,}" for n in self.lengths)
        return (f"CONTINUED AS NEW: {len(self.run_ids)} runs ({counts} events); a Query "
                f"replays only the latest")


async def _measure(built: Built) -> None:
    from cases import temporal

    client = await temporal.get_client()
    desc = await client.get_workflow_handle(built.case_id).describe()
    if desc.run_id not in built.run_ids:
        built.run_ids.append(desc.run_id)
    built.lengths = [
        (await client.get_workflow_handle(built.case_id, run_id=run_id).describe()
         ).history_length
        for run_id in built.run_ids[:-1]
    ] + [desc.history_length]
    built.size_bytes = desc.raw_description.workflow_execution_info.history_size_bytes


async def build_case(target: int, queue: str, note_chars: int, *, close: bool) -> Built:
    """A case with at least `target` history events (counted over every run, should the
    workflow continue as new on the way), made the way the app makes them."""
    from cases import temporal
    from cases.management.commands.seed_demo import demo_new_case
    from cases.temporal.ids import new_case_id
    from workers.model import AddComment, Close

    built = Built(new_case_id())
    new = demo_new_case(random.Random(20261126), [queue])
    await temporal.start_case(built.case_id, new, actor="intake")
    await _measure(built)
    opened = built.events
    filler = " Called the requester back; still waiting on the logs they promised." * (
        note_chars // 60 + 1)
    while built.events < target:
        if built.updates < PROBE_UPDATES:
            batch = PROBE_UPDATES
        else:
            per_update = (built.events - opened) / built.updates
            batch = max(1, int((target - built.events) / per_update))
        for _ in range(batch):
            built.updates += 1
            body = f"Note {built.updates}:{filler}"[:note_chars]
            await temporal.act(built.case_id, AddComment(actor="agent", body=body))
        await _measure(built)
    if close:
        await temporal.act(built.case_id, Close(actor="agent"))
        client = await temporal.get_client()
        # The Update returns before the run completes; the page must see an ended case.
        await client.get_workflow_handle(built.case_id).result()
        await _measure(built)
    return built


# --- in-process workers ------------------------------------------------------------------


class Replays:
    """Workflow instances the in-process workers created. A worker with the case cached
    creates none per Query; one without a cache creates one per Query and replays the whole
    history into it, which is what this benchmark claims to time."""

    created = 0


def _counting_interceptor() -> Any:
    from temporalio.worker import (
        Interceptor,
        WorkflowInboundInterceptor,
        WorkflowInterceptorClassInput,
        WorkflowOutboundInterceptor,
    )

    class CountingInbound(WorkflowInboundInterceptor):
        def init(self, outbound: WorkflowOutboundInterceptor) -> None:
            # Runs inside the sandbox, but this class (and so `Replays`) is the real one.
            Replays.created += 1
            super().init(outbound)

    class CountInstances(Interceptor):
        def workflow_interceptor_class(
            self, input: WorkflowInterceptorClassInput
        ) -> type[WorkflowInboundInterceptor] | None:
            return CountingInbound

    return CountInstances()


@dataclass
class InProcessWorker:
    worker: Worker
    task: asyncio.Task[None]


async def start_in_process_worker(max_cached_workflows: int) -> InProcessWorker:
    """A worker on this process's loop, configured like `workers.worker.build_worker` (which
    takes no cache size or interceptors) apart from its cache."""
    from django.conf import settings
    from temporalio.worker import Worker

    from cases import temporal
    from workers.activities import notify_sla_breach
    from workers.workflows import CaseWorkflow

    worker = Worker(
        await temporal.get_client(),
        task_queue=settings.TEMPORAL_TASK_QUEUE,
        workflows=[CaseWorkflow],
        activities=[notify_sla_breach],
        max_concurrent_workflow_tasks=settings.WORKER_MAX_CONCURRENT_WORKFLOW_TASKS,
        max_concurrent_activities=settings.WORKER_MAX_CONCURRENT_ACTIVITIES,
        max_cached_workflows=max_cached_workflows,
        interceptors=[_counting_interceptor()],
    )
    return InProcessWorker(worker, asyncio.create_task(worker.run()))


async def stop_in_process_worker(running: InProcessWorker) -> None:
    # Always awaited: a worker left to interpreter teardown can abort the process.
    await running.worker.shutdown()
    await running.task


def stop_harness_worker(stack: Stack) -> None:
    """Stop `manage.py run_worker` (SIGTERM: it drains and exits 0), so that from here on
    only the workers this script starts poll the task queue."""
    children = stack.children.children
    for child in [c for c in children if c.name == "worker"]:
        child.proc.send_signal(signal.SIGTERM)
        try:
            child.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.proc.kill()
            child.proc.wait(timeout=5)
        child.log.close()
        children.remove(child)
        if child.proc.returncode != 0:
            raise RuntimeError(f"run_worker exited with code {child.proc.returncode}; "
                               f"see {child.log_path}")
        say(f"stopped run_worker (pid {child.proc.pid})")


async def first_answer(case_id: str) -> float:
    """Seconds until the case answers a Query after a worker switch (retried: the server may
    first try the old worker's sticky queue)."""
    from cases import temporal

    client = await temporal.get_client()
    handle = client.get_workflow_handle(case_id)
    loop = asyncio.get_running_loop()
    start = loop.time()
    while True:
        try:
            await handle.query("get_case", rpc_timeout=timedelta(seconds=SWITCH_TIMEOUT))
            return loop.time() - start
        except Exception as err:
            if loop.time() - start > SWITCH_TIMEOUT:
                raise RuntimeError(f"{case_id} answered no Query after a worker switch: "
                                   f"{err}") from err
            await asyncio.sleep(0.1)


async def make_sticky(case_id: str) -> None:
    """Run one workflow task through the current worker without adding to the history.

    The server learns a worker's sticky queue only from a completed workflow task, never from
    a Query answer. A refused Update (an empty comment fails the validator) runs a
    speculative task that leaves no events, so the case stays exactly as built."""
    from cases import temporal
    from workers.model import AddComment

    try:
        await temporal.act(case_id, AddComment(actor="agent", body=""))
    except temporal.ActionRefused:
        return
    raise RuntimeError("An empty comment was accepted; the case changed")


# --- measuring ---------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    name: str
    timings: Timings
    versus: str = ""  # key of the row this one is compared with


def measure(stack: Stack, web: WebClient, live: Built, ended: Built,
            args: argparse.Namespace) -> tuple[list[Row], dict[str, str]]:
    from django.conf import settings

    from cases import temporal

    notes: dict[str, str] = {}
    client = stack.run(temporal.get_client())
    rpc_timeout = timedelta(seconds=settings.TEMPORAL_RPC_TIMEOUT)
    rounds = args.warmup + args.samples

    def on_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> Callable[[], T]:
        return lambda: stack.run(make())

    async def fetch_all() -> None:
        # What the projection fetches: every run, every page (it adds one Describe).
        for run_id in live.run_ids:
            await client.get_workflow_handle(live.case_id, run_id=run_id).fetch_history(
                rpc_timeout=rpc_timeout)

    def page(path: str) -> Callable[[], None]:
        def get() -> None:
            check(web.get(path), f"GET {path}")
        return get

    def page_on_loop(path: str) -> Callable[[], None]:
        # With a worker in this process, a blocking request would starve it of the loop it
        # answers on (and time out): the request runs in a thread while the loop turns.
        def get() -> None:
            stack.run(asyncio.to_thread(page(path)))
        return get

    def get_case() -> None:
        stack.run(temporal.get_case(live.case_id))

    live_page = f"/cases/{live.case_id}/"
    history_page = f"/cases/{live.case_id}/history/"
    ended_page = f"/cases/{ended.case_id}/"

    # Sanity first: the closed twin is refused by the Query (so its page is projected).
    try:
        stack.run(temporal.get_case(ended.case_id))
        raise RuntimeError(f"{ended.case_id} should have ended but answered a Query")
    except temporal.CaseCompleted:
        pass
    projection = stack.run(temporal.case_history(live.case_id)).projection
    notes["timeline"] = f"{len(projection.entries)} timeline entries"

    # -- phase 1: `run_worker`, which ran every Update, has the case in its sticky cache
    say(f"phase 1 (run_worker warm; projection; pages): {args.warmup} warm-up + "
        f"{args.samples} samples")
    one = interleaved({
        "warm": get_case,
        "fetch": on_loop(fetch_all),
        "project": on_loop(lambda: temporal.case_history(live.case_id)),
        "history_page": page(history_page),
        "live_page": page(live_page),
        "ended_page": page(ended_page),
    }, args.warmup, args.samples, on_error=stack.check_alive)

    stop_harness_worker(stack)

    # -- phase 2: a worker with the default cache in this process
    running = stack.run(start_in_process_worker(DEFAULT_CACHE))
    try:
        notes["switch_warm"] = f"{stack.run(first_answer(live.case_id)):.2f} s"
        say(f"phase 2 (in-process worker, default cache, not sticky, then sticky): "
            f"{args.warmup} warm-up + {args.samples} samples each")
        before = Replays.created
        unsticky = interleaved({"cached": get_case}, args.warmup, args.samples)
        stack.run(make_sticky(live.case_id))
        sticky = interleaved({"warm_here": get_case}, args.warmup, args.samples)
        notes["instances_warm"] = f"{Replays.created - before} for {2 * rounds} Queries"
    finally:
        stack.run(stop_in_process_worker(running))

    # -- phase 3: the only worker polling keeps no cache, so every Query replays
    running = stack.run(start_in_process_worker(0))
    try:
        notes["switch_cold"] = f"{stack.run(first_answer(live.case_id)):.2f} s"
        say(f"phase 3 (in-process worker, max_cached_workflows=0): {args.warmup} warm-up + "
            f"{args.samples} samples")
        before = Replays.created
        three = interleaved({
            "evicted": get_case,
            "evicted_page": page_on_loop(live_page),
        }, args.warmup, args.samples)
        notes["instances_cold"] = f"{Replays.created - before} for {2 * rounds} Queries"
    finally:
        stack.run(stop_in_process_worker(running))

    fetch_name = ("  raw fetch_history (all pages)" if len(live.run_ids) == 1
                  else f"  raw fetch_history ({len(live.run_ids)} runs)")
    rows = [
        Row("warm", "warm: get_case Query, run_worker process", one["warm"]),
        Row("warm_here", "  warm: same, in-process worker", sticky["warm_here"], "warm"),
        Row("cached", "  cached, not sticky: whole history sent", unsticky["cached"],
            "warm_here"),
        Row("evicted", "evicted: get_case Query, no worker cache", three["evicted"],
            "warm_here"),
        Row("fetch", fetch_name, one["fetch"]),
        Row("project", "projection: temporal.case_history", one["project"], "fetch"),
        Row("history_page", "GET /cases/<id>/history/", one["history_page"], "project"),
        Row("live_page", "GET /cases/<id>/ live, warm worker", one["live_page"], "warm"),
        Row("evicted_page", "GET /cases/<id>/ live, no worker cache", three["evicted_page"],
            "evicted"),
        Row("ended_page", "GET /cases/<id>/ closed twin (projected)", one["ended_page"],
            "project"),
    ]
    return rows, notes


# --- the report ----------------------------------------------------------------------------


def _ratio(rows: dict[str, Row], key: str, versus: str) -> tuple[float, float]:
    a, b = rows[key].timings.ms, rows[versus].timings.ms
    return percentile(a, 50) / percentile(b, 50), percentile(a, 95) / percentile(b, 95)


def report(rows: list[Row], notes: dict[str, str], live: Built, ended: Built,
           args: argparse.Namespace, load: str) -> str:
    from django.conf import settings

    query_timeout: float = settings.TEMPORAL_QUERY_TIMEOUT
    by_key = {row.key: row for row in rows}
    number = {row.key: i for i, row in enumerate(rows, 1)}
    head = (f"{'#':>2}  {'what':<44} {'p50 ms':>8} {'p95 ms':>8} {'errors':>6}  "
            f"{'vs':>3} {'ratio p50':>9} {'ratio p95':>9}")
    lines = [
        f"Tracerail: the case page of a case with {live.events:,} history events — "
        f"{machine()}",
        f"platform {platform.platform()}",
        f"case: {live.updates} comment Updates of {args.note_chars} characters, "
        f"{live.events:,} events, {live.runs()}; latest run {live.size_bytes / 1e6:.2f} MB, "
        f"{notes['timeline']}",
        f"closed twin: {ended.events:,} events, {ended.runs()}; {ended.size_bytes / 1e6:.2f} MB",
        f"samples: {args.samples} per method after {args.warmup} warm-up rounds, interleaved "
        f"within each phase; load average (1/5/15 min) {load}",
        "",
        head,
        "-" * len(head),
    ]
    for row in rows:
        ms = row.timings.ms
        line = (f"{number[row.key]:>2}  {row.name:<44} {percentile(ms, 50):8.2f} "
                f"{percentile(ms, 95):8.2f} {len(row.timings.errors):>6}")
        if row.versus:
            r50, r95 = _ratio(by_key, row.key, row.versus)
            line += f"  {number[row.versus]:>3} {r50:8.2f}x {r95:8.2f}x"
        lines.append(line)

    def headline(label: str, key: str, versus: str) -> str:
        r50, r95 = _ratio(by_key, key, versus)
        return f"  {label:<46} {r50:7.2f}x / {r95:.2f}x"

    lines += [
        "",
        "headline ratios (p50 / p95):",
        headline("evicted Query / warm Query (run_worker)", "evicted", "warm"),
        headline("evicted Query / warm Query (in-process)", "evicted", "warm_here"),
        headline("evicted Query / cached, not sticky", "evicted", "cached"),
        headline("projection / warm Query (run_worker)", "project", "warm"),
        headline("projection / evicted Query", "project", "evicted"),
        headline("projection / raw fetch_history", "project", "fetch"),
        "",
        f"replays (workflow instances the in-process workers created): default cache "
        f"{notes['instances_warm']}, no cache {notes['instances_cold']} (pages included)",
        f"first Query answered after stopping the previous worker: {notes['switch_warm']} "
        f"(default cache), {notes['switch_cold']} (no cache)",
        f"temporal.get_case gives up after TEMPORAL_QUERY_TIMEOUT = {query_timeout:g} s; a "
        "Query that takes longer fails (the page degrades) and counts as an error.",
        "",
        "warm = temporal.get_case (Query, reject_condition NOT_OPEN) answered from the sticky "
        "cache of `manage.py run_worker`, which ran every Update;",
        "  row 2: the same from a worker in this process, after a refused Update made it "
        "sticky (the like-for-like reference for row 4);",
        "  row 3: that worker before it was sticky: it has the case cached but the server "
        "sends each Query with the whole history to the normal queue;",
        "evicted = the same Query, answered by the only worker polling, built with "
        "max_cached_workflows=0 in this process: every Query replays;",
        "projection = temporal.case_history: DescribeWorkflowExecution, "
        "GetWorkflowExecutionHistory per run, workers/projection.py; no worker.",
        "raw fetch_history = handle.fetch_history() of every run, every page: the floor under "
        "projection.",
        "pages = client-observed loopback round trips (http.client keep-alive → uvicorn → "
        "Django → Temporal, whole body read);",
        "  the no-cache page runs its request in a thread, so that the worker in this process "
        "can answer it.",
        "vs = the row a ratio compares with; errors = failed calls (they count with the time "
        "they took).",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with Stack(keep_dir=args.keep) as stack:
        stack.start_backend()
        queue = stack.queues()[0]
        say(f"building a case and a twin to be closed, {args.events} events each")
        started = time.monotonic()

        async def both() -> tuple[Built, Built]:
            return await asyncio.gather(
                build_case(args.events, queue, args.note_chars, close=False),
                build_case(args.events, queue, args.note_chars, close=True))

        live, ended = stack.run(both())
        say(f"built {live.case_id} ({live.events} events, {len(live.run_ids)} run(s)) and "
            f"{ended.case_id} ({ended.events} events, closed) in "
            f"{time.monotonic() - started:.0f} s")
        stack.start_web()
        stack.create_user(USERNAME, PASSWORD, "Supervisor")
        web = stack.web_client()
        web.login(USERNAME, PASSWORD)
        load = f"before {load_average()}"
        rows, notes = measure(stack, web, live, ended, args)
        load += f", after {load_average()}"
        web.close()
    print(report(rows, notes, live, ended, args, load), flush=True)


if __name__ == "__main__":
    with exit_hard():
        main()
