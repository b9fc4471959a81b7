"""Who can see a queue's cases, as usernames: the one access rule (cases/config/access.py)
read the other way round, for the mention list and for telling a writer whom a mention did
not reach."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import Q


def who_can_see(queue: str) -> list[str]:
    everywhere = Q(is_superuser=True) | Q(groups__name__in=("Admin", "Supervisor"))
    agents = Q(groups__name="Agent", case_queues__slug=queue)
    return sorted(set(User.objects.filter(is_active=True).filter(everywhere | agents)
                      .values_list("username", flat=True)))
