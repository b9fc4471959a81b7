"""Side effects of the Case workflow. Activities may use Django; workflows may not."""

from __future__ import annotations

import logging

from temporalio import activity

from .model import SlaBreachNotice

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
