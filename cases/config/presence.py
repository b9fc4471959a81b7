"""Who is available for cases and who is away (issue 17): each person says so on their
availability page; supervisors see it per queue on the dashboard. No row: available."""

from __future__ import annotations

from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from cases.models import AgentPresence, Queue


@dataclass
class QueuePresence:
    available: list[str] = field(default_factory=list)
    away: list[str] = field(default_factory=list)


def is_available(user: object) -> bool:
    row = AgentPresence.objects.filter(user=user).values_list("available", flat=True).first()
    return True if row is None else bool(row)


def set_available(user: object, available: bool) -> None:
    AgentPresence.objects.update_or_create(user=user, defaults={"available": available})


def by_queue(slugs: list[str]) -> dict[str, QueuePresence]:
    """Per queue, its active agents who are available and who are away, by username."""
    away = set(AgentPresence.objects.filter(available=False).values_list("user_id", flat=True))
    out = {slug: QueuePresence() for slug in slugs}
    users = get_user_model().objects.filter(is_active=True)
    for slug, user_id, username in (Queue.objects.filter(slug__in=slugs, agents__in=users)
                                    .values_list("slug", "agents__id", "agents__username")
                                    .order_by("slug", "agents__username")):
        side = out[slug].away if user_id in away else out[slug].available
        side.append(username)
    return out


def routing_for(queue: str) -> tuple[str, list[str]]:
    """The queue's routing mode and its agents who are available now, by username."""
    mode = Queue.objects.filter(slug=queue).values_list("routing", flat=True).first()
    if mode is None:
        return "manual", []
    return mode, by_queue([queue])[queue].available


async def by_queue_async(slugs: list[str]) -> dict[str, QueuePresence]:
    return await sync_to_async(by_queue)(slugs)
