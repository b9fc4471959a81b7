"""Side effects of the Case workflow. Activities may use Django; workflows may not."""

from __future__ import annotations

import logging

from temporalio import activity

from .model import Delivered, NoticeBatch, SlaBreachNotice

logger = logging.getLogger("tracerail.notifications")


@activity.defn
async def notify_sla_breach(notice: SlaBreachNotice) -> str:
    """Tell the people who hold the case that its SLA passed.

    Delivery is a log line for now: the channel (email, chat) is a deployment choice, and
    the breach itself is already on the case's timeline and in its search attributes.
    """
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
