"""A case's facts from its Projection: the one derivation the incremental export and the
rebuild share (so they give the same facts), and the one definition of every figure the
reports count (first response, resolution, SLA outcome, reopens)."""

from __future__ import annotations

from cases.analytics.schema import CaseFacts, EventFact
from workers.projection import Projection


def facts_of(projection: Projection, *, keywords: set[str], execution: str = "running"
             ) -> tuple[CaseFacts, list[EventFact]]:
    """The case's row and its timeline's rows. `keywords`: the registered Keyword attribute
    names (others are not grouped by). The final state goes into `state_json` by
    temporal.state_to_json. `execution`: "running", "completed", or Projection.ended.
    Raises ValueError for a projection with no case state (not a case's history)."""
    raise NotImplementedError  # lane A (issue 24)
