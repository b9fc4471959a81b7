"""Side effects of the Case workflow. Activities may use Django; workflows may not."""

from __future__ import annotations

import logging

from temporalio import activity
from temporalio.exceptions import ApplicationError

from . import rules
from .model import (
    Delivered,
    NoticeBatch,
    QueuePolicy,
    RouteAsk,
    RoutePick,
    RouterAsk,
    RouterState,
    SlaBreachNotice,
)
from .router import QueueRouter, router_id

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


@activity.defn
async def queue_policy(queue: str) -> QueuePolicy:
    """What a case in `queue` gets (issue 22), for a case started without it (any Temporal
    client) or moved to another queue: the one answer the web and the intake API give."""
    from asgiref.sync import sync_to_async

    from cases.config.queue_policy import queue_policy as build

    policy = await sync_to_async(build)(queue)
    problem = rules.policy_problem(policy)
    if problem is not None:
        # A configuration the case cannot count with: the case keeps the rules it has.
        raise ApplicationError(f"{queue}: {problem[1]}", non_retryable=True)
    return policy


@activity.defn
async def route_case(ask: RouteAsk) -> RoutePick:
    """Ask the queue's router for an agent (issue 17). The queue's mode and who of its agents
    is available are configuration, read from Django here and passed with the ask; the
    rotation and the load are the router's (a workflow), never a table."""
    from asgiref.sync import sync_to_async
    from temporalio.client import WithStartWorkflowOperation
    from temporalio.common import WorkflowIDConflictPolicy

    from cases.config.presence import routing_for

    mode, candidates = await sync_to_async(routing_for)(ask.queue)
    if mode == "manual" or not candidates:
        return RoutePick("", "manual routing" if mode == "manual" else "nobody is available")
    info = activity.info()
    start = WithStartWorkflowOperation(
        QueueRouter.run, RouterState(), id=router_id(ask.queue), task_queue=info.task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)
    # The Update's id is this activity's own, the same on every retry: a worker that dies
    # after the router picked, before this activity completed, gets the first pick back
    # instead of turning the rotation a second time.
    return await activity.client().execute_update_with_start_workflow(
        QueueRouter.pick, RouterAsk(ask.case_id, mode, candidates, ask.why),
        id=f"route:{info.workflow_id}:{info.workflow_run_id}:{info.activity_id}",
        start_workflow_operation=start)
