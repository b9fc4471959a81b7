"""The one access rule: who sees which cases and may do what.

Agents see the cases of their queues; supervisors and admins see everything. The same rule
becomes a `CaseQueue IN (…)` clause on every list and count, a 404 on pages, and an Authority
sent with every command so the workflow enforces it against the live case.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

from cases.config.custom_fields import Attribute
from workers import rules
from workers.model import Authority, CaseState, Command, SlaPolicy

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
