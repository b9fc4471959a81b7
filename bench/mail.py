"""Mail intake (issue 23): how many mails a second the SMTP door holds, and what one mail
costs in Temporal calls.

A stack of its own (bench/harness.py: dev server with `--metrics-port`, one `run_worker`, a
fresh SQLite database) plus `manage.py run_mail_intake` on a free port, as the Procfile runs
it. Each mail is a new one (its own Message-ID and sender, so the per-sender hold never
applies) to `technical@example.com`, sent over its own SMTP connection the way a relaying
mail server would. Three phases:

1. cost: `--cost` mails one after another; the dev server's own `service_requests` counters
   (per operation) are read settled before and after, and divided by the mails. The worker's
   long polls count too, so an idle window of the same length is measured and subtracted.
2. latency: the same sequential mails' time from DATA to 250 (p50/p95).
3. throughput: `--mails` mails from `--senders` concurrent SMTP clients; mails/s from the
   first connection to the last 250; then Visibility must list exactly one case per mail.
"""

from __future__ import annotations

import argparse
import http.client
import re
import smtplib
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.policy import SMTP

from bench.harness import (
    TEMPORAL_PORTS,
    Stack,
    exit_hard,
    free_port,
    load_average,
    machine,
    median,
    percentile,
    say,
    temporal_version,
    wait_for_port,
)

ADDRESS = "technical@example.com"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=300, help="mails in the throughput phase")
    parser.add_argument("--senders", type=int, default=16, help="concurrent SMTP clients")
    parser.add_argument("--cost", type=int, default=30, help="sequential mails for the cost")
    parser.add_argument("--concurrency", type=int, default=8,
                        help="the listener's MAIL_INTAKE_CONCURRENCY")
    parser.add_argument("--keep", action="store_true")
    return parser.parse_args(argv)


def message(word: str, n: int, body: str = "The printer is on fire again.") -> bytes:
    mail = EmailMessage()
    mail["From"] = f"Customer {n} <c{n}-{uuid.uuid4().hex[:8]}@example.net>"
    mail["To"] = ADDRESS
    mail["Subject"] = f"Printer {word} number {n}"
    mail["Message-ID"] = f"<{uuid.uuid4().hex}@bench.example.net>"
    mail.set_content(body)
    return mail.as_bytes(policy=SMTP)


def send(port: int, raw: bytes) -> float:
    """One mail on its own connection; seconds from DATA to the 250."""
    with smtplib.SMTP("127.0.0.1", port, timeout=300) as smtp:
        smtp.ehlo("relay.bench")
        smtp.mail("relay@example.net")
        code, reply = smtp.rcpt(ADDRESS)
        if code != 250:
            raise RuntimeError(f"RCPT answered {code} {reply!r}")
        started = time.perf_counter()
        code, reply = smtp.data(raw)
        took = time.perf_counter() - started
    if code != 250:
        raise RuntimeError(f"DATA answered {code} {reply!r}")
    return took


def counters(stack: Stack) -> dict[str, float]:
    """service_requests per frontend operation, as the dev server counts them."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.metrics_port, timeout=10)
    try:
        conn.request("GET", "/metrics")
        text = conn.getresponse().read().decode()
    finally:
        conn.close()
    totals: dict[str, float] = {}
    for line in text.splitlines():
        # Frontend only: the calls clients (the door's, the worker's) make; the history and
        # matching services count their own internal hops too.
        if line.startswith("service_requests{") and 'service_name="frontend"' in line:
            op = re.search(r'operation="([^"]+)"', line)
            if op:
                totals[op.group(1)] = totals.get(op.group(1), 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def settled(stack: Stack, quiet: float = 3.0) -> dict[str, float]:
    """Counters once the client-side ones stopped moving for `quiet` s (the server publishes
    about once a second; the worker's long polls never stop, so they are left out here)."""
    def client_side(c: dict[str, float]) -> float:
        return sum(v for k, v in c.items() if not k.startswith("Poll"))

    value = counters(stack)
    since = time.monotonic()
    deadline = since + 60
    while time.monotonic() - since < quiet and time.monotonic() < deadline:
        time.sleep(0.25)
        now = counters(stack)
        if client_side(now) != client_side(value):
            value, since = now, time.monotonic()
    return value


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after
            if after.get(k, 0.0) - before.get(k, 0.0) > 0}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with Stack(keep_dir=args.keep) as stack:
        stack.start_backend()
        port = free_port(TEMPORAL_PORTS, stack.ports)
        env = {**stack.env, "MAIL_INTAKE_CONCURRENCY": str(args.concurrency),
               "LOG_LEVEL": "WARNING"}
        say(f"starting run_mail_intake on 127.0.0.1:{port}")
        child = stack.children.start(
            "mail", [sys.executable, "manage.py", "run_mail_intake", "--port", str(port)], env)
        wait_for_port(port, child.proc, "run_mail_intake", 60)
        word = "b" + uuid.uuid4().hex[:10]
        for n in range(5):  # warm-up: first client connection, first workflow tasks
            send(port, message(word, -n - 1))

        say(f"cost: {args.cost} mails one after another")
        before = settled(stack)
        started = time.monotonic()
        latencies = [send(port, message(word, n)) for n in range(args.cost)]
        sequential_seconds = time.monotonic() - started
        after = settled(stack)
        window = time.monotonic() - started
        # The same length of nothing: what the worker's polls cost on their own.
        time.sleep(window)
        idle_after = settled(stack)
        used = delta(after, before)
        idle = delta(idle_after, after)
        per_mail = {op: (used.get(op, 0.0) - idle.get(op, 0.0)) / args.cost
                    for op in sorted(set(used) | set(idle))}

        say(f"throughput: {args.mails} mails from {args.senders} senders at once")
        first = args.cost
        load_before = load_average()
        started = time.monotonic()
        with ThreadPoolExecutor(args.senders) as senders:
            parallel = list(senders.map(lambda n: send(port, message(word, n)),
                                        range(first, first + args.mails)))
        elapsed = time.monotonic() - started
        load_after = load_average()
        stack.check_alive()

        from cases import temporal

        total = 5 + args.cost + args.mails
        query = f"WorkflowType = 'Case' AND CaseTitle = '{word}'"
        deadline = time.monotonic() + 120
        while (listed := stack.run(temporal.count_cases(query))) < total and \
                time.monotonic() < deadline:
            time.sleep(1)

    print(f"\n### Mail intake, {machine()}, Temporal {temporal_version()}\n")
    print(f"`python -m bench.mail --mails {args.mails} --senders {args.senders} --cost "
          f"{args.cost} --concurrency {args.concurrency}`; load {load_before} → {load_after}\n")
    print("| measure | value |\n|---|---|")
    print(f"| throughput, {args.senders} senders, MAIL_INTAKE_CONCURRENCY {args.concurrency} "
          f"| **{args.mails / elapsed:.1f} mails/s** ({args.mails} in {elapsed:.1f} s) |")
    print(f"| DATA → 250 under that load, p50 / p95 | {median(parallel) * 1000:.0f} / "
          f"{percentile(parallel, 95) * 1000:.0f} ms |")
    print(f"| DATA → 250 one at a time, p50 / p95 | {median(latencies) * 1000:.0f} / "
          f"{percentile(latencies, 95) * 1000:.0f} ms "
          f"({args.cost / sequential_seconds:.1f} mails/s sequentially) |")
    print(f"| cases listed / mails sent | {listed} / {total} |")
    print("\nTemporal calls per mail (the dev server's `service_requests`, idle window "
          "subtracted):\n")
    print("| operation | calls per mail |\n|---|---|")
    for op, value in sorted(per_mail.items(), key=lambda kv: -abs(kv[1])):
        if abs(value) >= 0.05:
            print(f"| {op} | {value:.2f} |")
    client = sum(v for k, v in per_mail.items() if not k.startswith(("Poll", "Respond")))
    print(f"| **client calls (not the worker's polls/responses)** | **{client:.2f}** |")
    if listed != total:
        raise SystemExit(f"lost or doubled: {listed} cases for {total} mails")


if __name__ == "__main__":
    with exit_hard():
        main()
