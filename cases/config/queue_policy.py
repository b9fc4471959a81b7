"""What a case in a queue gets (issue 22): its SLA (the settings' seconds and at-risk shares,
the queue's business hours and escalation), whether the queue's router finds it an agent, and
its case types, each as its newest version (issue 25).

The one answer, as plain data (workers.model.QueuePolicy): the web and the intake API pass it
when they open a case, and the workflow's `queue_policy` activity gives it to a case started
without it (any Temporal client) or moved to another queue, so every case lives by its
queue's rules whoever started it.
"""

from __future__ import annotations

from datetime import date

from django.conf import settings

from cases.config import dbconn
from cases.config.calendars import escalation_for, working_time_for
from cases.config.case_types import current_types
from cases.models import Queue
from workers.business_hours import WorkingTime
from workers.model import Escalation, QueuePolicy, SlaPolicy


def sla_policy(working: WorkingTime | None = None,
               escalation: Escalation | None = None) -> SlaPolicy:
    """The SLA of the settings, with a queue's hours and escalation where it has them."""
    return SlaPolicy(seconds_by_priority=list(settings.CASE_SLA_SECONDS), working=working,
                     at_risk_by_priority=list(settings.CASE_SLA_AT_RISK), escalation=escalation)


def queue_policy(queue: str, today: date | None = None) -> QueuePolicy:
    """What a case opened (or arriving) now in `queue` gets. Synchronous: the ORM."""
    routes = Queue.objects.filter(slug=queue).exclude(routing="manual").exists()
    return QueuePolicy(queue=queue,
                       sla=sla_policy(working_time_for(queue, today), escalation_for(queue)),
                       route=routes, case_types=current_types(queue))


async def policy_of(queue: str) -> QueuePolicy:
    """`queue_policy` from a request, giving the connection back in the same hop."""
    return await dbconn.read(lambda: queue_policy(queue))
