from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from functools import partial
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from tqdm import tqdm

from cases import temporal
from cases.management.temporal_command import TemporalCommand
from cases.models import Queue
from cases.temporal.ids import case_id_for_key
from cases.temporal.visibility import CaseFilter
from workers import model
from workers.model import AddComment, Claim, Close, NewCase, Resolve

SUBJECTS = [
    "Refund not received", "Invoice shows wrong VAT", "Cannot log in after password reset",
    "API returns 502 on export", "Duplicate charge on card", "Change billing address",
    "Webhook deliveries delayed", "Account locked", "Feature request: dark mode",
    "Data export missing columns", "SSO setup with Okta", "Upgrade plan mid-cycle",
    "Mobile app crashes on launch", "Cancel subscription", "Question about pricing tiers",
    "Slow dashboard load times", "GDPR data deletion request", "Wrong currency on invoice",
]
NAMES = ["Ada Lovelace", "Grace Hopper", "Alan Turing", "Katherine Johnson", "Linus Pauling",
         "Marie Curie", "Edsger Dijkstra", "Barbara Liskov"]
TAGS = ["vip", "refund", "bug", "how-to", "outage", "billing-error", "security"]
DEFAULT_SEED = 1


class Command(TemporalCommand):
    help = ("Open the demo cases (with claims, comments and resolutions) through the workflow. "
            "A seed names a fixed set of case ids, so running it again only completes the set.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--count", type=int, default=36)
        parser.add_argument(
            "--if-empty", action="store_true",
            help="Leave alone a namespace that holds cases but none of this demo set.",
        )
        parser.add_argument("--concurrency", type=int, default=16)
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                            help="Which demo set (the same seed always names the same cases).")
        parser.add_argument("--queues", default="",
                            help="Comma-separated queue slugs (default: the configured queues).")
        parser.add_argument(
            "--wait", type=float, default=0,
            help="Seconds to wait for Temporal, its case search attributes and a worker, and "
                 "to keep retrying each call that fails for a transient reason.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        queues = [q for q in options.pop("queues").split(",") if q]
        options["queues"] = sorted(queues or Queue.objects.values_list("slug", flat=True))
        if not options["queues"]:
            raise CommandError("No queues configured: add one in the admin first.")
        try:
            with self.patient_timeouts():
                asyncio.run(self._main(**options))
        except temporal.TemporalUnavailable as err:
            raise CommandError(f"seed_demo: {err.message}") from err

    async def _main(self, count: int, if_empty: bool, concurrency: int, seed: int,
                    wait: float, queues: list[str], **_: Any) -> None:
        if wait:
            await temporal.wait_until_reachable(
                wait, need_core_attributes=True, count_query=CaseFilter().query(),
                worker_task_queue=settings.TEMPORAL_TASK_QUEUE,
                on_wait=lambda reason: self.say(f"seed_demo: waiting: {reason}"),
            )
        retries = 0

        def retried(_: BaseException) -> None:
            nonlocal retries
            retries += 1

        # Every call below is safe to repeat: fixed case ids, fixed Update ids.
        patient = partial(temporal.retry_transient, budget_seconds=wait, on_retry=retried)
        cases = [demo_case(seed, i, queues) for i in range(count)]
        gate = asyncio.Semaphore(concurrency)

        async def exists(case: DemoCase) -> bool:
            async with gate:
                try:
                    await patient(partial(temporal.describe_case, case.case_id))
                except temporal.CaseNotFound:
                    return False
                return True

        present = sum(await asyncio.gather(*(exists(c) for c in cases)))
        if if_empty and not present and await patient(
            partial(temporal.count_cases, CaseFilter().query())
        ):
            self.say("seed_demo: the namespace holds cases, none of them demo ones; not seeding")
            return
        bar = tqdm(total=count, desc="seeding demo cases", unit="case")

        async def one(case: DemoCase) -> None:
            async with gate:
                await _seed_case(case, patient)
                bar.update()

        outcomes = await asyncio.gather(*(one(c) for c in cases), return_exceptions=True)
        bar.close()
        failed = [(c.case_id, o) for c, o in zip(cases, outcomes, strict=True)
                  if isinstance(o, BaseException)]
        note = f"; rode out {retries} slow or failed calls" if retries else ""
        if failed:
            first_id, first = failed[0]
            raise CommandError(
                f"seed_demo: {count - len(failed)} of {count} demo cases ready, {len(failed)} "
                f"failed (first: {first_id}: {getattr(first, 'message', first)!s}){note}; "
                "run it again to complete the set"
            )
        self.say(f"seed_demo: opened {count - present} cases; the demo set of {count} "
                 f"(seed {seed}) is complete{note}")


def demo_new_case(rnd: random.Random, queues: list[str]) -> NewCase:
    """A plausible case from a random requester (also used by bench/)."""
    name = rnd.choice(NAMES)
    return NewCase(
        title=rnd.choice(SUBJECTS),
        queue=rnd.choice(queues),
        priority=rnd.choice([1, 2, 2, 3, 3, 3, 4]),
        description=f"{name} wrote in about this.\n\nPlease look into it.",
        requester_name=name,
        requester_email=name.lower().replace(" ", ".") + "@example.com",
        tags=rnd.sample(TAGS, rnd.choice([0, 0, 1, 2])),
    )


@dataclass(frozen=True)
class DemoCase:
    case_id: str
    new: NewCase
    # (Update id, command) in order; the id makes a repeated step return its first outcome.
    steps: tuple[tuple[str, model.Command], ...]


def demo_case(seed: int, index: int, queues: list[str]) -> DemoCase:
    """Demo case number `index` of a seed's set: the same id, content and steps every time,
    whatever order or concurrency the set is seeded in."""
    rnd = random.Random(f"seed_demo:{seed}:{index}")
    new = demo_new_case(rnd, queues)
    steps: list[tuple[str, model.Command]] = []
    roll = rnd.random()
    if roll >= 0.35:
        agent = rnd.choice(["agent", "agent2"])
        steps.append(("seed-claim", Claim(actor=agent)))
        if roll >= 0.6:
            steps.append(("seed-comment", AddComment(
                actor=agent, body="Looking into this now.", internal=rnd.random() < 0.5)))
            if roll > 0.85:
                steps.append(("seed-resolve", Resolve(actor=agent,
                                                      resolution="Fixed and confirmed.")))
            if roll > 0.94:
                # A few ended ones, so "Ended cases" and their history pages have something.
                steps.append(("seed-close", Close(actor="supervisor")))
    return DemoCase(case_id_for_key("seed_demo", f"{seed}:{index}"), new, tuple(steps))


async def _seed_case(case: DemoCase, patient: Any) -> None:
    """Bring one demo case to the end of its steps, from wherever an earlier run left it."""
    try:
        await patient(partial(temporal.start_case, case.case_id, case.new, "intake"))
    except temporal.CaseExists:
        pass  # opened by an earlier run, or by our own attempt that timed out
    for update_id, command in case.steps:
        try:
            await patient(partial(temporal.act, case.case_id, command, update_id))
        except temporal.ActionRefused:
            # A repeated Update id returns its first outcome while the run is open; past that
            # (the case ended) or if the step was done under another id, look at the case.
            row = await patient(partial(temporal.describe_case, case.case_id))
            if row.execution_status != "running":
                return  # closed: Close is the last step, or someone closed it since
            if isinstance(command, Claim) and row.assignee:
                continue
            if isinstance(command, Resolve) and row.status == "resolved":
                continue
            raise
