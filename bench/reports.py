"""How fast is a report over 100k exported cases?

Run from the repository root:

    .venv/bin/python -m bench.reports [--cases N] [--samples K] [--days D] [--batch B]

Writes N synthetic exported cases (default 100,000; about 4 timeline events each, opened over
the 120 days before today, 4 queues, 4 priorities, 25 agents, a Region Keyword attribute, 80 %
resolved, 5 % reopened, SLA outcomes, calendars on one queue) into a temporary store with
`Store.write` in batches of B (default 10,000: one segment per batch and table, as an exporter
would leave them), then times `reports.build` over the last D days (default 90) in
Europe/Paris for each dimension (queue, agent, priority, attr:Region):

  cold  the store has just gained a segment, so the report loads a new snapshot (read every
        Parquet segment: Store.snapshot, timed apart too) and computes its per-snapshot tables
        before counting: the first report after an export;
  warm  the snapshot is reused: every other report.

Also times one `matching_cases` (the list behind the busiest bar). Needs no Temporal server.
Goal: build() under 1 s.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import load_average, percentile, say

QUEUES = ("billing", "support", "sales", "returns")
AGENTS = tuple(f"agent{i:02d}" for i in range(25))
REGIONS = ("EU", "US", "APAC", "")


def synthetic(count: int, batch: int, seed: int = 24):
    """Batches of (cases, events) like the exporter writes."""
    from cases.analytics.schema import CaseFacts, EventFact

    rng = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0)
    cases: list[CaseFacts] = []
    events: list[EventFact] = []
    for n in range(count):
        case_id = f"case-{n:07d}"
        queue = rng.choice(QUEUES)
        priority = rng.randint(1, 4)
        agent = rng.choice(AGENTS)
        opened = now - timedelta(seconds=rng.randint(0, 120 * 86400))
        timeline = [(opened, "opened", "new", "")]
        claimed = opened + timedelta(seconds=rng.randint(60, 4 * 3600))
        timeline.append((claimed, "claimed", "in_progress", agent))
        first_response = claimed + timedelta(seconds=rng.randint(60, 8 * 3600))
        resolved = reopens = None
        if rng.random() < 0.8:
            resolved = first_response + timedelta(seconds=rng.randint(600, 6 * 86400))
            timeline.append((resolved, "resolved", "resolved", agent))
            if rng.random() < 0.05:
                reopened = resolved + timedelta(seconds=rng.randint(600, 2 * 86400))
                resolved = reopened + timedelta(seconds=rng.randint(600, 2 * 86400))
                timeline += [(reopened, "reopened", "in_progress", agent),
                             (resolved, "resolved", "resolved", agent)]
                reopens = 1
        timeline = [t for t in timeline if t[0] <= now]
        if resolved is not None and resolved > now:
            resolved = None
        if first_response > now:
            first_response = None
        due = opened + timedelta(hours=(4, 8, 24, 72)[priority - 1])
        outcome, outcome_at = "", None
        if resolved is not None and resolved <= due:
            outcome, outcome_at = "met", resolved
        elif due <= now and (resolved is None or resolved > due):
            outcome, outcome_at = "breached", due
        region = rng.choice(REGIONS)
        version = len(timeline) + 1
        cases.append(CaseFacts(
            case_id=case_id, version=version, history_events=version * 6, title=f"Case {n}",
            queue=queue, priority=priority, status=timeline[-1][2], requester_name="Ada",
            requester_email=f"ada{n % 500}@example.com", requester_domain="example.com",
            created_by="ada", assignee=agent, tags=[],
            keywords={"Region": region} if region else {}, opened_at=opened,
            first_response_at=first_response, first_response_by=agent if first_response else "",
            resolved_at=resolved, resolved_by=agent if resolved else "",
            assignee_at_resolution=agent if resolved else "", closed_at=None,
            reopen_count=reopens or 0, due_at=due, sla_outcome=outcome,
            sla_outcome_at=outcome_at, calendar="office" if queue == "billing" else "",
            first_response_seconds=(first_response - opened).total_seconds()
            if first_response else None,
            resolution_seconds=(resolved - opened).total_seconds() if resolved else None,
            execution="running", follows="", run_ids=["r1"], state_json="{}"))
        for seq, (at, kind, status, actor) in enumerate(timeline, 1):
            events.append(EventFact(
                case_id=case_id, version=version, history_events=version * 6, seq=seq,
                run_id="r1", event_id=seq * 5, at=at, actor=actor or "ada", kind=kind,
                detail="", text="", state_version=seq, status=status, queue=queue,
                assignee=agent if seq > 1 else "", priority=priority))
        if len(cases) == batch:
            yield cases, events
            cases, events = [], []
    if cases:
        yield cases, events


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=7)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="tracerail-bench-reports-"))
    os.environ["ANALYTICS_URI"] = str(folder / "analytics")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracerail.settings")
    os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    import django

    django.setup()
    from cases.analytics import store
    from cases.analytics.reports import ReportSpec, build, matching_cases

    try:
        shared = store.shared()
        started = time.perf_counter()
        written = 0
        for cases, events in synthetic(args.cases, args.batch):
            shared.write(cases, events)
            written += len(cases)
            say(f"wrote {written:,} cases")
        say(f"wrote {written:,} cases in {time.perf_counter() - started:.1f} s")
        sizes = sum(p.stat().st_size for p in folder.rglob("*.parquet"))
        today = datetime.now(UTC).date()
        dims = ("queue", "agent", "priority", "attr:Region")
        results: dict[tuple[str, str], list[float]] = {}
        one_case = next(synthetic(1, 1))

        def timed(dim: str) -> float:
            spec = ReportSpec(first=today - timedelta(days=args.days - 1), last=today,
                              time_zone="Europe/Paris", by=dim)
            t0 = time.perf_counter()
            report = build(spec)
            elapsed = (time.perf_counter() - t0) * 1000
            assert report.cases == written and report.days
            return elapsed

        for _ in range(args.samples):
            for dim in dims:
                # A new segment (the same facts again, as a retried export writes them):
                # the next report loads a new snapshot.
                shared.write(*one_case)
                t0 = time.perf_counter()
                shared.snapshot()
                loading = (time.perf_counter() - t0) * 1000
                results.setdefault(("snapshot", dim), []).append(loading)
                results.setdefault(("cold", dim), []).append(loading + timed(dim))
                for _ in range(2):
                    results.setdefault(("warm", dim), []).append(timed(dim))
        spec = ReportSpec(first=today - timedelta(days=args.days - 1), last=today,
                          time_zone="Europe/Paris")
        report = build(spec)
        busiest = max(report.days, key=lambda r: r.backlog)
        lists = []
        for _ in range(args.samples):
            t0 = time.perf_counter()
            rows = matching_cases(spec, "backlog", busiest.day, busiest.group)
            lists.append((time.perf_counter() - t0) * 1000)
        assert len(rows) == min(busiest.backlog, 500)

        print(f"\nreports over {written:,} cases ({sizes / 1e6:.1f} MB of Parquet, "
              f"{len(shared.snapshot().segments)} segments), {args.days} days, Europe/Paris; "
              f"{os.cpu_count()} CPUs, load {load_average()}\n")
        print("| dimension | cold p50 ms | of which snapshot | cold max ms | warm p50 ms "
              "| warm p90 ms |")
        print("|---|---|---|---|---|---|")
        for dim in dims:
            cold, warm = results[("cold", dim)], results[("warm", dim)]
            print(f"| {dim} | {statistics.median(cold):.0f} | "
                  f"{statistics.median(results[('snapshot', dim)]):.0f} | {max(cold):.0f} | "
                  f"{statistics.median(warm):.0f} | {percentile(warm, 90):.0f} |")
        print(f"| matching_cases (backlog of {busiest.group} on {busiest.day}, "
              f"{len(rows)} rows) | | | | {statistics.median(lists):.0f} | "
              f"{percentile(lists, 90):.0f} |")
        worst = max(statistics.median(v) for k, v in results.items() if k[0] != "snapshot")
        print(f"\ngoal: build() under 1000 ms: {'met' if worst < 1000 else 'NOT met'} "
              f"(worst median {worst:.0f} ms)")
    finally:
        if args.keep:
            say(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
