"""Case pages pushed (issue 26): when a case changes, its open pages are sent the case's new
partial (`event: case-html`) instead of each asking for it (`?since=`, a Query and a render
per tab). The case is read once through lookup's door (`case_for(refresh=True)`: the Update's
result when an action of this process made the change, else one Query shared by the
process), under the one access rule, and rendered once per kind of page: pages whose HTML
would differ (role, queues and editable attributes: the audience's key; holding the case and
watching it: `page_kind`) never share it. What is the person's own is not in it: no CSRF
token (app.js gives the forms the page's own) and no personal macros (the page keeps its
macro form). The pages of the person who made the change get `event: case` with its version
instead: the tab that made it shows it already (dropped by app.js as not newer), another tab of
theirs re-asks. When the case cannot be pushed (no healthy feed to trust a shared state by, the
case ended or is degraded, the read or the render failed) its pages are told `event: case`
and re-ask it themselves, as before."""

from __future__ import annotations

import collections
import logging
from collections.abc import Hashable, Sequence
from typing import Any

from cases.config.access import Access
from cases.live import feed
from cases.live.sse import message
from cases.live.watch import Watch
from workers.model import CaseState

logger = logging.getLogger(__name__)


class Counts:
    """What case pushes cost this process: reads (one per change and audience, most shared:
    `lookup.STATES.queries` counts the Queries) and renders (one per kind of page)."""

    def __init__(self) -> None:
        self.reads = 0
        self.renders = 0
        # Changes whose pages were told to re-ask, by why: each is a Query and a render per
        # page again, so each is logged.
        self.fallbacks: collections.Counter[str] = collections.Counter()

    def fell_back(self, case_id: str, why: str, *, failed: bool = False) -> None:
        """Counted and logged; `failed` (inside an `except`): with the traceback, as an
        error of ours rather than a state of the world."""
        self.fallbacks[why] += 1
        say = logger.exception if failed else logger.info
        say("case push: %s not pushed (%s); its pages re-ask", case_id, why)


COUNTS = Counts()


def page_kind(access: Access, state: CaseState) -> Hashable:
    """What, beside the audience's key, makes one person's case page differ from another's:
    the actions the rules offer them (holding the case; watching it)."""
    return (state.assignee == access.username, access.username in state.watchers)


async def messages(case_id: str, version: str, watches: Sequence[Watch]) -> list[bytes]:
    """One message per watch (in order), for a change of `case_id` to `version`: the case's
    partial for its kind of page, or `event: case` where it cannot be pushed."""
    fallback = [message("case", version)] * len(watches)
    drawing = watches[0].drawing if watches else None
    # Shared states are judged by a healthy feed (lookup.SharedStates): without one, pages re-ask.
    if drawing is None:
        return fallback
    if feed.healthy_listener() is None:
        COUNTS.fell_back(case_id, f"no healthy feed: {feed.unhealthy()}")
        return fallback
    COUNTS.reads += 1
    try:
        seen = await drawing.read_case(watches[0].access, case_id)
    except Exception as err:  # a 404 (moved out of these queues) or Temporal away
        COUNTS.fell_back(case_id, f"read: {type(err).__name__}")
        return fallback
    if not seen.live or seen.state is None:
        # Ended or degraded: the page's own request shows it its way.
        COUNTS.fell_back(case_id, "ended or degraded")
        return fallback
    rendered: dict[Any, bytes] = {}
    out: list[bytes] = []
    own = message("case", str(seen.state.version))
    for watch in watches:
        if watch.access.username == seen.state.updated_by:
            # Their own change: the tab that made it shows it already (the action's answer,
            # so app.js drops this), and any other tab of theirs re-asks. Most changes are
            # seen by nobody else, so most renders were for pages that would drop them.
            out.append(own)
            continue
        kind = page_kind(watch.access, seen.state)
        if kind not in rendered:
            try:
                html = await drawing.case_html(watch.request, seen)
            except Exception:
                COUNTS.fell_back(case_id, "render", failed=True)
                html = None
            COUNTS.renders += 1
            rendered[kind] = message("case-html", html) if html is not None \
                else message("case", version)
        out.append(rendered[kind])
    return out
