"""Who can see a queue's cases, as usernames, for the mention list and for telling a writer
whom a mention did not reach: the one access rule read the other way round, whose home is
cases/config/access.py."""

from __future__ import annotations

from cases.config.access import supervisors_of, who_can_see

__all__ = ["supervisors_of", "who_can_see"]
