"""Server-Sent-Event framing: how the push layer's messages are written on a stream."""

from __future__ import annotations

import re

from cases.live import log

KEEPALIVE = b": keepalive\n\n"
# Sent at once, so the browser sees the stream open (and proxies flush headers).
OPENING = b": connected\n\n"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # the three line ends SSE knows


def message(event: str, data: str) -> bytes:
    """One SSE message; every line of `data` becomes its own `data:` line (the browser joins
    them back with newlines)."""
    lines = "".join(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    return f"event: {event}\n{lines}\n".encode()


# The page re-reads everything it shows (its list and its case): the one answer to "this
# stream may have missed something" (a resync, a page too far behind, changed access).
REREAD = message("list", "") + message("case", "")


def mark(position: log.Position | None) -> bytes:
    """An id-only frame: the browser's EventSource takes it as its last event id (sent back
    as Last-Event-ID when it reconnects) without dispatching anything to the page."""
    return f"id: {log.position_id(position)}\n\n".encode() if position is not None else b""
