from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.management.base import BaseCommand
from django.test.utils import override_settings

# A page gives up on Temporal after 1.5 s so a person hears "Temporal is slow" at once; a
# command next to a dev server that booted a second ago, on a busy machine, would rather wait.
PATIENT_RPC_SECONDS = 15.0
PATIENT_UPDATE_SECONDS = 60.0


class TemporalCommand(BaseCommand):
    """A management command that uses the Temporal client.

    The SDK can abort in interpreter teardown once a client or worker has existed
    (sdk-python#300: "PyGILState_Release ... must be current"). From the command line, leave
    with os._exit after flushing, so a successful command never exits 134. In-process callers
    (call_command in tests) go through handle() and are unaffected.
    """

    def run_from_argv(self, argv: list[str]) -> None:
        code: int = 0
        try:
            super().run_from_argv(argv)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    @contextmanager
    def patient_timeouts(self) -> Iterator[None]:
        """Per-call timeouts for start-up work, never shorter than the configured ones."""
        with override_settings(
            TEMPORAL_RPC_TIMEOUT=max(settings.TEMPORAL_RPC_TIMEOUT, PATIENT_RPC_SECONDS),
            TEMPORAL_QUERY_TIMEOUT=max(settings.TEMPORAL_QUERY_TIMEOUT, PATIENT_RPC_SECONDS),
            TEMPORAL_UPDATE_TIMEOUT=max(settings.TEMPORAL_UPDATE_TIMEOUT, PATIENT_UPDATE_SECONDS),
        ):
            yield

    def say(self, text: str) -> None:
        """A progress line that shows up at once under honcho (stdout is a pipe there)."""
        self.stdout.write(text)
        self.stdout.flush()
