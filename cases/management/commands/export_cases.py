from __future__ import annotations

import asyncio
import signal
from typing import Any

from django.conf import settings

from cases import temporal
from cases.analytics import exporter
from cases.analytics import store as stores
from cases.management.temporal_command import TemporalCommand


class Command(TemporalCommand):
    help = ("Export the cases changed since the last run to the analytics store "
            "(ANALYTICS_URI; docs/analytics.md). --rebuild: every case Temporal still has, "
            "from its history; --follow: every ANALYTICS_EXPORT_SECONDS until SIGINT/SIGTERM; "
            "--compact: fold the store's segments into one per table.")

    def add_arguments(self, parser: Any) -> None:
        what = parser.add_mutually_exclusive_group()
        what.add_argument("--rebuild", action="store_true",
                          help="Export every case again from its history (a progress bar).")
        what.add_argument("--follow", action="store_true",
                          help="Export what changed every --interval seconds, until stopped.")
        what.add_argument("--compact", action="store_true",
                          help="Fold the store's segments into one per table, and exit.")
        parser.add_argument("--interval", type=float, default=settings.ANALYTICS_EXPORT_SECONDS)
        parser.add_argument("--wait", type=float, default=0.0,
                            help="--follow: seconds to wait for Temporal (and the case search "
                                 "attributes) to come up before the first round.")

    def handle(self, *args: Any, **options: Any) -> None:
        store = stores.shared()
        if options["compact"]:
            self.say(f"export_cases: compacted {store.compact()} segments in {store.uri}")
            return
        with self.patient_timeouts():
            if options["follow"]:
                asyncio.run(self._follow(options["interval"], options["wait"]))
                return
            try:
                report = asyncio.run(exporter.rebuild(progress=True) if options["rebuild"]
                                     else exporter.export_changed())
            except temporal.TemporalUnavailable as err:
                self.stderr.write(f"export_cases: {err.message}")
                raise SystemExit(1) from None
        self._said(report)

    async def _follow(self, interval: float, wait: float) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        if wait:
            try:
                await temporal.wait_until_reachable(wait, need_core_attributes=True)
            except temporal.TemporalUnavailable:
                pass  # the rounds below say so, and keep asking
        self.say(f"export_cases: every {interval:g} s to {stores.shared().uri}; Ctrl-C stops")
        while not stop.is_set():
            try:
                report = await exporter.export_changed()
            except temporal.GatewayError as err:
                # Temporal down or busy: the watermark did not move; the next round asks again.
                self.stderr.write(f"export_cases: Temporal is unavailable, retrying in "
                                  f"{interval:g} s: {err.message}")
                self.stderr.flush()
            except Exception as err:  # one bad round (the store's disk, say) is not the last
                self.stderr.write(f"export_cases: this round failed, retrying in {interval:g} s: "
                                  f"{type(err).__name__}: {err}")
                self.stderr.flush()
            else:
                if report.cases or report.skipped or report.gone:
                    self._said(report)
                try:
                    folded = await exporter.compact_if_due()
                except Exception as err:  # the store's disk, say: the next round tries again
                    self.stderr.write(f"export_cases: compacting failed: "
                                      f"{type(err).__name__}: {err}")
                    self.stderr.flush()
                else:
                    if folded:
                        self.say(f"export_cases: compacted {folded} segments")
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                pass
        self.say("export_cases: stopped")

    def _said(self, report: exporter.ExportReport) -> None:
        self.say(f"export_cases: {report.cases} exported, {report.unchanged} unchanged, "
                 f"{report.skipped} skipped (not a case's history), {report.gone} gone, "
                 f"{report.visibility_calls} Visibility calls, {report.history_calls} "
                 f"history reads, {report.seconds:.1f} s")
