"""The one access rule: who sees which cases and may do what.

Agents see the cases of their queues; supervisors and admins see everything. The same rule
becomes a `CaseQueue IN (…)` clause on every list and count, a 404 on pages, and an Authority
sent with every command so the workflow enforces it against the live case. Read the other way
round (who can see a queue; the queue's supervisors) it decides who is told of a case, who may
be @mentioned, and whom a breach may give a case to.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from django.contrib.auth import get_user_model
from django.db.models import Q

from cases.config.custom_fields import Attribute
from workers import rules
from workers.model import Authority, CaseState, Command, SlaPolicy

AGENT, SUPERVISOR, ADMIN, NONE = "agent", "supervisor", "admin", "none"
# The groups that give those roles (made by cases/migrations/0001_roles.py); a superuser is
# an admin whatever their groups.
AGENT_GROUP, SUPERVISOR_GROUP, ADMIN_GROUP = "Agent", "Supervisor", "Admin"


def role_of(is_superuser: bool, groups: Iterable[str]) -> str:
    names = set(groups)
    if is_superuser or ADMIN_GROUP in names:
        return ADMIN
    if SUPERVISOR_GROUP in names:
        return SUPERVISOR
    return AGENT if AGENT_GROUP in names else NONE


def who_can_see(queue: str) -> list[str]:
    """The active users who can see `queue`'s cases, by username: the rule below (Access)
    as one query, for the mention list and for telling a writer whom a mention did not
    reach."""
    everywhere = Q(is_superuser=True) | Q(groups__name__in=(ADMIN_GROUP, SUPERVISOR_GROUP))
    agents = Q(groups__name=AGENT_GROUP, case_queues__slug=queue)
    return sorted(set(get_user_model().objects.filter(is_active=True)
                      .filter(everywhere | agents).values_list("username", flat=True)))


def supervisors_of(*queues: str) -> dict[str, list[str]]:
    """Each queue's supervisors, by username: the active members of the Supervisor group,
    admins among them (an admin who is not in it supervises nothing). They are told of the
    queue's breaches and cases at risk, and the dashboard names them per queue: one answer
    for both. Supervisors see every queue, so every queue has them all."""
    names = sorted(set(get_user_model().objects.filter(
        is_active=True, groups__name=SUPERVISOR_GROUP).values_list("username", flat=True)))
    return {queue: list(names) for queue in queues}


def sees_queue(user: Any, queue: str, agents: Iterable[int] | None = None) -> bool:
    """Can this user see `queue`'s cases now? `agents`: the queue's agents' ids as a form
    about to save them has them (else the database's)."""
    if user is None or not user.is_active:
        return False
    role = role_of(user.is_superuser, user.groups.values_list("name", flat=True))
    if role in (SUPERVISOR, ADMIN):
        return True
    if role != AGENT:
        return False
    if agents is not None:
        return user.pk in set(agents)
    return bool(user.case_queues.filter(slug=queue).exists())


def refusal_to_give(username: str, queue: str, queue_name: str = "",
                    agents: Iterable[int] | None = None) -> str:
    """Why a case in `queue` may not be given to `username` (an escalation's person), or ""
    when it may: one wording for the admin form that saves the policy and the breach that
    applies it."""
    from cases.models import Queue

    user = get_user_model().objects.filter(username=username).first()
    if user is None or not user.is_active:
        return f"{username} is not an active user"
    if sees_queue(user, queue, agents):
        return ""
    name = queue_name or Queue.objects.filter(slug=queue).values_list(
        "name", flat=True).first() or queue
    return f"{username} cannot see the cases of {name}"


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

    @cached_property
    def _seeing(self) -> Authority:
        # can_see only reads it, and a push stream asks it for every change: built once.
        # Commands get a fresh Authority each (the property above).
        return self.authority

    def can_see(self, queue: str) -> bool:
        return rules.can_see(queue, self._seeing)

    def offers(self, state: CaseState, probe: Command, now: datetime, sla: SlaPolicy) -> bool:
        """Does this case, as it is now, take `probe`'s kind of command from this user? The
        workflow's own rules decide (rules.offers), so the page offers what it would accept."""
        probe.authority = self.authority
        return self.can_see(state.queue) and rules.offers(state, probe, now, sla)

    def editable(self, attributes: list[Attribute]) -> list[Attribute]:
        """The registered attributes this user may set, on a new case as on an open one."""
        return [a for a in attributes if self.attributes is None or a.name in self.attributes]
