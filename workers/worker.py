"""Builds and runs the worker that hosts the Case workflow."""

from __future__ import annotations

import asyncio
import logging

from temporalio.client import Client
from temporalio.worker import Worker

from .activities import notify_sla_breach
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
        workflows=[CaseWorkflow],
        # Activities are async; a sync one (ORM work) would also need an activity_executor.
        activities=[notify_sla_breach],
        max_concurrent_workflow_tasks=max_concurrent_workflow_tasks,
        max_concurrent_activities=max_concurrent_activities,
    )


async def run_worker(worker: Worker, stop: asyncio.Event) -> None:
    """Run until `stop` is set, then drain in-flight tasks and shut down cleanly."""
    async with worker:
        logger.info("worker polling task queue %s", worker.task_queue)
        await stop.wait()
        logger.info("worker shutting down")
