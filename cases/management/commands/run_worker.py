from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError

from cases import temporal
from cases.management.temporal_command import TemporalCommand
from workers.worker import build_worker, run_worker


class Command(TemporalCommand):
    help = "Run the Temporal worker that hosts the Case workflow until SIGINT/SIGTERM."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--task-queue", default=settings.TEMPORAL_TASK_QUEUE)
        parser.add_argument(
            "--wait",
            type=float,
            default=0,
            help="Seconds to wait for Temporal to come up, and to keep restarting a worker "
            "that fails to start, before giving up.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if asyncio.run(self._main(options["task_queue"], options["wait"])):
            raise CommandError("run_worker: exited with an error (above)", returncode=1)

    async def _main(self, task_queue: str, wait: float) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        started = loop.time()
        try:
            if wait:
                await temporal.wait_until_reachable(
                    wait, on_wait=lambda reason: self.say(f"run_worker: waiting: {reason}")
                )
            client = await temporal.get_client()
        except Exception as err:
            self.stderr.write(f"run_worker: cannot reach Temporal: {err}")
            return 1
        pause = 0.5
        while True:
            worker = build_worker(
                client,
                task_queue,
                max_concurrent_workflow_tasks=settings.WORKER_MAX_CONCURRENT_WORKFLOW_TASKS,
                max_concurrent_activities=settings.WORKER_MAX_CONCURRENT_ACTIVITIES,
            )
            self.say(
                f"run_worker: polling {task_queue!r} on {settings.TEMPORAL_ADDRESS} "
                f"namespace {client.namespace!r}; Ctrl-C stops"
            )
            try:
                await run_worker(worker, stop)
                break
            except Exception as err:
                # The worker's first call (a namespace check) can time out on a server that
                # has just booted on a busy machine; within the start-up window that is a
                # reason to try again, not to take every other process down with it.
                if stop.is_set() or loop.time() - started + pause > wait:
                    self.stderr.write(f"run_worker: worker failed: {err}")
                    return 1
                self.say(f"run_worker: worker failed to start ({err}); retrying")
            await asyncio.sleep(pause)
            pause = min(pause * 2, 4.0)
        self.stdout.write("run_worker: stopped cleanly")
        return 0
