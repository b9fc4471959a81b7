from __future__ import annotations

import asyncio
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError

from cases import gateway
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
            report = asyncio.run(self._main(options["retention_days"], options["wait"]))
        except gateway.TemporalUnavailable as err:
            raise CommandError(err.message) from err
        if report.added:
            self.stdout.write(f"temporal_setup: registered {', '.join(report.added)}")
        if report.present:
            self.stdout.write(f"temporal_setup: already registered: {', '.join(report.present)}")
        self.stdout.write(f"temporal_setup: retention {report.retention_days} days")

    async def _main(self, retention_days: int, wait: float) -> gateway.SetupReport:
        if wait:
            await gateway.wait_until_reachable(wait)
        return await gateway.setup_namespace(retention_days)
