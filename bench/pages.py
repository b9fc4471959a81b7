"""How much do our pages add on top of the Temporal call behind each of them?

Run from the repository root:

    .venv/bin/python -m bench.pages [--cases N] [--samples K]

Starts its own Temporal dev server, worker and web app (see bench/harness.py), seeds N cases,
logs in as a supervisor and times, interleaved, each page against the raw Temporal call it is
built on, made from this process with the same client settings the web tier uses:

- GET /cases/ (50 rows)       vs ListWorkflowExecutions (page_size 50, the page's query),
                                 and the SDK's list_workflows first page for comparison;
- a list load as a tab makes it: GET /cases/ and the request for its status chips
  (`#status-counts`, sent on load), with the page's event stream held open as the tab holds
  it (issue 26: the chips' Counts, asked again per load, made the list grow with the cases);
- GET /cases/<id>/            vs the `get_case` Query;
- POST /cases/<id>/comment/   vs the `comment` Update (HTMX request: the case partial back).

Page timings are client-observed loopback round trips (stdlib http.client over one keep-alive
connection, whole body read); raw timings are the SDK call's own wall time. The goal is that
each page takes at most 1.15x its raw call.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import html
import re
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta

from bench.harness import (
    Response,
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

GOAL = 1.15
USERNAME = "bench-supervisor"
PASSWORD = uuid.uuid4().hex


@dataclass
class Row:
    name: str
    page_timings: Timings
    raw_timings: Timings
    goal: bool = True

    @property
    def page(self) -> list[float]:
        return self.page_timings.ms

    @property
    def raw(self) -> list[float]:
        return self.raw_timings.ms

    @property
    def errors(self) -> str:
        return f"{len(self.page_timings.errors)}/{len(self.raw_timings.errors)}"

    @property
    def p50(self) -> float:
        return percentile(self.page, 50)

    @property
    def p95(self) -> float:
        return percentile(self.page, 95)

    @property
    def raw_p50(self) -> float:
        return percentile(self.raw, 50)

    @property
    def raw_p95(self) -> float:
        return percentile(self.raw, 95)

    def verdict(self) -> str:
        if not self.goal:
            return "(reference)"
        r50, r95 = self.p50 / self.raw_p50, self.p95 / self.raw_p95
        if r50 <= GOAL and r95 <= GOAL:
            return "met"
        return "met at p50 only" if r50 <= GOAL else "missed"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="cases to seed (default 1000)")
    parser.add_argument("--samples", type=int, default=200,
                        help="timed samples per read (default 200)")
    parser.add_argument("--update-samples", type=int, default=None,
                        help="timed samples of the comment action (default samples / 2)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed rounds first")
    parser.add_argument("--concurrency", type=int, default=50, help="parallel starts to seed")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.update_samples is None:
        args.update_samples = max(1, args.samples // 2)
    if args.cases < 51:
        parser.error("--cases must be at least 51 (a full list page plus a case to comment on)")
    return args


def check(resp: Response, what: str, expected: int = 200) -> Response:
    if resp.status != expected:
        text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", resp.text())).strip()
        raise RuntimeError(f"{what}: HTTP {resp.status}, expected {expected}: {text[:400]}")
    return resp


class HeldStream:
    """The list page's event stream (`sse-connect`), held open and drained in a thread as a
    tab's EventSource holds it: it is what keeps the web process's change feed running."""

    def __init__(self, port: int, cookies: dict[str, str], path: str) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        cookie = "; ".join(f"{k}={v}" for k, v in cookies.items())
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                           f"Accept: text/event-stream\r\nCookie: {cookie}\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise RuntimeError(f"GET {path}: the stream closed before its headers")
            head += chunk
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"GET {path}: {head.splitlines()[0].decode(errors='replace')}")
        self.sock.settimeout(None)
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            while self.sock.recv(65536):
                pass

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def measure(stack: Stack, web: WebClient, case_ids: list[str], args: argparse.Namespace
            ) -> tuple[Timings, list[Row]]:
    """Floor timings (a page without Temporal) and one Row per page."""
    from django.conf import settings
    from temporalio.api.workflowservice.v1 import (
        CountWorkflowExecutionsRequest,
        ListWorkflowExecutionsRequest,
    )

    from cases import temporal
    from cases.temporal.visibility import CaseFilter
    from workers.model import STATUSES, AddComment

    client = stack.run(temporal.get_client())
    query = CaseFilter().query()  # what /cases/ asks a supervisor's Visibility for
    # The timeouts the gateway gives the same calls.
    timeout = timedelta(seconds=settings.TEMPORAL_RPC_TIMEOUT)
    query_timeout = timedelta(seconds=settings.TEMPORAL_QUERY_TIMEOUT)
    update_timeout = timedelta(seconds=settings.TEMPORAL_UPDATE_TIMEOUT)
    read_case, comment_case = case_ids[0], case_ids[1]
    read_handle = client.get_workflow_handle(read_case)
    comment_handle = client.get_workflow_handle(comment_case)
    say(f"list query: {query}")

    # -- (a) the list page
    first = check(web.get("/cases/"), "GET /cases/")
    rows = first.text().count('class="case-row')
    if rows != 50:
        say(f"warning: /cases/ shows {rows} rows, not 50")

    def list_page() -> None:
        check(web.get("/cases/"), "GET /cases/")

    async def list_rpc() -> None:
        await client.workflow_service.list_workflow_executions(
            ListWorkflowExecutionsRequest(namespace=client.namespace, page_size=50, query=query),
            timeout=timeout,
        )

    async def list_sdk() -> None:
        page = client.list_workflows(query, page_size=50)
        await page.fetch_next_page()

    # The page also shows a count per status next to its filter chips; for reference, what
    # that Temporal work costs on its own (one List and the Counts, concurrently).
    count_queries = [CaseFilter().without_statuses().status_query(s) for s in STATUSES]

    async def list_and_counts() -> None:
        await asyncio.gather(list_rpc(), *(
            client.workflow_service.count_workflow_executions(
                CountWorkflowExecutionsRequest(namespace=client.namespace, query=q),
                timeout=timeout,
            )
            for q in count_queries
        ))

    # A tab's list load: the page, then its chips' request (what htmx sends on load), with
    # the page's stream open as the tab holds it.
    found = re.search(r'sse-connect="([^"]+)"', first.text())
    stream = HeldStream(stack.web_port, web.cookies, html.unescape(found[1])) if found else None
    chips = {"HX-Request": "true", "HX-Target": "status-counts",
             "HX-Current-URL": f"{stack.web_url}/cases/"}

    def list_load() -> None:
        check(web.get("/cases/"), "GET /cases/")
        resp = check(web.get("/cases/", headers=chips), "GET /cases/ (chips)")
        if 'id="count-new"' not in resp.text():
            raise RuntimeError(f"The chips' request brought no counts: {resp.text()[:300]}")

    say(f"timing the list page: {args.warmup} warm-up + {args.samples} samples")
    try:
        lists = interleaved({
            "page": list_page,
            "load": list_load,
            "rpc": lambda: stack.run(list_rpc()),
            "sdk": lambda: stack.run(list_sdk()),
            "counts": lambda: stack.run(list_and_counts()),
        }, args.warmup, args.samples, on_error=stack.check_alive)
    finally:
        if stream is not None:
            stream.close()

    # -- (b) the case page
    def case_page() -> None:
        check(web.get(f"/cases/{read_case}/"), "GET /cases/<id>/")

    say(f"timing the case page: {args.warmup} warm-up + {args.samples} samples")
    details = interleaved({
        "page": case_page,
        "raw": lambda: stack.run(read_handle.query("get_case", rpc_timeout=query_timeout)),
        # For reference: a page that asks Temporal nothing (session and user still loaded).
        "floor": lambda: check(web.get("/login/"), "GET /login/"),
    }, args.warmup, args.samples, on_error=stack.check_alive)

    # -- (c) an action
    counter = iter(range(1_000_000))

    def comment_page() -> None:
        n = next(counter)
        resp = web.post(f"/cases/{comment_case}/comment/",
                        {"comment-body": f"Benchmark comment {n} via the page.",
                         "comment-key": uuid.uuid4().hex},
                        headers={"HX-Request": "true"})
        check(resp, "POST /cases/<id>/comment/")
        if "done" not in resp.text():
            raise RuntimeError(f"The comment was not applied: {resp.text()[:500]}")

    def comment_raw() -> None:
        n = next(counter)
        stack.run(comment_handle.execute_update(
            "comment",
            AddComment(actor=USERNAME, body=f"Benchmark comment {n} via the Update."),
            id=f"bench-{uuid.uuid4().hex}",
            rpc_timeout=update_timeout,
        ))

    warm = max(1, args.warmup // 2)
    say(f"timing the comment action: {warm} warm-up + {args.update_samples} samples")
    updates = interleaved({"page": comment_page, "raw": comment_raw}, warm,
                          args.update_samples, on_error=stack.check_alive)

    return details["floor"], [
        Row("GET /cases/ (list, 50 rows)", lists["page"], lists["rpc"]),
        Row("  same page vs SDK list_workflows", lists["page"], lists["sdk"], goal=False),
        Row(f"  same page vs List + {len(STATUSES)} Counts", lists["page"], lists["counts"],
            goal=False),
        Row("list load (page+chips, stream)", lists["load"], lists["counts"], goal=False),
        Row("GET /cases/<id>/ (case page)", details["page"], details["raw"]),
        Row("POST /cases/<id>/comment/ (HTMX)", updates["page"], updates["raw"]),
    ]


def report(floor: Timings, rows: list[Row], args: argparse.Namespace, cases: int,
           load: str) -> str:
    head = (f"{'name':<34} {'p50 ms':>7} {'p95 ms':>7} {'raw p50':>8} {'raw p95':>8} "
            f"{'ratio p50':>9} {'ratio p95':>9} {'errors':>6}  goal ≤{GOAL:.2f}x")
    lines = [
        f"Tracerail pages vs their raw Temporal calls — {cases} cases, {machine()}",
        f"samples: {args.samples} per read, {args.update_samples} comments; "
        f"warm-up {args.warmup} (comments {max(1, args.warmup // 2)}); interleaved; "
        f"load average (1/5/15 min) {load}",
        "page = client-observed loopback round trip (http.client keep-alive → uvicorn → Django "
        "→ Temporal, whole body read)",
        "raw  = the same Temporal call made directly from the benchmark process (same client "
        "settings)",
        "",
        head,
        "-" * len(head),
    ]
    for row in rows:
        lines.append(
            f"{row.name:<34} {row.p50:7.2f} {row.p95:7.2f} {row.raw_p50:8.2f} {row.raw_p95:8.2f} "
            f"{row.p50 / row.raw_p50:8.2f}x {row.p95 / row.raw_p95:8.2f}x {row.errors:>6}  "
            f"{row.verdict()}"
        )
    lines += [
        f"{'  floor: GET /login/ (no Temporal)':<34} {percentile(floor.ms, 50):7.2f} "
        f"{percentile(floor.ms, 95):7.2f}",
        "",
        "raw calls: list = WorkflowService.ListWorkflowExecutions(page_size=50, same query); "
        "SDK = client.list_workflows(query, page_size=50).fetch_next_page();",
        "           List + Counts = that List and one CountWorkflowExecutions per status, "
        "concurrently (what the page asks Temporal for);",
        "           case page = handle.query('get_case'); comment = "
        "handle.execute_update('comment', AddComment(...));",
        "floor = a logged-in GET of the login form: uvicorn, Django, session and user, "
        "no Temporal call.",
        "list load = GET /cases/ and its chips' request (HX-Target: status-counts) one after "
        "the other, the page's event stream held open (raw: List + Counts);",
        "errors = failed page/raw calls (HTTP status other than 200, or an RPC error); they "
        "count with the time they took.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with Stack(keep_dir=args.keep) as stack:
        stack.start_backend()
        case_ids = stack.seed(args.cases, args.concurrency)
        stack.wait_until_ready(case_ids)
        stack.start_web()
        stack.create_user(USERNAME, PASSWORD, "Supervisor")
        web = stack.web_client()
        web.login(USERNAME, PASSWORD)
        load = f"before {load_average()}"
        floor, rows = measure(stack, web, case_ids, args)
        load += f", after {load_average()}"
        web.close()
    print(report(floor, rows, args, args.cases, load), flush=True)


if __name__ == "__main__":
    with exit_hard():
        main()
