"""The one access rule: who sees which cases and may do what.

Agents see the cases of their queues; supervisors and admins see everything. The same rule
becomes a `CaseQueue IN (…)` clause on every list and count, a 404 on pages, and an Authority
sent with every command so the workflow enforces it against the live case.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import HttpRequest

from workers import rules
from workers.model import Authority, CaseState, Command

from .models import CaseAttribute, Queue

AGENT, SUPERVISOR, ADMIN, NONE = "agent", "supervisor", "admin", "none"


@dataclass(frozen=True)
class Access:
    username: str
    role: str
    queues: tuple[str, ...] | None  # None: every queue
    # Custom attributes this user may set; None: all of them.
    attributes: tuple[str, ...] | None = None

    @property
    def is_supervisor(self) -> bool:
        return self.role in (SUPERVISOR, ADMIN)

    @property
    def visible_queues(self) -> list[str] | None:
        return None if self.queues is None else list(self.queues)

    @property
    def authority(self) -> Authority:
        # Users without a role act as agents of no queue: they see and do nothing.
        role = self.role if self.role in (SUPERVISOR, ADMIN) else AGENT
        return Authority(role=role, queues=self.visible_queues,
                         attributes=None if self.attributes is None else list(self.attributes))

    def can_see(self, queue: str) -> bool:
        return rules.can_see(queue, self.authority)

    def may(self, state: CaseState, kind: type[Command], assignee: object = ...) -> bool:
        if not self.can_see(state.queue):
            return False
        return rules.refusal_for(state, kind, self.username, self.authority, assignee) is None


async def access_for(request: HttpRequest) -> Access:
    """The requesting user's access, computed once per request."""
    cached: Access | None = getattr(request, "_tracerail_access", None)
    if cached is not None:
        return cached
    user: AbstractBaseUser | AnonymousUser = await request.auser()
    access = await access_for_user(user)
    request._tracerail_access = access  # type: ignore[attr-defined]
    return access


async def access_for_user(user: AbstractBaseUser | AnonymousUser) -> Access:
    if not user.is_authenticated:
        return Access("", NONE, ())
    username = user.get_username()
    groups = {g async for g in user.groups.values_list("name", flat=True)}  # type: ignore[attr-defined]
    if user.is_superuser or "Admin" in groups:  # type: ignore[attr-defined]
        return Access(username, ADMIN, None)
    if "Supervisor" in groups:
        return Access(username, SUPERVISOR, None)
    mine = Queue.objects.filter(agents=user).values_list("slug", flat=True)
    queues = tuple([q async for q in mine])
    editable = CaseAttribute.objects.filter(state=CaseAttribute.REGISTERED, agent_editable=True)
    attributes = tuple([n async for n in editable.values_list("name", flat=True)])
    return Access(username, AGENT if "Agent" in groups else NONE, queues, attributes)


async def queue_choices(access: Access) -> list[tuple[str, str]]:
    """Queues this user may file a case in or filter by."""
    qs = Queue.objects.all()
    if access.queues is not None:
        qs = qs.filter(slug__in=access.queues)
    return [(q.slug, q.name) async for q in qs]
