"""Many writers on one case: 20 logged-in browsers post 10 comments each, all at once.

Run from the repository root:

    .venv/bin/python -m bench.writers [--users 20] [--comments 10] [--scenarios 4x1,4x2,4x3,0x1]
                                      [--baseline REV]

Starts its own Temporal dev server and worker (see bench/harness.py), then for each scenario
starts the web app under uvicorn with that scenario's settings, opens a fresh case and has
every user post their comments to it concurrently over real HTTP (HTMX headers, CSRF token
from the case page, one connection per post as a browser's parallel requests would be).

A scenario `LxP` runs P uvicorn worker processes with TEMPORAL_UPDATES_PER_CASE=L (0: no
per-case turns, only the retries). `--baseline REV` adds a scenario running the web app from
that git revision's tree (e.g. the branch point on main, before writers took turns).

Users are created with unusable passwords and logged in by writing their sessions directly
through Django's session engine: 20 password hashes would cost seconds of CPU for nothing
this benchmark measures. Comments are posted without the form's hidden `version` field (as
bench/pages.py does): with it, every comment but the first of a burst is refused as stale,
which measures the staleness rule rather than the crowd.

Counted from the case's own comments afterwards, not from the responses: applied, duplicated
(one body twice), and lost (neither applied nor handed back to its writer).
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from bench.harness import (
    REPO,
    UVICORN_BIN,
    WEB_PORTS,
    Child,
    Stack,
    WebClient,
    exit_hard,
    free_port,
    load_average,
    machine,
    percentile,
    say,
    wait_for_port,
)

QUEUE = "general"
BUSY_PHRASE = "Many people are changing this case right now"


@dataclass
class Scenario:
    name: str
    per_case: int
    processes: int
    app_dir: Path | None = None


@dataclass
class Post:
    body: str
    status: int = 0
    ms: float = 0.0
    outcome: str = ""  # done, busy (text handed back), or "HTTP <status>"
    handed_back: bool = False


@dataclass
class Result:
    scenario: Scenario
    posts: list[Post] = field(default_factory=list)
    applied: int = 0
    duplicates: int = 0
    lost: int = 0
    wall_s: float = 0.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--comments", type=int, default=10, help="comments per user, at once")
    parser.add_argument("--scenarios", default="4x1,4x2,4x3,0x1",
                        help="comma-separated LxP: L turns per case per process, P processes")
    parser.add_argument("--baseline", default="",
                        help="also run the web app from this git revision (e.g. main's commit)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args(argv)


def scenarios(args: argparse.Namespace, stack: Stack) -> list[Scenario]:
    found = []
    if args.baseline:
        rev = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.strip()
        tree = stack.workdir / f"baseline-{rev}"
        tree.mkdir()
        # The revision's files only (no work tree of its own, nothing of /work/main touched).
        archive = subprocess.run(["git", "archive", rev], cwd=REPO, capture_output=True,
                                 check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
        found.append(Scenario(f"baseline {rev}, 1 process", 0, 1, tree))
    for spec in filter(None, args.scenarios.split(",")):
        limit, processes = (int(v) for v in spec.split("x"))
        turns = f"{limit} turns/case" if limit else "no turns"
        found.append(Scenario(f"{turns}, {processes} process{'es' * (processes > 1)}",
                              limit, processes))
    return found


def create_users(count: int) -> list[tuple[str, str]]:
    """(username, session key) per user: agents of the case's queue, with sessions written
    straight into the session store (no password, so no hashing)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import Group, User
    from django.contrib.sessions.backends.db import SessionStore

    from cases.models import Queue

    agents = Group.objects.get_or_create(name="Agent")[0]
    queue = Queue.objects.get_or_create(slug=QUEUE, defaults={"name": QUEUE.title()})[0]
    users = []
    for i in range(count):
        user = User(username=f"writer{i:02d}-{uuid.uuid4().hex[:6]}")
        user.set_unusable_password()
        user.save()
        user.groups.add(agents)
        queue.agents.add(user)
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        users.append((user.username, session.session_key or ""))
    return users


def start_web(stack: Stack, scenario: Scenario) -> tuple[Child, int]:
    port = free_port(WEB_PORTS, stack.ports)
    env = {**stack.env, "TEMPORAL_UPDATES_PER_CASE": str(scenario.per_case)}
    argv = [UVICORN_BIN, "tracerail.asgi:application", "--host", "127.0.0.1",
            "--port", str(port), "--workers", str(scenario.processes),
            "--no-access-log", "--log-level", "warning"]
    if scenario.app_dir is not None:
        argv += ["--app-dir", str(scenario.app_dir)]
    say(f"starting the web app: {scenario.name} (port {port})")
    child = stack.children.start(f"web-{port}", argv, env)
    wait_for_port(port, child.proc, "uvicorn", 60)
    return child, port


def crowd(stack: Stack, scenario: Scenario, users: list[tuple[str, str]], comments: int
          ) -> Result:
    from cases import temporal
    from cases.temporal.ids import new_case_id
    from workers.model import NewCase

    child, port = start_web(stack, scenario)
    case_id = new_case_id()
    stack.run(temporal.start_case(case_id, NewCase(title="A crowd", queue=QUEUE), "intake"))
    path = f"/cases/{case_id}/"

    # Each user opens the case page once (its session cookie in, a CSRF cookie out); every
    # post then goes on a connection of its own carrying the same cookies.
    jars = []
    for _, session_key in users:
        web = WebClient("127.0.0.1", port)
        web.cookies["sessionid"] = session_key
        page = web.get(path)
        if page.status != 200 or "csrftoken" not in web.cookies:
            raise RuntimeError(f"GET {path}: HTTP {page.status}, cookies {sorted(web.cookies)}")
        jars.append(dict(web.cookies))
        web.close()

    posts = [Post(f"{name} says {n} ({uuid.uuid4().hex[:8]})")
             for name, _ in users for n in range(comments)]
    start = threading.Barrier(len(posts) + 1)

    def send(post: Post, jar: dict[str, str]) -> None:
        web = WebClient("127.0.0.1", port)
        web.cookies.update(jar)
        web.conn.connect()  # connect before the barrier: time the post, not the handshake
        start.wait()
        began = time.perf_counter()
        resp = web.post(f"{path}comment/",
                        {"comment-body": post.body, "comment-key": uuid.uuid4().hex},
                        headers={"HX-Request": "true", "HX-Current-URL": path})
        post.ms = (time.perf_counter() - began) * 1000
        post.status = resp.status
        text = resp.text()
        if resp.status == 200 and "Comment: done." in text:
            post.outcome = "done"
        elif BUSY_PHRASE in text:
            post.outcome = "busy"
        else:
            post.outcome = f"HTTP {resp.status}"
        # The typed text is handed back when the response carries it outside the case's
        # comment list (an applied comment appears there too): count it only if not applied.
        post.handed_back = post.outcome != "done" and post.body in text
        web.close()

    say(f"{len(posts)} comments at once from {len(users)} users")
    with ThreadPoolExecutor(max_workers=len(posts)) as pool:
        futures = [pool.submit(send, post, jars[i // comments]) for i, post in enumerate(posts)]
        start.wait()
        began = time.perf_counter()
        for future in futures:
            future.result()
        wall = time.perf_counter() - began

    stack.check_alive()
    # Anything still in flight when a post gave up lands within the update timeout.
    time.sleep(1.0)
    bodies = Counter(c.body for c in stack.run(temporal.get_case(case_id)).comments)
    stack.children.stop(child)
    posted = {p.body for p in posts}
    return Result(
        scenario=scenario, posts=posts,
        applied=sum(1 for b in bodies if b in posted),
        duplicates=sum(n - 1 for b, n in bodies.items() if b in posted and n > 1),
        lost=sum(1 for p in posts if p.body not in bodies and not p.handed_back),
        wall_s=wall,
    )


def report(results: list[Result], args: argparse.Namespace, load: str) -> str:
    total = args.users * args.comments
    head = (f"{'scenario':<32} {'applied':>7} {'done':>5} {'busy':>5} {'handed':>6} "
            f"{'errors by status':<22} {'dup':>3} {'lost':>4} {'p50 ms':>7} {'p95 ms':>7} "
            f"{'wall s':>6}")
    lines = [
        f"Tracerail: {args.users} users x {args.comments} comments at once on one case "
        f"({total} posts) — {machine()}",
        f"load average (1/5/15 min) {load}; TEMPORAL_UPDATE_TIMEOUT default (10 s)",
        "",
        head,
        "-" * len(head),
    ]
    for r in results:
        kinds = Counter(p.outcome for p in r.posts)
        errors = ", ".join(f"{k.removeprefix('HTTP ')}:{n}" for k, n in sorted(kinds.items())
                           if k.startswith("HTTP")) or "-"
        ms = [p.ms for p in r.posts]
        handed = sum(p.handed_back for p in r.posts)
        lines.append(
            f"{r.scenario.name:<32} {r.applied:>7} {kinds['done']:>5} {kinds['busy']:>5} "
            f"{handed:>6} {errors:<22} {r.duplicates:>3} {r.lost:>4} "
            f"{percentile(ms, 50):7.0f} {percentile(ms, 95):7.0f} {r.wall_s:6.1f}"
        )
    lines += [
        "",
        "applied = distinct posted comments on the case afterwards (its Query); done = "
        "answered 'Comment: done.'; busy = answered with the busy message;",
        "handed = not applied and the response carries the typed text; lost = neither "
        "applied nor handed back; dup = a comment applied more than once;",
        "p50/p95 = each POST's client-observed round trip; wall = first post sent to last "
        "answer.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with Stack(keep_dir=args.keep) as stack:
        stack.start_backend()
        users = create_users(args.users)
        load = f"before {load_average()}"
        results = [crowd(stack, s, users, args.comments) for s in scenarios(args, stack)]
        load += f", after {load_average()}"
    print(report(results, args, load), flush=True)


if __name__ == "__main__":
    with exit_hard():
        main()
