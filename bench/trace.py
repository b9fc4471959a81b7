"""Where one page load's time went, read from a Chromium trace (bench/browser.py --trace).

Pure functions: a trace as Chromium writes it (a dict with "traceEvents", or the bare list)
in, numbers out, so the attribution can be tested on a hand-made trace without a browser.

A thread's time is given to the innermost event running at each instant (its *self* time: its
duration less its nested children's), so nothing is counted twice; the group of an event with
no group of its own (a RunTask, a V8 helper) is its nearest grouped ancestor's, so V8's work
under app.js's EvaluateScript counts as app.js and a Layout forced by a script as layout.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PARSE = "HTML parsing"
OURS = "script: ours (app.js, inline)"
LIBRARIES = "script: libraries (htmx)"
OTHER_SCRIPT = "script: other (Playwright's check, no URL)"
STYLE = "style & layout"
PAINT = "paint & composite"
OTHER = "other tasks"
IDLE = "idle"
SCRIPTS = (OURS, LIBRARIES, OTHER_SCRIPT)
GROUPS = (PARSE, OURS, LIBRARIES, OTHER_SCRIPT, STYLE, PAINT, OTHER, IDLE)

_BY_NAME = {
    **dict.fromkeys(("ParseHTML", "HTMLDocumentParser::PumpTokenizer"), PARSE),
    **dict.fromkeys((
        "UpdateLayoutTree", "RecalculateStyles", "Layout", "ParseAuthorStyleSheet",
        "ScheduleStyleRecalculation", "InvalidateLayout", "UpdateLayerTree", "HitTest",
        "IntersectionObserverController::computeIntersections",
    ), STYLE),
    **dict.fromkeys((
        "Paint", "PrePaint", "Layerize", "Commit", "CompositeLayers", "UpdateLayer",
        "PaintImage", "Decode Image", "ImageDecodeTask", "BeginMainThreadFrame",
        "ProxyMain::BeginMainFrame", "ProxyMain::BeginMainFrame::commit", "ScrollLayer",
        "LocalFrameView::RunPostLifecycleSteps", "PaintArtifactCompositor::Update",
    ), PAINT),
}
# Script events; the script's URL is in the event's args where Chromium knows it, or in an
# ancestor's (a v8.compile under an EvaluateScript).
_SCRIPT = frozenset((
    "EvaluateScript", "v8.compile", "v8.compileModule", "v8.evaluateModule", "v8.run",
    "v8.callFunction", "V8.Execute", "FunctionCall", "TimerFire", "EventDispatch",
    "FireAnimationFrame", "RunMicrotasks", "v8.produceCache", "v8.produceModuleCache",
    "CacheScript", "v8.parseOnBackground", "ScriptEvaluation", "v8.newInstance",
    "XHRReadyStateChange", "XHRLoad",
))


@dataclass
class Span:
    """One complete event on one thread, in µs on the trace's clock."""

    name: str
    start: float
    end: float
    url: str = ""


def events_of(trace: dict[str, Any] | list[dict[str, Any]]) -> list[dict[str, Any]]:
    return trace["traceEvents"] if isinstance(trace, dict) else trace


def thread_names(trace: dict[str, Any] | list[dict[str, Any]]) -> dict[tuple[int, int], str]:
    return {(e["pid"], e["tid"]): e.get("args", {}).get("name", "")
            for e in events_of(trace) if e.get("ph") == "M" and e.get("name") == "thread_name"}


def _url(event: dict[str, Any]) -> str:
    args = event.get("args") or {}
    for part in (args.get("data") or {}, args.get("beginData") or {}, args):
        if isinstance(part, dict):
            url = part.get("url") or part.get("fileName") or part.get("scriptName")
            if url:
                return str(url)
    stack = (args.get("data") or {}).get("stackTrace") or []
    return str(stack[0].get("url", "")) if stack and isinstance(stack[0], dict) else ""


def spans(trace: dict[str, Any] | list[dict[str, Any]], pid: int, tid: int) -> list[Span]:
    """The thread's complete events ('X', and 'B'/'E' pairs), by start, longest first."""
    found: list[Span] = []
    open_: list[tuple[dict[str, Any], float]] = []
    for e in sorted((e for e in events_of(trace) if e.get("pid") == pid and e.get("tid") == tid
                     and e.get("ph") in ("X", "B", "E")), key=lambda e: e["ts"]):
        if e["ph"] == "X":
            found.append(Span(e["name"], e["ts"], e["ts"] + e.get("dur", 0), _url(e)))
        elif e["ph"] == "B":
            open_.append((e, e["ts"]))
        elif open_:  # an 'E' closes the latest 'B'; its args may carry what 'B' lacked
            begin, start = open_.pop()
            found.append(Span(begin["name"], start, e["ts"], _url(begin) or _url(e)))
    return sorted(found, key=lambda s: (s.start, -s.end))


def self_time_by_group(items: list[Span], lo: float, hi: float, origin: str = "",
                       ) -> dict[str, float]:
    """Self time in µs inside [lo, hi], per group; IDLE is the window's time no event covers.
    `origin`: scripts from it, other than htmx's, are ours."""
    totals = dict.fromkeys(GROUPS, 0.0)

    def give(group: str, a: float, b: float) -> None:
        got = min(b, hi) - max(a, lo)
        if got > 0:
            totals[group] += got

    stack: list[tuple[float, str, str]] = []  # (end, group, script URL) of the open spans
    cursor = lo
    for span in items:
        while stack and stack[-1][0] <= span.start:
            end, group, _ = stack.pop()
            give(group, cursor, end)
            cursor = end
        end, parent_group, parent_url = span.end, OTHER, ""
        if stack:
            give(stack[-1][1], cursor, span.start)
            # A child that outlives its parent (clock rounding) ends with it.
            end = min(end, stack[-1][0])
            parent_group, parent_url = stack[-1][1], stack[-1][2]
        url = span.url or parent_url
        stack.append((end, classify(span.name, url, parent_group, origin), url))
        cursor = span.start
    while stack:
        end, group, _ = stack.pop()
        give(group, cursor, end)
        cursor = end
    totals[IDLE] = max(0.0, (hi - lo) - sum(totals.values()))
    return totals


def busy(items: list[Span], lo: float, hi: float) -> float:
    """µs of [lo, hi] in which the thread ran some event."""
    return (hi - lo) - self_time_by_group(items, lo, hi)[IDLE]


def classify(name: str, url: str, parent_group: str, origin: str) -> str:
    if name in _BY_NAME:
        return _BY_NAME[name]
    if name in _SCRIPT:
        if url:
            return script_group(url, origin)
        return parent_group if parent_group in SCRIPTS else OTHER_SCRIPT
    return parent_group


def script_group(url: str, origin: str) -> str:
    name = url.rsplit("/", 1)[-1].split("?")[0]
    if "htmx" in name:
        return LIBRARIES
    if origin and url.startswith(origin):
        return OURS
    return OTHER_SCRIPT


WHOSE = {
    PARSE: "the browser's, on our HTML",
    OURS: "ours",
    LIBRARIES: "ours to choose (htmx)",
    OTHER_SCRIPT: "the bench's rAF check, the browser's",
    STYLE: "the browser's, on our page",
    PAINT: "the browser's, on our page",
    OTHER: "the browser's (tasks with nothing of the above inside)",
    IDLE: "waiting: for the server, the network, other processes",
}


def _data(event: dict[str, Any]) -> dict[str, Any]:
    return (event.get("args") or {}).get("data") or {}


def summarize(trace: dict[str, Any] | list[dict[str, Any]], url: str, visible_ms: float,
              origin: str = "") -> dict[str, Any]:
    """Where [the navigation's start, the row visible] went, in ms. `visible_ms`: the row
    seen, in ms after the page's time origin (its performance.now()), which is the
    navigation's start, the renderer's `navigationStart` mark in the trace."""
    events = events_of(trace)
    starts = [e for e in events if e.get("name") == "navigationStart"
              and _data(e).get("documentLoaderURL") == url]
    if not starts:
        raise ValueError(f"no navigationStart for {url} in the trace")
    nav = starts[-1]
    lo = nav["ts"]
    hi = lo + visible_ms * 1000
    names = thread_names(trace)
    out: dict[str, Any] = {"window": visible_ms, **_document(events, url, lo, hi)}
    renderer = self_time_by_group(spans(trace, nav["pid"], nav["tid"]), lo, hi, origin)
    out["renderer"] = {group: us / 1000 for group, us in renderer.items()}

    def main_threads(name: str, skip: int | None = None) -> list[tuple[int, int]]:
        return [key for key, n in names.items() if n == name and key[0] != skip]

    out["browser main"] = sum(busy(spans(trace, *key), lo, hi)
                              for key in main_threads("CrBrowserMain")) / 1000
    out["gpu main"] = sum(busy(spans(trace, *key), lo, hi)
                          for key in main_threads("CrGpuMain")) / 1000
    others = main_threads("CrRendererMain", skip=nav["pid"])
    out["other renderers"] = sum(busy(spans(trace, *key), lo, hi) for key in others) / 1000
    out["other renderer count"] = len(others)
    return out


def _document(events: list[dict[str, Any]], url: str, lo: float, hi: float,
              ) -> dict[str, float | None]:
    """The document's request: request sent → response headers → last byte, in ms, from the
    trace's ResourceSendRequest, ResourceReceiveResponse and ResourceFinish events; and the
    server's part as the network stack timed it (ResourceReceiveResponse's timing,
    sendEnd → receiveHeadersEnd), which leaves out the browser's handling around it."""
    sends = [e for e in events if e.get("name") == "ResourceSendRequest"
             and _data(e).get("url") == url and lo - 1e6 <= e["ts"] <= hi]
    if not sends:
        return {"request → response": None, "download": None, "server (network timing)": None}
    request_id = _data(sends[-1]).get("requestId")

    def first(name: str) -> dict[str, Any] | None:
        return next((e for e in events if e.get("name") == name
                     and _data(e).get("requestId") == request_id), None)

    response, finish = first("ResourceReceiveResponse"), first("ResourceFinish")
    timing = _data(response).get("timing") or {} if response else {}
    server = (timing["receiveHeadersEnd"] - timing["sendEnd"]
              if "receiveHeadersEnd" in timing and "sendEnd" in timing else None)
    return {
        "request → response": (response["ts"] - sends[-1]["ts"]) / 1000 if response else None,
        "download": (finish["ts"] - response["ts"]) / 1000 if response and finish else None,
        "server (network timing)": server,
    }


def table(summary: dict[str, Any]) -> list[str]:
    """The summary as a markdown table."""

    def ms(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.0f}"

    window = summary["window"]
    rows = [
        ("**window**: navigation start → row visible", window, "all of it"),
        ("document: request sent → response headers", summary["request → response"],
         "ours: the server (and the browser's request handling around it)"),
        ("… of which the server, by the network stack's timing",
         summary["server (network timing)"], "ours"),
        ("document: response → last byte", summary["download"], "ours"),
    ]
    renderer = summary["renderer"]
    rows += [(f"our renderer's main thread: {group}", renderer[group], WHOSE[group])
             for group in GROUPS]
    rows += [
        ("browser process main thread (CrBrowserMain) busy", summary["browser main"],
         "the browser's own"),
        ("GPU process main thread busy", summary["gpu main"], "the browser's own"),
        (f"other renderers' main threads busy ({summary['other renderer count']})",
         summary["other renderers"], "the browser's own (e.g. the tab's top-chrome WebUI)"),
    ]
    lines = ["| where | ms | whose |", "|---|---|---|"]
    lines += [f"| {name} | {ms(value)} | {whose} |" for name, value, whose in rows]
    return lines
