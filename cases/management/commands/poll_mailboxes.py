from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings

from cases.mailin.imap_door import PollReport, poll_all
from cases.management.temporal_command import TemporalCommand


class Command(TemporalCommand):
    help = ("Poll every enabled queue mailbox (Admin → Queue mailboxes) over IMAP every "
            "MAIL_POLL_SECONDS and hand each unseen message to the mail pipeline, until "
            "SIGINT/SIGTERM; --once polls once.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--once", action="store_true", help="Poll once and exit.")
        parser.add_argument("--interval", type=float, default=settings.MAIL_POLL_SECONDS)

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        if not options["once"]:
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda *_: stop.set())
            self.say(f"poll_mailboxes: every {options['interval']:g} s; Ctrl-C stops")
        while not stop.is_set():
            try:
                results = poll_all(stop)
            except Exception as err:
                # The database not there yet (a stack starting), or gone for a moment.
                self.stderr.write(f"poll_mailboxes: cannot read the mailboxes: {err}")
                results = {}
            for pk, result in results.items():
                if isinstance(result, PollReport):
                    self.say(f"poll_mailboxes: mailbox {pk}: {result.handed_over} handed over, "
                             f"{result.refused} flagged, {result.left} left")
                else:
                    self.say(f"poll_mailboxes: mailbox {pk}: failed: {result}")
            if options["once"]:
                break
            stop.wait(options["interval"])
        self.stdout.write("poll_mailboxes: stopped")
