"""Version tokens in the shared store: `<fact>:v:<who>` holds a random token that a producer
replaces whenever that fact of `who` changes (a user's access, their notices, the shared
configuration). Readers compare tokens: a cached entry made under an old one is stale, and a
watcher wakes whoever watches a key whose token moved (cases/live/wakeups.py).

A token, not a counter: `set` is atomic on every backend, and a token that went missing (a
store restart, an eviction) is replaced by a new one, never by a value some cached entry was
made under before.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable

from cases import store

logger = logging.getLogger(__name__)

# Longer than any cached entry made under it lives; a lost token only costs a re-read.
_TTL = 30 * 24 * 3600


def key(fact: str, who: int | str) -> str:
    return f"{fact}:v:{who}"


def bump(fact: str, *who: int | str) -> None:
    """A new token for each of `who`. Never raises: a store that is away loses the bump, and
    whoever depends on it has a slower check of their own (a stream's periodic re-check)."""
    if not who:
        return
    try:
        store.shared().set_many({key(fact, w): secrets.token_hex(8) for w in who},
                                timeout=_TTL)
    except Exception as err:
        logger.warning("%s: could not bump %s: %s", fact, who, err)


def current(keys: Iterable[str]) -> dict[str, str]:
    """The token of each key, made now if the store has none (so an entry cached under a
    token that was lost is never read again). One round trip when all are there."""
    shared = store.shared()
    keys = list(dict.fromkeys(keys))
    found = shared.get_many(keys)
    missing = [k for k in keys if not isinstance(found.get(k), str)]
    for k in missing:
        shared.add(k, secrets.token_hex(8), timeout=_TTL)
    if missing:
        found.update(shared.get_many(missing))
    return {k: str(found.get(k) or "") for k in keys}
