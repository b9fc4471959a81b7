"""What a person may see of their notices, and the unread counts of the nav bar's badge.

Whoever adds or reads notices names whose changed (`told`): a new token under
`inbox:v:<user id>` in the shared store, which cases/live/wakeups.py watches for every open
stream's user and answers with one count query for just those whose token moved.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from cases.models import Notification
from cases.store import versions

logger = logging.getLogger(__name__)

# Who reads: a user id and the queues they may see (None: every queue), as Access names them.
Reader = tuple[int, tuple[str, ...] | None]
INBOX = "inbox"  # the fact's name in the store: inbox:v:<user id>


def told(*user_ids: int) -> None:
    """These users' notices changed (added, read): their open streams' badges are read again.
    Call it once the change is committed."""
    versions.bump(INBOX, *user_ids)


def reader(user_id: int, visible_queues: Sequence[str] | None) -> Reader:
    return user_id, None if visible_queues is None else tuple(sorted(visible_queues))


def seen_by(who: Reader) -> Q:
    """What a person may see of their notices: the one rule every list, count and mark-read
    asks. A notice keeps the queue its case was in when told, and shows only while its reader
    can see that queue (the access rule, applied to the queue told). A notice told before
    notices kept their queue (queue "", migration 0010) names no queue anyone was checked
    against, so only those who see every queue see it."""
    user_id, queues = who
    mine = Q(user_id=user_id)
    return mine if queues is None else mine & Q(queue__in=queues)


def notices_of(who: Reader) -> QuerySet[Notification]:
    return Notification.objects.filter(seen_by(who))


def mark_read(who: Reader, *, pk: int | None = None, case_id: str | None = None) -> int:
    """Mark read what `who` may see of their unread notices: one (pk), one case's (opening
    the case page), or all. The one home of "read": the inbox's buttons and the case page
    both come here, and the badges of the reader's open pages follow (told)."""
    unread = notices_of(who).filter(read_at__isnull=True)
    if pk is not None:
        unread = unread.filter(pk=pk)
    if case_id is not None:
        unread = unread.filter(case_id=case_id)
    done = unread.update(read_at=timezone.now())
    if done:
        transaction.on_commit(lambda: told(who[0]))
    return done


def unread_counts(readers: Sequence[Reader]) -> dict[Reader, int]:
    """Each reader's unread count by `seen_by`, in one query for all of them."""
    readers = list(dict.fromkeys(readers))
    asked = {f"r{i}": Count("id", filter=seen_by(who))
             for i, who in enumerate(readers) if who[1] != ()}
    found: dict[str, Any] = {}
    if asked:
        found = Notification.objects.filter(
            read_at__isnull=True, user_id__in={u for u, _ in readers}).aggregate(**asked)
    return {who: int(found.get(f"r{i}") or 0) for i, who in enumerate(readers)}
