"""Builds and runs the worker that hosts the Case workflow."""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import ThreadPoolExecutor

from temporalio.client import Client
from temporalio.worker import Worker

from .activities import (
    check_escalation,
    deliver_notices,
    notify_sla_breach,
    queue_policy,
    route_case,
    tell_router,
)
from .router import QueueRouter
from .workflows import CaseWorkflow

logger = logging.getLogger("tracerail.worker")


def build_worker(
    client: Client,
    task_queue: str,
    *,
    max_concurrent_workflow_tasks: int | None = None,
    max_concurrent_activities: int | None = None,
) -> Worker:
    return Worker(
        client,
        task_queue=task_queue,
        workflows=[CaseWorkflow, QueueRouter],
        # deliver_notices and check_escalation are synchronous (ORM, SMTP): on these threads.
        activities=[notify_sla_breach, deliver_notices, route_case, check_escalation,
                    tell_router, queue_policy],
        activity_executor=ThreadPoolExecutor(max_workers=max_concurrent_activities or 20,
                                             thread_name_prefix="tracerail-notify"),
        max_concurrent_workflow_tasks=max_concurrent_workflow_tasks,
        max_concurrent_activities=max_concurrent_activities,
    )


async def run_worker(worker: Worker, stop: asyncio.Event) -> None:
    """Run until `stop` is set, then drain in-flight tasks and shut down cleanly."""
    async with worker:
        logger.info("worker polling task queue %s", worker.task_queue)
        await stop.wait()
        logger.info("worker shutting down")
