from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError

from cases.mailin.smtp_door import IntakeHandler, serve
from cases.management.temporal_command import TemporalCommand

# A hand-over under way when SIGTERM comes is let finish for this long (its sender is waiting
# for the 250); after that the process leaves and the sender, with no answer, tries again.
DRAIN_SECONDS = 20.0


class Command(TemporalCommand):
    help = ("Accept mail by SMTP (the door a mail server hands mail to) and give each message "
            "to the mail pipeline, until SIGINT/SIGTERM.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--host", default=settings.MAIL_INTAKE_HOST)
        parser.add_argument("--port", type=int, default=settings.MAIL_INTAKE_PORT)

    def handle(self, *args: Any, **options: Any) -> None:
        if asyncio.run(self._main(options["host"], options["port"])):
            raise CommandError("run_mail_intake: exited with an error (above)", returncode=1)

    async def _main(self, host: str, port: int) -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        handler = IntakeHandler()
        try:
            server = await serve(host, port, handler)
        except OSError as err:
            self.stderr.write(f"run_mail_intake: cannot listen on {host}:{port}: {err}")
            return 1
        self.say(f"run_mail_intake: SMTP on {host}:{port} (largest message "
                 f"{settings.MAIL_MAX_BYTES} bytes); Ctrl-C stops")
        await stop.wait()
        server.close()  # no new connections; sessions in DATA finish below
        left = await handler.drain(DRAIN_SECONDS)
        if left:
            self.stderr.write(f"run_mail_intake: {left} hand-over(s) still running at exit; "
                              "their senders got no answer and will try again")
        self.stdout.write("run_mail_intake: stopped cleanly")
        return 0
