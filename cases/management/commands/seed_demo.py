from __future__ import annotations

import asyncio
import random
from typing import Any

from django.core.management.base import CommandError
from tqdm import tqdm

from cases import gateway
from cases.ids import new_case_id
from cases.management.temporal_command import TemporalCommand
from cases.models import Queue
from cases.visibility import CaseFilter
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


class Command(TemporalCommand):
    help = "Open demo cases (with claims, comments and resolutions) through the workflow."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--count", type=int, default=36)
        parser.add_argument("--if-empty", action="store_true", help="Only seed an empty namespace.")
        parser.add_argument("--concurrency", type=int, default=16)
        parser.add_argument("--seed", type=int, default=None)
        parser.add_argument("--queues", default="",
                            help="Comma-separated queue slugs (default: the configured queues).")
        parser.add_argument(
            "--wait", type=float, default=0,
            help="Seconds to wait for Temporal and its case search attributes.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        queues = [q for q in options.pop("queues").split(",") if q]
        options["queues"] = queues or list(Queue.objects.values_list("slug", flat=True))
        if not options["queues"]:
            raise CommandError("No queues configured: add one in the admin first.")
        try:
            asyncio.run(self._main(**options))
        except gateway.TemporalUnavailable as err:
            raise CommandError(err.message) from err

    async def _main(self, count: int, if_empty: bool, concurrency: int, seed: int | None,
                    wait: float, queues: list[str], **_: Any) -> None:
        if wait:
            await gateway.wait_until_reachable(wait, need_core_attributes=True)
        if if_empty and await gateway.count_cases(CaseFilter().query()):
            self.stdout.write("seed_demo: cases exist already; not seeding")
            return
        rnd = random.Random(seed)
        gate = asyncio.Semaphore(concurrency)
        bar = tqdm(total=count, desc="seeding demo cases", unit="case")

        async def one() -> None:
            async with gate:
                await _open_demo_case(rnd, queues)
                bar.update()

        await asyncio.gather(*(one() for _ in range(count)))
        bar.close()
        self.stdout.write(f"seed_demo: opened {count} cases")


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


async def _open_demo_case(rnd: random.Random, queues: list[str]) -> None:
    case_id = new_case_id()
    await gateway.start_case(case_id, demo_new_case(rnd, queues), actor="intake")
    roll = rnd.random()
    if roll < 0.35:
        return
    agent = rnd.choice(["agent", "agent2"])
    await gateway.act(case_id, Claim(actor=agent))
    if roll < 0.6:
        return
    await gateway.act(case_id, AddComment(actor=agent, body="Looking into this now.",
                                          internal=rnd.random() < 0.5))
    if roll > 0.85:
        await gateway.act(case_id, Resolve(actor=agent, resolution="Fixed and confirmed."))
    if roll > 0.94:
        # A few ended ones, so "Ended cases" and their history pages have something to show.
        await gateway.act(case_id, Close(actor="supervisor"))
