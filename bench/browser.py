"""Time to the first case row in a real browser: our list page vs Temporal's Web UI.

Run from the repository root:

    .venv/bin/python -m bench.browser [--cases N] [--runs R]

Starts its own Temporal dev server *with* its Web UI, a worker and the web app (see
bench/harness.py), seeds N cases (default 300), then drives Debian's Chromium through
Playwright. Each run uses a fresh browser context (empty cache, no cookies) and times from the
start of `page.goto(url)` until the first row of the list is visible:

- ours: log in first in that context (not timed), then `/cases/` until `tr.case-row` shows;
- Temporal Web UI: `/namespaces/default/workflows` until the first
  `[data-testid="workflows-summary-configurable-table-row"]` shows.

The goal, ours <= 1/10 of the Web UI's median, compares these two. Our login lands on the list
page, so our timed load runs in a renderer that has our CSS and JS in memory, while the Web UI
starts from nothing. Two more measurements make a like-for-like pair, both in a *new tab* of a
context that has loaded the page once before (not timed): "ours, new tab" and "Web UI, warm".
The same pair is timed once more in a tab opened a second before the navigation (see
`opened`), as someone opening a tab and then pasting an address would. Issue 18's goals: the
new tab <= 0.075x and the same tab <= 0.05x of the Web UI's like-for-like figures.

With --trace, one more "ours, new tab" load after the timed ones runs under a Chromium trace
(saved as JSON in the run's directory, which is then kept), and a table says where its time
went: our server, our renderer's main thread by kind of work, and the browser's own processes
(bench/trace.py).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
import uuid
from collections.abc import Callable
from typing import Any

from bench import trace
from bench.harness import (
    CHROMIUM_ARGS,
    Stack,
    exit_hard,
    load_average,
    machine,
    median,
    percentile,
    say,
)

CHROMIUM = "/usr/bin/chromium"
OUR_ROW = "tr.case-row"
UI_ROW = '[data-testid="workflows-summary-configurable-table-row"]'
USERNAME = "bench-supervisor"
PASSWORD = uuid.uuid4().hex
GOAL = 10
SETTLE_S = 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=300, help="cases to seed (default 300)")
    parser.add_argument("--runs", type=int, default=10, help="timed loads of each (default 10)")
    parser.add_argument("--timeout", type=float, default=30, help="seconds to wait for a row")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--trace", action="store_true",
                        help="trace one more new-tab load of ours; keeps the directory")
    return parser.parse_args(argv)


# Checked on every animation frame: Playwright's own `wait_for` retries on a back-off
# (0, 20, 50, 100 ms, ...), which would round a fast page up to the next retry.
VISIBLE = """selector => {
  const el = document.querySelector(selector);
  if (!el) return false;
  const box = el.getBoundingClientRect();
  return box.width > 0 && box.height > 0 && getComputedStyle(el).visibility !== "hidden"
    && performance.now();
}"""

# Where a load's time went, read from the page once its row showed (so the reading costs the
# timed load nothing): Navigation Timing and Paint Timing, in ms from the navigation's start
# (performance.timeOrigin, in the renderer's clock) and that start on the wall clock.
PHASES_JS = """() => {
  const n = performance.getEntriesByType("navigation")[0];
  const paint = Object.fromEntries(performance.getEntriesByType("paint")
    .map(p => [p.name, p.startTime]));
  return {origin: performance.timeOrigin, fetchStart: n.fetchStart,
          requestStart: n.requestStart, responseStart: n.responseStart,
          responseEnd: n.responseEnd, domInteractive: n.domInteractive,
          dclStart: n.domContentLoadedEventStart, dclEnd: n.domContentLoadedEventEnd,
          firstPaint: paint["first-paint"] ?? null,
          firstContentfulPaint: paint["first-contentful-paint"] ?? null,
          bytes: n.transferSize};
}"""

# Phases of one load, in ms: (name, what it is).
PHASES = (
    ("before navigation", "page.goto() called → the navigation starts in the renderer "
     "(Playwright's message, Chromium's new-tab work)"),
    ("navigation → request", "redirects, cache lookup, connection (fetchStart → requestStart)"),
    ("server (TTFB)", "request sent → first byte of the page (requestStart → responseStart)"),
    ("download", "first → last byte of the page (responseStart → responseEnd)"),
    ("parse to interactive", "last byte → DOM interactive: HTML parsed, blocking CSS and "
     "scripts in (responseEnd → domInteractive)"),
    ("DOMContentLoaded handlers", "htmx's start, app.js (domContentLoadedEventStart → End)"),
    ("→ first paint", "DOMContentLoaded done → first paint (style, layout, paint)"),
    ("first paint → row seen", "first paint → the row visible to the rAF check"),
)


# The same load as milestones, ms after page.goto() was called (medians of phases need not
# add up to the median total; milestones show when each step ended).
MILESTONES = ("navigation starts", "request sent", "first byte", "last byte", "DOM interactive",
              "DOMContentLoaded done", "first paint", "first contentful paint", "row seen")


def phases(goto_wall_ms: float, visible_ms: float, t: dict[str, Any]) -> dict[str, float]:
    first_paint = t["firstPaint"] if t["firstPaint"] is not None else visible_ms
    fcp = t["firstContentfulPaint"] if t["firstContentfulPaint"] is not None else visible_ms
    at = t["origin"] - goto_wall_ms
    return {f"at {name}": at + value for name, value in zip(MILESTONES, (
        0.0, t["requestStart"], t["responseStart"], t["responseEnd"], t["domInteractive"],
        t["dclEnd"], first_paint, fcp, visible_ms), strict=True)} | dict(zip(
        (name for name, _ in PHASES), (
        t["origin"] - goto_wall_ms,
        t["requestStart"] - t["fetchStart"],
        t["responseStart"] - t["requestStart"],
        t["responseEnd"] - t["responseStart"],
        t["domInteractive"] - t["responseEnd"],
        t["dclEnd"] - t["dclStart"],
        first_paint - t["dclEnd"],
        visible_ms - first_paint,
    ), strict=True))


def first_row(page: Any, url: str, selector: str, timeout_ms: float,
              breakdown: list[dict[str, float]] | None = None) -> float:
    """Milliseconds from the start of navigating to `url` until `selector` is visible; with
    `breakdown`, where that time went is appended to it."""
    start = time.perf_counter()
    goto_wall = time.time() * 1000
    page.goto(url, wait_until="commit", timeout=timeout_ms)
    seen = page.wait_for_function(VISIBLE, arg=selector, polling="raf", timeout=timeout_ms)
    elapsed = (time.perf_counter() - start) * 1000
    if not page.locator(selector).first.is_visible():  # the same check, Playwright's way
        raise RuntimeError(f"{selector} reported visible but is not on {url}")
    if breakdown is not None:
        breakdown.append(phases(goto_wall, float(seen.json_value()), page.evaluate(PHASES_JS))
                         | {"total": elapsed})
    return elapsed


def opened(context: Any, settle: float) -> Any:
    """A new tab; after `settle` seconds if asked. Chromium builds a new tab's own browser
    UI (its omnibox popup pages, ~100 chrome:// modules on 150+) right as the tab opens, and on
    two cores that work lands in the middle of a navigation started at once. Someone who
    opens a tab and then types or pastes an address starts from a tab that has settled."""
    page = context.new_page()
    if settle:
        page.wait_for_timeout(settle * 1000)
    return page


def login(page: Any, base: str, timeout_ms: float) -> None:
    page.goto(f"{base}/login/", timeout=timeout_ms)
    page.fill("#id_username", USERNAME)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/cases/**", timeout=timeout_ms)


BREAKDOWNS: dict[str, list[dict[str, float]]] = {"ours": [], "ours_new_tab": [],
                                                 "web_ui_warm": []}
# --trace's table, printed after the report.
TRACED: list[str] = []

# Chromium's DevTools Performance panel's own categories, less screenshots; "toplevel" gives
# every thread's tasks, so the browser process's busy time can be read as well as ours.
TRACE_CATEGORIES = [
    "devtools.timeline", "disabled-by-default-devtools.timeline",
    "disabled-by-default-devtools.timeline.frame", "toplevel", "blink.user_timing",
    "loading", "v8.execute", "v8", "netlog",
]


def measure(stack: Stack, args: argparse.Namespace) -> dict[str, list[float]]:
    from playwright.sync_api import sync_playwright

    timeout_ms = args.timeout * 1000
    ours_url = f"{stack.web_url}/cases/"
    ui_url = f"{stack.ui_url}/namespaces/default/workflows"

    def ours(browser: Any) -> float:
        context = browser.new_context()
        try:
            page = context.new_page()
            login(page, stack.web_url, timeout_ms)
            return first_row(page, ours_url, OUR_ROW, timeout_ms, BREAKDOWNS["ours"])
        finally:
            context.close()

    def ours_new_tab(browser: Any, settle: float = 0) -> float:
        context = browser.new_context()
        try:
            page = context.new_page()
            login(page, stack.web_url, timeout_ms)
            page.close()
            return first_row(opened(context, settle), ours_url, OUR_ROW, timeout_ms,
                             None if settle else BREAKDOWNS["ours_new_tab"])
        finally:
            context.close()

    def web_ui(browser: Any) -> float:
        context = browser.new_context()
        try:
            return first_row(context.new_page(), ui_url, UI_ROW, timeout_ms)
        finally:
            context.close()

    def web_ui_warm(browser: Any, settle: float = 0) -> float:
        context = browser.new_context()
        try:
            page = context.new_page()
            first_row(page, ui_url, UI_ROW, timeout_ms)
            page.close()
            return first_row(opened(context, settle), ui_url, UI_ROW, timeout_ms,
                             None if settle else BREAKDOWNS["web_ui_warm"])
        finally:
            context.close()

    def traced_new_tab(browser: Any) -> None:
        """ours_new_tab's load once more, traced. The trace is browser-wide and starts before
        the tab opens: traced from the page's own session Chromium records only that page's
        processes, so the new tab's own browser UI (another renderer) would not show."""
        context = browser.new_context()
        try:
            page = context.new_page()
            login(page, stack.web_url, timeout_ms)
            page.close()
            path = stack.workdir / "trace-ours-new-tab.json"
            browser.start_tracing(categories=TRACE_CATEGORIES)
            breakdown: list[dict[str, float]] = []
            try:
                total = first_row(opened(context, 0), ours_url, OUR_ROW, timeout_ms, breakdown)
            finally:
                path.write_bytes(browser.stop_tracing())
        finally:
            context.close()
        seen = breakdown[0]["at row seen"] - breakdown[0]["before navigation"]
        say(f"trace saved to {path}")
        try:
            summary = trace.summarize(json.loads(path.read_text()), ours_url, seen,
                                      origin=stack.web_url)
        except ValueError as exc:  # the timed runs' report still prints
            TRACED.append(f"The traced load's trace could not be read ({exc}): {path}")
            return
        TRACED.extend([
            f"One traced load of ours in a new tab: {total:.0f} ms from page.goto() to the row "
            f"({breakdown[0]['before navigation']:.0f} ms before the navigation started); "
            f"trace: {path}",
            "Window: the renderer's navigationStart → the row seen (its performance.now()); "
            "document times from the trace's Resource* events.", "",
            *trace.table(summary),
        ])

    runs: dict[str, Callable[[Any], float]] = {
        "ours": ours, "web_ui": web_ui, "ours_new_tab": ours_new_tab, "web_ui_warm": web_ui_warm,
        "ours_new_tab_settled": lambda b: ours_new_tab(b, SETTLE_S),
        "web_ui_warm_settled": lambda b: web_ui_warm(b, SETTLE_S),
    }
    timings: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            for name in names:  # one untimed round: server-side caches, the browser binary
                runs[name](browser)
            for i in range(args.runs):
                stack.check_alive()
                shift = i % len(names)
                for name in names[shift:] + names[:shift]:
                    timings[name].append(runs[name](browser))
                say(f"run {i + 1}/{args.runs}: " + ", ".join(
                    f"{name} {timings[name][-1]:.0f} ms" for name in names))
            if args.trace:
                traced_new_tab(browser)
        finally:
            browser.close()
    return timings


def report(timings: dict[str, list[float]], args: argparse.Namespace, load: str) -> str:
    labels = {
        "ours": "ours: /cases/ after login, same tab",
        "web_ui": "Temporal Web UI: fresh context",
        "ours_new_tab": "ours: /cases/ in a new tab (after login)",
        "web_ui_warm": "Temporal Web UI: new tab after one load",
        "ours_new_tab_settled": f"ours: new tab, opened {SETTLE_S:g} s before",
        "web_ui_warm_settled": f"Web UI: new tab, opened {SETTLE_S:g} s before",
    }
    head = f"{'first row visible':<42} {'median ms':>9} {'min ms':>8} {'p90 ms':>8} {'max ms':>8}"
    lines = [
        f"Time to first case row in headless Chromium — {args.cases} cases, {args.runs} runs "
        "each, a fresh browser context per run",
        f"{machine()}, {browser_version()}; load average (1/5/15 min) {load}",
        "",
        head,
        "-" * len(head),
    ]
    for name, label in labels.items():
        values = timings[name]
        lines.append(f"{label:<42} {median(values):9.0f} {min(values):8.0f} "
                     f"{percentile(values, 90):8.0f} {max(values):8.0f}")
    ours, cold = median(timings["ours"]), median(timings["web_ui"])
    ours_tab, warm = median(timings["ours_new_tab"]), median(timings["web_ui_warm"])
    lines += [
        "",
        f"goal ours ≤ 1/{GOAL} of the Web UI: ours / Web UI = {ours / cold:.3f} "
        f"(the Web UI takes {cold / ours:.1f}x as long): "
        f"{'met' if ours * GOAL <= cold else 'missed'}",
        f"like for like (new tab, warm cache): {ours_tab / warm:.3f} "
        f"(the Web UI takes {warm / ours_tab:.1f}x as long)",
        f"like for like, tab opened {SETTLE_S:g} s before: "
        f"{median(timings['ours_new_tab_settled']) / median(timings['web_ui_warm_settled']):.3f}",
        f"issue 18 goals: new tab ≤ 0.075: {verdict(ours_tab / warm, 0.075)}; "
        f"same tab ≤ 0.05: {verdict(ours / cold, 0.05)}",
        "timed: page.goto(url) start → first row visible (checked every animation frame); "
        "rows: ours tr.case-row,",
        f"       Web UI {UI_ROW}",
        "",
        *breakdown_table(),
        *(["", *TRACED] if TRACED else []),
    ]
    return "\n".join(lines)


def breakdown_table() -> list[str]:
    """Median ms per phase of the timed loads (the untimed first round left out), per kind."""
    kinds = {"ours": "ours, same tab", "ours_new_tab": "ours, new tab",
             "web_ui_warm": "Web UI, new tab"}
    runs = {k: v[1:] for k, v in BREAKDOWNS.items() if len(v) > 1}
    if not runs:
        return []
    lines = ["Where a load's time went (median ms; Navigation and Paint Timing read in the "
             "page after the row showed):", "",
             "| phase | " + " | ".join(kinds[k] for k in runs) + " | what |",
             "|---|" + "---|" * len(runs) + "---|"]
    for name, what in (*PHASES, ("total", "page.goto() → row visible, as timed above")):
        lines.append(f"| {name} | " + " | ".join(
            f"{median([r[name] for r in v]):.0f}" for v in runs.values()) + f" | {what} |")
    lines += ["", "| ms after page.goto() | " + " | ".join(kinds[k] for k in runs) + " |",
              "|---|" + "---|" * len(runs)]
    for name in MILESTONES:
        lines.append(f"| {name} | " + " | ".join(
            f"{median([r[f'at {name}'] for r in v]):.0f}" for v in runs.values()) + " |")
    return lines


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with Stack(ui=True, keep_dir=args.keep or args.trace) as stack:
        stack.start_backend()
        case_ids = stack.seed(args.cases)
        stack.wait_until_ready(case_ids)
        stack.start_web()
        stack.create_user(USERNAME, PASSWORD, "Supervisor")
        say(f"Temporal Web UI on {stack.ui_url}; our app on {stack.web_url}")
        load = f"before {load_average()}"
        timings = measure(stack, args)
        load += f", after {load_average()}"
    print(report(timings, args, load), flush=True)


def verdict(ratio: float, goal: float) -> str:
    return f"{ratio:.3f} {'met' if ratio <= goal else 'missed'}"


def browser_version() -> str:
    out = subprocess.run([CHROMIUM, "--version"], capture_output=True, text=True).stdout
    return out.strip().split(" built")[0] or "Chromium"


if __name__ == "__main__":
    with exit_hard():
        main()
