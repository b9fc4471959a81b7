"""Which thread a request's synchronous parts run on (cases/web/request_threads.py), and issue
22's defect 0: under 500 agents a request was handed an executor that another request held,
or one already shut down ("cannot schedule new futures after shutdown"), because push streams
gave their request thread back early into a pool that tracked it by `id()`; and the process's
one Redis pool ran out ("Too many connections") once threads were not bounded."""

from __future__ import annotations

import asyncio
import random
import textwrap
import threading

from asgiref.sync import sync_to_async

from cases.web.request_threads import RequestThreads

from .test_prod_stack import ASGI_GET, django_env, manage, shell


def _scope(path: str) -> dict[str, object]:
    return {"type": "http", "path": path}


def test_a_stream_never_leases_a_request_thread_and_each_lease_has_one_owner():
    held: dict[int, str] = {}  # thread ident -> the request running on it now
    clashes: list[str] = []
    guard = threading.Lock()

    def work(name: str) -> str:
        ident = threading.get_ident()
        with guard:
            if ident in held:
                clashes.append(f"{name} ran on {held[ident]}'s thread")
            held[ident] = name
        threading.Event().wait(random.uniform(0, 0.003))
        with guard:
            held.pop(ident, None)
        return threading.current_thread().name

    stream_threads: set[str] = set()

    async def app(scope, receive, send):
        name = scope["name"]
        if scope["path"] == "/events/":
            stream_threads.add(await sync_to_async(lambda: threading.current_thread().name)())
            await asyncio.sleep(random.uniform(0, 0.02))  # open for a while, on the loop
            stream_threads.add(await sync_to_async(lambda: threading.current_thread().name)())
            return
        for _ in range(3):
            await sync_to_async(work)(name)
            await asyncio.sleep(0)

    async def main():
        pool = RequestThreads(app, size=4, stream_threads=2, stream_paths=("/events/",))
        calls = []
        for n in range(400):
            path = "/events/" if n % 2 else "/cases/"
            calls.append(pool({**_scope(path), "name": f"{path}{n}"}, None, None))
        await asyncio.gather(*calls)
        return pool

    pool = asyncio.run(main())
    assert clashes == []
    # Streams ran their synchronous steps on the two shared threads, never a request's.
    assert stream_threads == {"tracerail-streams-0_0", "tracerail-streams-1_0"}
    assert pool.out == 0
    assert len(pool.idle) == len({id(e) for e in pool.idle}) <= 4  # each returned once
    for executor in pool.idle:  # and none of them shut down: each still takes work
        assert executor.submit(lambda: 1).result(timeout=5) == 1


def test_requests_beyond_the_bound_wait_for_a_thread_instead_of_making_one():
    running, peak = [0], [0]
    lock = threading.Lock()

    def work() -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        threading.Event().wait(0.01)
        with lock:
            running[0] -= 1

    async def app(scope, receive, send):
        await sync_to_async(work)()

    async def main():
        pool = RequestThreads(app, size=3, stream_threads=1, stream_paths=("/events/",))
        await asyncio.gather(*(pool(_scope("/cases/"), None, None) for _ in range(40)))
        return pool

    pool = asyncio.run(main())
    assert peak[0] == 3
    assert len(pool.idle) == 3


def test_hundreds_of_overlapping_streams_between_ordinary_requests_on_one_process(
        temporal, redis_server, tmp_path):
    """The deployed ASGI app (tracerail.asgi) on one process with Redis as its store: 300
    push streams opened and dropped at random moments while 300 ordinary pages are asked,
    all at once. Before: requests were handed a shut-down or shared executor, and the Redis
    pool raised "Too many connections"; now every page is a 200 and nothing is logged at
    ERROR."""
    env = django_env(tmp_path, REDIS_URL=redis_server.url, TEMPORAL_ADDRESS=temporal.address,
                     TEMPORAL_TASK_QUEUE=temporal.task_queue, REQUEST_THREADS="16")
    for step in (["migrate", "--noinput", "-v0"], ["collectstatic", "--noinput", "-v0"]):
        done = manage(step, env)
        assert done.returncode == 0, done.stdout + done.stderr
    got = shell(ASGI_GET + textwrap.dedent("""
        import asyncio, json, logging, random
        from importlib import import_module
        from django.conf import settings
        from django.contrib.auth.models import Group, User
        from django.db import connections
        from cases.models import Queue
        from tracerail.asgi import application

        errors = []

        class Catch(logging.Handler):
            def emit(self, record):
                errors.append(f"{record.name}: {record.getMessage()[:300]} "
                              f"{record.exc_info[1]!r}" if record.exc_info else
                              f"{record.name}: {record.getMessage()[:300]}")

        logging.getLogger().addHandler(Catch(level=logging.ERROR))
        user = User.objects.create_user("threads-agent", password="x" * 20)
        user.groups.add(Group.objects.get(name="Agent"))
        Queue.objects.get(slug="general").agents.add(user)
        cookies = []
        for _ in range(20):  # streams per session are limited: spread them over sessions
            session = import_module(settings.SESSION_ENGINE).SessionStore()
            session.update({"_auth_user_id": str(user.pk),
                            "_auth_user_hash": user.get_session_auth_hash(),
                            "_auth_user_backend": "django.contrib.auth.backends.ModelBackend"})
            session.create()
            cookies.append(f"{settings.SESSION_COOKIE_NAME}={session.session_key}")
        connections.close_all()
        rng = random.Random(22)

        async def stream(n):
            cookie = cookies[n % len(cookies)]
            path = "/events/"
            query = "queue=general" if n % 2 else "case=case-7K2M9QXA"
            scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                     "method": "GET", "scheme": "http", "path": path,
                     "raw_path": path.encode(), "query_string": query.encode(),
                     "root_path": "", "client": ("127.0.0.1", 1),
                     "server": ("127.0.0.1", 80),
                     "headers": [(b"host", b"127.0.0.1"), (b"cookie", cookie.encode())]}
            status, opened = [], asyncio.Event()
            asked = []

            async def receive():
                if not asked:
                    asked.append(1)
                    return {"type": "http.request", "body": b"", "more_body": False}
                await opened.wait()
                await asyncio.sleep(rng.uniform(0.0, 1.5))
                return {"type": "http.disconnect"}

            async def send(message):
                if message["type"] == "http.response.start":
                    status.append(message["status"])
                elif message.get("body"):
                    opened.set()

            await asyncio.sleep(rng.uniform(0.0, 2.0))
            await asyncio.wait_for(application(scope, receive, send), 60)
            return status[0] if status else 0

        async def page(n):
            status, _, _ = await asgi_get("/cases/new/", cookie=cookies[n % len(cookies)])
            return status

        async def main():
            # Three waves: a hundred streams opening and dropping at random moments, and a
            # hundred pages asked at one instant among them (more requests at once than the
            # pool keeps idle threads, so threads are ended as well as reused).
            streams, pages = [], []
            for wave in range(3):
                opened = [asyncio.ensure_future(stream(wave * 100 + n)) for n in range(100)]
                await asyncio.sleep(1.0)
                pages += await asyncio.gather(*(page(wave * 100 + n) for n in range(100)))
                streams += await asyncio.gather(*opened)
            return streams + pages

        statuses = asyncio.run(main())
        print(json.dumps({"streams": sorted(set(statuses[:300])),
                          "pages": sorted(set(statuses[300:])), "errors": errors[:10]}))
    """), env)
    assert got["errors"] == []
    assert got["streams"] == [200]
    assert got["pages"] == [200]
