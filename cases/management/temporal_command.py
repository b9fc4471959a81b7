from __future__ import annotations

import os
import sys

from django.core.management.base import BaseCommand


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
