"""Side effects of the Case workflow. Activities may use Django; workflows may not."""

from __future__ import annotations

import logging

from temporalio import activity

from .model import Delivered, NoticeBatch, SlaBreachNotice

logger = logging.getLogger("tracerail.notifications")


@activity.defn
async def notify_sla_breach(notice: SlaBreachNotice) -> str:
    """A log line for operators that a case's SLA passed. People are told by
    `deliver_notices` (the queue's supervisors, and the watchers); this activity stays
    because the history projection reads its scheduling as the breach's marker."""
    who = notice.assignee or f"queue {notice.queue}"
    message = (
        f"SLA breached on {notice.case_id} ({notice.title!r}), due "
        f"{notice.due_at.isoformat(timespec='minutes')}; notifying {who}"
    )
    logger.warning(message)
    return message


@activity.defn
def deliver_notices(batch: NoticeBatch) -> list[Delivered]:
    """Tell the people a case's batch of notices names, by email and in-app, each once; the
    answer (who was told how) goes on the case's timeline. Synchronous: it uses the ORM and
    SMTP, on the worker's activity threads."""
    # Imported here: the workflow module imports this one, and workflows import no Django.
    from cases.notify.deliver import deliver

    return deliver(batch, activity.heartbeat)
