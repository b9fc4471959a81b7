from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError

from cases import temporal
from cases.management.temporal_command import TemporalCommand


class Command(TemporalCommand):
    help = "Register the core case search attributes and set namespace retention (idempotent)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--retention-days", type=int, default=settings.TEMPORAL_RETENTION_DAYS)
        parser.add_argument(
            "--wait", type=float, default=0, help="Seconds to wait for Temporal to come up."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            with self.patient_timeouts():
                report = asyncio.run(self._main(options["retention_days"], options["wait"]))
        except temporal.GatewayError as err:  # unreachable, or a refusal (TemporalRefused)
            raise CommandError(f"temporal_setup: {err.message}") from err
        if report.added:
            self.stdout.write(f"temporal_setup: registered {', '.join(report.added)}")
        if report.present:
            self.stdout.write(f"temporal_setup: already registered: {', '.join(report.present)}")
        self.stdout.write(f"temporal_setup: retention {report.retention_days} days")

    async def _main(self, retention_days: int, wait: float) -> temporal.SetupReport:
        if wait:
            await temporal.wait_until_reachable(
                wait, on_wait=lambda reason: self.say(f"temporal_setup: waiting: {reason}")
            )
        # A fresh dev server can time out its first registrations; every step re-reads what
        # is there first, so repeating the whole setup is safe.
        return await temporal.retry_transient(
            partial(temporal.setup_namespace, retention_days),
            budget_seconds=wait,
            on_retry=lambda err: self.say(f"temporal_setup: retrying after: {err}"),
        )
