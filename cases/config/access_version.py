"""Access versions: a token per user in the shared store that changes whenever anything that
decides what the user may see changes (queues, groups, role, activation, password, logout),
and one for the configuration everyone shares (queues, groups, the attribute registry).

Two things hang on them, so one bump serves both:
- the request path caches a user and their configuration under the versions
  (cases/config/reading.py), so a request reads the store, not five tables, and a change is
  never served stale;
- every open push stream watches its user's version (cases/live/wakeups.py) and re-checks its
  access as soon as it moves (cases/live/guards.py): a stream is a request that never ends.

The tokens themselves are cases/store/versions.py's.
"""

from __future__ import annotations

from cases.store import versions

ACCESS = "access"  # the fact's name in the store: access:v:<user id>
CONFIG = "config"  # the version of the shared configuration (not a user's)
# Moves with every bump: anything read across people (who can see a queue: the mention
# list, rendered with every case page) is cached under it (cases/config/reading.py).
PEOPLE = "people"


def bump(*who: int | str) -> None:
    """A new version for each user id (or CONFIG): their cached configuration is dropped and
    their open streams re-check. Never raises: a store that is away loses the bump, and the
    streams' periodic re-check (EVENTS_RECHECK_SECONDS) still catches the change."""
    if who:
        versions.bump(ACCESS, *who, PEOPLE)


def current(*who: int | str) -> dict[int | str, str]:
    """The version of each, made now if the store has none."""
    found = versions.current(versions.key(ACCESS, w) for w in who)
    return {w: found[versions.key(ACCESS, w)] for w in who}
