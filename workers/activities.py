"""Side effects of the Case workflow. Activities may use Django; workflows may not."""

from __future__ import annotations

import contextvars
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from temporalio import activity
from temporalio.client import WithStartWorkflowOperation
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError

from . import rules
from .model import (
    Delivered,
    EscalationAsk,
    NoticeBatch,
    QueuePolicy,
    RouteAsk,
    RouteHold,
    RoutePick,
    RouterAsk,
    RouterHold,
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
    answer (who was told how, whose mail was refused) goes on the case's timeline.
    Synchronous: it uses the ORM and SMTP, on the worker's activity threads."""
    # Imported here: the workflow module imports this one, and workflows import no Django.
    from cases.config.dbconn import outside_request
    from cases.notify.deliver import deliver, send_bound

    return outside_request(deliver)(batch, _Pacer(send_bound()))


@activity.defn
def check_escalation(ask: EscalationAsk) -> str:
    """Why the breach may not give the case to its policy's person (they cannot see the
    queue it will be in, or are no longer active), or "" when it may: the one access rule,
    read at the breach. Synchronous: the ORM, on the worker's activity threads."""
    from cases.config.access import refusal_to_give
    from cases.config.dbconn import outside_request

    refused = outside_request(refusal_to_give)(ask.assignee, ask.queue)
    if refused:
        logger.warning("escalation of %s: not to %s: %s", ask.case_id, ask.assignee, refused)
    return refused


# Seconds between heartbeats while an email is being sent: well inside the heartbeat timeout.
BEAT_SECONDS = 5.0


class _Pacer:
    """Around each send: heartbeats all along it (one SMTP step alone may wait EMAIL_TIMEOUT),
    so a live send is never taken for a dead worker and retried beside itself; and no send
    starts that could outlast the attempt's start-to-close timeout, for the same reason. A
    send hung past its bound stops beating, and the attempt is then given up."""

    def __init__(self, bound: float) -> None:
        self.bound = bound
        limit = activity.info().start_to_close_timeout
        self.ends = time.monotonic() + (limit.total_seconds() if limit else float("inf"))

    @contextmanager
    def __call__(self, recipient: str) -> Iterator[None]:
        started = time.monotonic()
        if started + self.bound > self.ends:
            raise ApplicationError("no time left in this attempt for another email; the "
                                   "retry sends the rest", type="MailDeferred")
        activity.heartbeat(recipient)
        context = contextvars.copy_context()  # the activity's, for its heartbeat
        done = threading.Event()

        def beat() -> None:
            while not done.wait(BEAT_SECONDS) and time.monotonic() - started < self.bound:
                context.run(activity.heartbeat, recipient)

        beating = threading.Thread(target=beat, name="mail-heartbeat", daemon=True)
        beating.start()
        try:
            yield
        finally:
            done.set()
            beating.join()


@activity.defn
async def queue_policy(queue: str) -> QueuePolicy:
    """What a case in `queue` gets (issue 22), for a case started without it (any Temporal
    client) or moved to another queue: the one answer the web and the intake API give."""
    from asgiref.sync import sync_to_async

    from cases.config.dbconn import outside_request
    from cases.config.queue_policy import queue_policy as build

    policy = await sync_to_async(outside_request(build))(queue)
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

    from cases.config.dbconn import outside_request
    from cases.config.presence import routing_for

    mode, candidates = await sync_to_async(outside_request(routing_for))(ask.queue)
    if mode == "manual" or not candidates:
        return RoutePick("", "manual routing" if mode == "manual" else "nobody is available")
    info = activity.info()
    # The Update's id is this activity's own, the same on every retry: a worker that dies
    # after the router picked, before this activity completed, gets the first pick back
    # instead of turning the rotation a second time.
    return await activity.client().execute_update_with_start_workflow(
        QueueRouter.pick, RouterAsk(ask.case_id, mode, candidates, ask.why),
        id=f"route:{info.workflow_id}:{info.workflow_run_id}:{info.activity_id}",
        start_workflow_operation=_router_start(ask.queue))


def _router_start(queue: str) -> WithStartWorkflowOperation[QueueRouter, None]:
    """The queue's router, started by whichever ask or note reaches it first."""
    return WithStartWorkflowOperation(
        QueueRouter.run, RouterState(), id=router_id(queue), task_queue=activity.info().task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING)


@activity.defn
async def tell_router(hold: RouteHold) -> None:
    """Tell the queue's router who holds the case now (issue 22), starting the router if the
    queue has none yet, so least-loaded counts the open cases each agent holds."""
    # The Update's id is derived from the case, its version and what is said: a retry, or
    # the same note sent again, is the same Update, answered once.
    await activity.client().execute_update_with_start_workflow(
        QueueRouter.hold, RouterHold(hold.case_id, hold.agent),
        id=f"hold:{hold.case_id}:{hold.version}:{hold.agent}",
        start_workflow_operation=_router_start(hold.queue))
