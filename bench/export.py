"""What does the case export cost in Visibility calls and history reads?

Run from the repository root:

    .venv/bin/python -m bench.export [--cases K] [--changed M]

Starts its own Temporal dev server and worker (see bench/harness.py), opens K cases (default
2,000), makes the analytics store from them with a rebuild (`export_cases --rebuild`), runs the
incremental export once with nothing changed, changes M of the cases (default 300: a comment
each), and runs the incremental export again. For each run it prints what the exporter counted
(Visibility calls, history reads, cases written, cases listed but unchanged) beside the dev
server's own count of List/Count calls, and the calls per changed case.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from bench.harness import Stack, exit_hard, load_average, machine, say

VISIBILITY = ("ListWorkflowExecutions", "CountWorkflowExecutions", "ScanWorkflowExecutions")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=2000, help="cases opened (default 2000)")
    parser.add_argument("--changed", type=int, default=300,
                        help="cases changed between two exports (default 300)")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory")
    return parser.parse_args(argv)


async def change(case_ids: list[str]) -> None:
    from cases import temporal
    from workers.model import AddComment

    gate = asyncio.Semaphore(20)

    async def one(case_id: str) -> None:
        async with gate:
            await temporal.act(case_id, AddComment(actor="agent", body="Any news?"))

    await asyncio.gather(*(one(c) for c in case_ids))


async def indexed(since: Any, count: int, within: float = 120) -> None:
    """Until Visibility lists `count` cases changed since `since` (it indexes a moment late)."""
    from cases import temporal
    from cases.temporal.visibility import BASE, quote_time

    deadline = time.monotonic() + within
    while await temporal.count_cases(f"{BASE} AND CaseUpdatedAt >= {quote_time(since)}") < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"Visibility did not show {count} changed cases in {within} s")
        await asyncio.sleep(0.5)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rows: list[tuple[str, int, Any, int]] = []
    with Stack(keep_dir=args.keep) as stack:
        stack.start_backend()
        from datetime import UTC, datetime

        from django.conf import settings

        from cases.analytics import exporter
        from cases.analytics.store import Store

        settings.ANALYTICS_URI = str(stack.workdir / "analytics")
        store = Store()
        say(f"opening {args.cases} cases")
        case_ids = stack.seed(args.cases)
        stack.wait_until_ready(case_ids)

        def measured(name: str, changed: int, coro: Any) -> None:
            # The server publishes its counters about once a second: let the calls before
            # this run (the waits for Visibility) be counted first.
            time.sleep(2.5)
            before = stack.server_metrics(["service_requests"], VISIBILITY)["service_requests"]
            report = stack.run(coro)
            time.sleep(2.5)
            after = stack.server_metrics(["service_requests"], VISIBILITY)["service_requests"]
            rows.append((name, changed, report, int(after - before)))
            say(f"{name}: {report}")

        measured("rebuild", args.cases, exporter.rebuild(store))
        measured("incremental, nothing changed", 0, exporter.export_changed(store))
        since = datetime.now(UTC)
        chosen = case_ids[:args.changed]
        say(f"changing {len(chosen)} cases")
        stack.run(change(chosen))
        stack.run(indexed(since, len(chosen)))
        measured(f"incremental, {len(chosen)} changed", len(chosen),
                 exporter.export_changed(store))
        measured("incremental, nothing changed again", 0, exporter.export_changed(store))
        load = load_average()
    print(report(rows, args, load), flush=True)


def report(rows: list[tuple[str, int, Any, int]], args: argparse.Namespace, load: str) -> str:
    lines = [
        f"bench/export.py --cases {args.cases} --changed {args.changed}; {machine()}; "
        f"load {load}",
        "",
        "| run | cases changed | Visibility calls (exporter / server) | per changed case | "
        "history reads | written | listed, unchanged | seconds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, changed, r, server in rows:
        per = f"{r.visibility_calls / changed:.4f}" if changed else "-"
        lines.append(f"| {name} | {changed} | {r.visibility_calls} / {server} | {per} | "
                     f"{r.history_calls} | {r.cases} | {r.unchanged} | {r.seconds:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    with exit_hard():
        main()
