"""What does the case page cost for a case with a long history, three ways?

Run from the repository root:

    .venv/bin/python bench/history.py [--events N] [--samples K]

Starts its own Temporal dev server, worker and web app (see bench/harness.py), builds one case
to about N history events (default 2,000) with comment Updates through `gateway.act`, and a
twin of it that is then closed. It times, in one run:

1. warm worker: `gateway.get_case` (a Query) answered by `manage.py run_worker`, which has the
   case in its sticky cache;
2. cache evicted: the same Query answered by a worker that keeps no workflow cache
   (`max_cached_workflows=0`), so every Query replays the whole history. The `run_worker`
   process is stopped first, and an in-process worker with the default cache is timed too,
   so the evicted one is compared with a warm worker in the same place;
3. history projection: `gateway.case_history` (no worker involved), against the raw
   GetWorkflowExecutionHistory call it is built on as the floor.

And the pages on top: the History tab, the live case page (warm and evicted) and the case page
of the closed twin, which is projected from its history. Samples are interleaved within each
phase; page timings are client-observed loopback round trips, like bench/pages.py.
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import random
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

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
    from temporalio.worker import Worker, WorkflowInboundInterceptor

T = TypeVar("T")

USERNAME = "bench-supervisor"
PASSWORD = uuid.uuid4().hex
# About what one accepted comment Update adds to the history (workflow task scheduled, started,
# completed, update accepted, completed, search attributes, memo) before the first batch has
# measured it; it only sizes the batches between two DescribeWorkflowExecution checks.
EVENTS_PER_UPDATE = 7
# Generous for the first Query after a worker switch, which may wait out a sticky queue whose
# worker is gone before the server hands it to the normal queue.
SWITCH_TIMEOUT = 60.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=2000,
                        help="history events to build the case to (default 2000)")
    parser.add_argument("--samples", type=int, default=30,
                        help="timed samples per method (default 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed rounds first")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.events < 20 or args.samples < 1 or args.warmup < 0:
        parser.error("--events must be at least 20, --samples at least 1, --warmup >= 0")
    return args


# --- the case ----------------------------------------------------------------------------


@dataclass
class Built:
    case_id: str
    updates: int
    events: int  # across every run
    runs: int
    size_bytes: int  # the latest run's history size, as the server counts it
    closed: bool = False


async def _describe_lengths(case_id: str, run_ids: list[str]) -> tuple[str, int, int, int]:
    """(latest run id, its history length, its size in bytes, events of the earlier runs)."""
    from cases import gateway

    client = await gateway.get_client()
    desc = await client.get_workflow_handle(case_id).describe()
    if desc.run_id not in run_ids:
        run_ids.append(desc.run_id)
    earlier = 0
    for run_id in run_ids[:-1]:
        earlier += (await client.get_workflow_handle(case_id, run_id=run_id).describe()
                    ).history_length
    size = desc.raw_description.workflow_execution_info.history_size_bytes
    return desc.run_id, desc.history_length, size, earlier


async def build_case(target: int, queue: str, *, close: bool) -> Built:
    """A case with at least `target` history events (counted over every run, should the
    workflow continue as new on the way), made the way the app makes them."""
    from cases import gateway
    from cases.ids import new_case_id
    from cases.management.commands.seed_demo import demo_new_case
    from workers.model import AddComment, Close

    case_id = new_case_id()
    new = demo_new_case(random.Random(20261126), [queue])
    await gateway.start_case(case_id, new, actor="intake")
    run_ids: list[str] = []
    updates = 0
    _, opened, _, _ = await _describe_lengths(case_id, run_ids)
    while True:
        _, length, size, earlier = await _describe_lengths(case_id, run_ids)
        if earlier + length >= target:
            break
        # Rounded down by the rate seen so far, so the case ends within one Update's events
        # of the target rather than a batch's worth past it.
        per_update = (earlier + length - opened) / updates if updates else EVENTS_PER_UPDATE
        batch = max(1, int((target - earlier - length) / per_update))
        for _ in range(batch):
            updates += 1
            # Bodies of an ordinary note's length: every Update result carries the whole
            # case, comments included, so their size shapes the history's byte size too.
            await gateway.act(case_id, AddComment(
                actor="agent", body=f"Note {updates}: called the requester back; still "
                                    "waiting on the logs they promised."))
    if close:
        await gateway.act(case_id, Close(actor="agent"))
        client = await gateway.get_client()
        # The Update returns before the run completes; the page must see an ended case.
        await client.get_workflow_handle(case_id).result()
        _, length, size, earlier = await _describe_lengths(case_id, run_ids)
    return Built(case_id, updates, earlier + length, len(run_ids), size, closed=close)


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
    cached: int


async def start_in_process_worker(max_cached_workflows: int) -> InProcessWorker:
    """A worker on this process's loop, configured like `workers.worker.build_worker` (which
    takes no cache size or interceptors) apart from its cache."""
    from django.conf import settings
    from temporalio.worker import Worker

    from cases import gateway
    from workers.activities import notify_sla_breach
    from workers.workflows import CaseWorkflow

    worker = Worker(
        await gateway.get_client(),
        task_queue=settings.TEMPORAL_TASK_QUEUE,
        workflows=[CaseWorkflow],
        activities=[notify_sla_breach],
        max_concurrent_workflow_tasks=settings.WORKER_MAX_CONCURRENT_WORKFLOW_TASKS,
        max_concurrent_activities=settings.WORKER_MAX_CONCURRENT_ACTIVITIES,
        max_cached_workflows=max_cached_workflows,
        interceptors=[_counting_interceptor()],
    )
    return InProcessWorker(worker, asyncio.create_task(worker.run()), max_cached_workflows)


async def stop_in_process_worker(running: InProcessWorker) -> None:
    # Always awaited: a worker left to interpreter teardown can abort the process.
    await running.worker.shutdown()
    await running.task


def stop_harness_worker(stack: Stack) -> None:
    """Stop `manage.py run_worker` (SIGTERM: it drains and says so), so that from here on
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
        say(f"stopped run_worker (pid {child.proc.pid}) cleanly")


async def first_answer(case_id: str) -> float:
    """Seconds until the case answers a Query after a worker switch (retried: the server may
    first try the old worker's sticky queue)."""
    from cases import gateway

    client = await gateway.get_client()
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

    from cases import gateway

    notes: dict[str, str] = {}
    client = stack.run(gateway.get_client())
    run_handle = client.get_workflow_handle(live.case_id)
    rpc_timeout = timedelta(seconds=settings.TEMPORAL_RPC_TIMEOUT)

    def on_loop(make: Callable[[], Coroutine[Any, Any, T]]) -> Callable[[], T]:
        return lambda: stack.run(make())

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

    live_page = f"/cases/{live.case_id}/"
    history_page = f"/cases/{live.case_id}/history/"
    ended_page = f"/cases/{ended.case_id}/"

    # Sanity first: the ended case is refused by the Query and its page says it ended.
    try:
        stack.run(gateway.get_case(ended.case_id))
        raise RuntimeError(f"{ended.case_id} should have ended but answered a Query")
    except gateway.CaseCompleted:
        pass
    projection = stack.run(gateway.case_history(live.case_id)).projection
    notes["timeline"] = (f"{len(projection.entries)} timeline entries over "
                         f"{len(projection.run_ids)} run(s)")

    # -- phase 1: the harness's run_worker process, the case in its sticky cache
    say(f"phase 1 (warm run_worker, projection, pages): {args.warmup} warm-up + "
        f"{args.samples} samples")
    one = interleaved({
        "warm": on_loop(lambda: gateway.get_case(live.case_id)),
        "fetch": on_loop(lambda: run_handle.fetch_history(rpc_timeout=rpc_timeout)),
        "project": on_loop(lambda: gateway.case_history(live.case_id)),
        "project_ended": on_loop(lambda: gateway.case_history(ended.case_id)),
        "history_page": page(history_page),
        "live_page": page(live_page),
        "ended_page": page(ended_page),
    }, args.warmup, args.samples, on_error=stack.check_alive)

    stop_harness_worker(stack)

    # -- phase 2: an in-process worker with the default cache (the like-for-like reference)
    warm = stack.run(start_in_process_worker(1000))
    try:
        waited = stack.run(first_answer(live.case_id))
        notes["switch_warm"] = f"{waited:.2f} s"
        say(f"phase 2 (in-process worker, default cache): {args.warmup} warm-up + "
            f"{args.samples} samples")
        before = Replays.created
        two = interleaved({
            "warm_here": on_loop(lambda: gateway.get_case(live.case_id)),
        }, args.warmup, args.samples)
        notes["instances_warm"] = str(Replays.created - before)
    finally:
        stack.run(stop_in_process_worker(warm))

    # -- phase 3: the only worker polling keeps no cache, so every Query replays
    cold = stack.run(start_in_process_worker(0))
    try:
        waited = stack.run(first_answer(live.case_id))
        notes["switch_cold"] = f"{waited:.2f} s"
        say(f"phase 3 (in-process worker, max_cached_workflows=0): {args.warmup} warm-up + "
            f"{args.samples} samples")
        before = Replays.created
        three = interleaved({
            "evicted": on_loop(lambda: gateway.get_case(live.case_id)),
            "evicted_page": page_on_loop(live_page),
        }, args.warmup, args.samples)
        rounds = 2 * (args.warmup + args.samples)
        notes["instances_cold"] = f"{Replays.created - before} for {rounds} Queries"
    finally:
        stack.run(stop_in_process_worker(cold))

    rows = [
        Row("warm", "warm: get_case Query (run_worker process)", one["warm"]),
        Row("warm_here", "  warm: same, in-process worker", two["warm_here"], "warm"),
        Row("evicted", "evicted: get_case Query, no worker cache", three["evicted"],
            "warm_here"),
        Row("fetch", "  raw fetch_history (one run, all pages)", one["fetch"]),
        Row("project", "projection: gateway.case_history", one["project"], "fetch"),
        Row("history_page", "GET /cases/<id>/history/", one["history_page"], "project"),
        Row("live_page", "GET /cases/<id>/ live, warm worker", one["live_page"], "warm"),
        Row("evicted_page", "GET /cases/<id>/ live, no worker cache", three["evicted_page"],
            "evicted"),
        Row("project_ended", "case_history of the closed twin", one["project_ended"]),
        Row("ended_page", "GET /cases/<id>/ closed twin (projected)", one["ended_page"],
            "project_ended"),
    ]
    return rows, notes


# --- the report ----------------------------------------------------------------------------


def _ratio(rows: dict[str, Row], key: str, versus: str) -> tuple[float, float]:
    a, b = rows[key].timings.ms, rows[versus].timings.ms
    return percentile(a, 50) / percentile(b, 50), percentile(a, 95) / percentile(b, 95)


def report(rows: list[Row], notes: dict[str, str], live: Built, ended: Built,
           args: argparse.Namespace, load: str) -> str:
    by_key = {row.key: row for row in rows}
    number = {row.key: i for i, row in enumerate(rows, 1)}
    head = (f"{'#':>2}  {'what':<44} {'p50 ms':>8} {'p95 ms':>8} {'errors':>6}  "
            f"{'vs':>3} {'ratio p50':>9} {'ratio p95':>9}")
    continued = ("no continue-as-new: one run" if live.runs == 1 else
                 f"CONTINUED AS NEW: {live.runs} runs (the Query replays only the latest)")
    lines = [
        f"Tracerail: the case page of a case with {live.events:,} history events — "
        f"{machine()}",
        f"platform {platform.platform()}",
        f"case: {live.updates} comment Updates, {live.events:,} events, {continued}, "
        f"latest run {live.size_bytes / 1e6:.2f} MB; {notes['timeline']}",
        f"closed twin: {ended.events:,} events in {ended.runs} run(s), "
        f"{ended.size_bytes / 1e6:.2f} MB",
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
    evicted = _ratio(by_key, "evicted", "warm")
    evicted_here = _ratio(by_key, "evicted", "warm_here")
    projected = _ratio(by_key, "project", "warm")
    projected_fetch = _ratio(by_key, "project", "fetch")
    lines += [
        "",
        "headline ratios (p50 / p95):",
        f"  no-cache Query / warm Query (run_worker)     {evicted[0]:7.2f}x / {evicted[1]:.2f}x",
        f"  no-cache Query / warm Query (in-process)     {evicted_here[0]:7.2f}x / "
        f"{evicted_here[1]:.2f}x",
        f"  history projection / warm Query (run_worker) {projected[0]:7.2f}x / "
        f"{projected[1]:.2f}x",
        f"  history projection / raw fetch_history       {projected_fetch[0]:7.2f}x / "
        f"{projected_fetch[1]:.2f}x",
        "",
        f"replays: workflow instances created by the in-process workers: default cache "
        f"{notes['instances_warm']} for {args.warmup + args.samples} Queries; no cache "
        f"{notes['instances_cold']} (pages included)",
        f"first Query answered after stopping the previous worker: {notes['switch_warm']} "
        f"(default cache), {notes['switch_cold']} (no cache)",
        "",
        "warm = gateway.get_case (Query, reject_condition NOT_OPEN) answered by `manage.py "
        "run_worker`, the case in its cache;",
        "       row 2: the same from a worker in this process (the like-for-like reference "
        "for row 3);",
        "evicted = the same Query, answered by the only worker polling, built with "
        "max_cached_workflows=0 in this process: every Query replays;",
        "projection = gateway.case_history: DescribeWorkflowExecution, "
        "GetWorkflowExecutionHistory per run, workers/projection.py; no worker.",
        "raw fetch_history = handle.fetch_history() of the latest run, every page: the floor "
        "under projection.",
        "pages = client-observed loopback round trips (http.client keep-alive → uvicorn → "
        "Django → Temporal, whole body read);",
        "the no-cache page runs its request in a thread, so that the worker in this process "
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
            return await asyncio.gather(build_case(args.events, queue, close=False),
                                        build_case(args.events, queue, close=True))

        live, ended = stack.run(both())
        say(f"built {live.case_id} ({live.events} events, {live.runs} run(s)) and "
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
