"""bench/trace.py: where a traced page load's time went, on a hand-made Chromium trace (no
browser, no Temporal). A wrong attribution would put the browser's time on us or the other
way round in docs/performance.md."""

from __future__ import annotations

import pytest

from bench import trace

ORIGIN = "http://127.0.0.1:8000"
URL = f"{ORIGIN}/cases/"
RENDERER, BROWSER, OTHER_RENDERER = (2, 20), (1, 10), (3, 30)


def x(where: tuple[int, int], name: str, ts: float, dur: float, **data: object) -> dict:
    return {"ph": "X", "pid": where[0], "tid": where[1], "name": name, "ts": ts, "dur": dur,
            "args": {"data": data} if data else {}}


def thread(where: tuple[int, int], name: str) -> dict:
    return {"ph": "M", "name": "thread_name", "pid": where[0], "tid": where[1],
            "args": {"name": name}}


def synthetic() -> dict:
    """A 5 ms window (µs 1000 → 6000) on three threads; events nested as Chromium writes
    them, one as a B/E pair, some partly outside the window."""
    return {"traceEvents": [
        thread(RENDERER, "CrRendererMain"), thread(BROWSER, "CrBrowserMain"),
        thread(OTHER_RENDERER, "CrRendererMain"),
        {"ph": "R", "pid": 2, "tid": 20, "name": "navigationStart", "ts": 1000,
         "args": {"data": {"documentLoaderURL": URL}}},
        x(RENDERER, "RunTask", 500, 400),  # before the window: not counted
        # 1500-2500: a task parsing our HTML, which runs app.js, which V8 compiles.
        x(RENDERER, "RunTask", 1500, 1000),
        {**x(RENDERER, "ParseHTML", 1600, 600), "args": {"beginData": {"url": URL}}},
        x(RENDERER, "EvaluateScript", 1700, 300, url=f"{ORIGIN}/static/js/app.js"),
        x(RENDERER, "v8.compile", 1750, 100),
        # 3000-3500: htmx, as a B/E pair, forcing a 200 µs layout.
        {"ph": "B", "pid": 2, "tid": 20, "name": "EvaluateScript", "ts": 3000,
         "args": {"data": {"url": f"{ORIGIN}/static/js/htmx.min.js"}}},
        x(RENDERER, "Layout", 3100, 200),
        {"ph": "E", "pid": 2, "tid": 20, "name": "EvaluateScript", "ts": 3500},
        x(RENDERER, "Paint", 3600, 100),
        x(RENDERER, "FunctionCall", 3800, 50),  # no URL: Playwright's check
        x(RENDERER, "RunTask", 5800, 400),  # half in the window
        # The browser process: a task straddling the window's start, with a nested child.
        x(BROWSER, "RunTask", 900, 300),
        x(BROWSER, "NavigationRequest", 1000, 100),
        x(BROWSER, "ResourceSendRequest", 1100, 0, url=URL, requestId="r1"),
        x(BROWSER, "ResourceReceiveResponse", 1400, 0, requestId="r1",
          timing={"sendEnd": 0.1, "receiveHeadersEnd": 0.25}),
        x(BROWSER, "ResourceFinish", 1450, 0, requestId="r1"),
        x(OTHER_RENDERER, "RunTask", 2000, 1000),
    ]}


def test_self_time_goes_to_the_innermost_event_grouped_by_its_nearest_grouped_ancestor():
    summary = trace.summarize(synthetic(), URL, visible_ms=5.0, origin=ORIGIN)
    renderer = summary["renderer"]
    assert summary["window"] == 5.0
    # ParseHTML's 600 less app.js's 300; app.js 300 with the v8.compile inside it.
    assert renderer[trace.PARSE] == pytest.approx(0.3)
    assert renderer[trace.OURS] == pytest.approx(0.3)
    # htmx's 500 less the layout it forced.
    assert renderer[trace.LIBRARIES] == pytest.approx(0.3)
    assert renderer[trace.STYLE] == pytest.approx(0.2)
    assert renderer[trace.PAINT] == pytest.approx(0.1)
    assert renderer[trace.OTHER_SCRIPT] == pytest.approx(0.05)
    # The task's 400 around the parse, and the half of the last task inside the window.
    assert renderer[trace.OTHER] == pytest.approx(0.6)
    assert renderer[trace.IDLE] == pytest.approx(5.0 - 1.85)
    assert sum(renderer.values()) == pytest.approx(5.0)


def test_the_browser_and_other_renderers_count_only_their_busy_time_in_the_window():
    summary = trace.summarize(synthetic()["traceEvents"], URL, visible_ms=5.0, origin=ORIGIN)
    assert summary["browser main"] == pytest.approx(0.2)  # not 0.3, nor 0.3 with the child
    assert summary["other renderers"] == pytest.approx(1.0)
    assert summary["other renderer count"] == 1
    assert summary["gpu main"] == 0


def test_the_document_request_is_timed_from_its_own_events():
    summary = trace.summarize(synthetic(), URL, visible_ms=5.0, origin=ORIGIN)
    assert summary["request → response"] == pytest.approx(0.3)
    assert summary["download"] == pytest.approx(0.05)
    assert summary["server (network timing)"] == pytest.approx(0.15)
    assert "| document: response → last byte | 0 | ours |" in trace.table(summary)


def test_a_child_outliving_its_parent_ends_with_it():
    spans = [trace.Span("RunTask", 0, 100), trace.Span("Layout", 50, 150)]
    got = trace.self_time_by_group(spans, 0, 200)
    assert got[trace.STYLE] == 50 and got[trace.OTHER] == 50 and got[trace.IDLE] == 100


def test_a_trace_without_our_navigation_says_so():
    with pytest.raises(ValueError, match="no navigationStart"):
        trace.summarize(synthetic(), f"{ORIGIN}/other/", visible_ms=5.0)
