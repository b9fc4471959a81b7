"""Which agent a routed case goes to (issue 17): pure, shared by the per-queue router
workflow (workers/router.py), which holds the rotation pointer and per-agent load."""

from __future__ import annotations

MODES = ("manual", "round_robin", "least_loaded")


def pick(mode: str, candidates: list[str], last: str, load: dict[str, int]
         ) -> tuple[str, str]:
    """(agent, reason): the next available agent after `last` in name order (round-robin),
    or the one holding fewest routed cases, ties by name (least-loaded). `candidates` are
    the queue's agents who are available (away ones already left out)."""
    people = sorted(set(candidates))
    if mode == "manual":
        return "", "manual routing"
    if not people:
        return "", "nobody is available"
    if mode == "least_loaded":
        agent = min(people, key=lambda p: (load.get(p, 0), p))
        return agent, f"least loaded ({load.get(agent, 0)} open)"
    after = [p for p in people if p > last]
    agent = after[0] if after else people[0]
    return agent, "round-robin"
