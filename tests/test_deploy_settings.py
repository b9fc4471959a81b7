"""Production settings, in subprocesses with exactly the environment docs/deployment.md gives."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path

import pytest

from .conftest import manage

ROOT = Path(__file__).resolve().parent.parent
DEPLOYMENT_MD = ROOT / "docs" / "deployment.md"


def documented_env() -> dict[str, str]:
    """The `NAME=value` lines of the production block in docs/deployment.md; a `<…>`
    placeholder (the secret key) is filled with a fresh random value."""
    text = DEPLOYMENT_MD.read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    block = next(b for b in blocks if b.startswith("DEBUG=false"))
    env = {}
    for line in block.splitlines():
        name, _, value = line.partition("=")
        env[name] = secrets.token_urlsafe(50) if value.startswith("<") else value
    return env


def bare_manage(args: list[str], env: dict[str, str],
                tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # Nothing inherited but PATH: the test proves the block alone is enough. The var dir is
    # empty, so no var/secret-key from `make setup` can stand in for a missing key.
    base = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "tracerail.settings",
            "TRACERAIL_VAR_DIR": str(tmp_path)}
    return manage(args, {**base, **env}, timeout=120)


def test_the_documented_production_env_passes_check_deploy(tmp_path):
    env = documented_env()
    assert env["DEBUG"] == "false" and len(env["SECRET_KEY"]) >= 50
    result = bare_manage(["check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues (0 silenced)." in result.stdout
    assert "WARNINGS" not in result.stderr


def test_check_deploy_fails_without_the_https_settings(tmp_path):
    # The same check as above, shown to be able to fail: drop the HTTPS lines.
    env = {k: v for k, v in documented_env().items() if not k.startswith("SECURE_")}
    result = bare_manage(["check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert result.returncode != 0
    assert "security.W004" in result.stderr and "security.W008" in result.stderr


@pytest.mark.parametrize("key", [None, "", "dev-only-insecure-key-change-me", "short-key"])
def test_settings_refuse_a_missing_or_public_key_without_debug(tmp_path, key):
    env = {k: v for k, v in documented_env().items() if k != "SECRET_KEY"}
    if key is not None:
        env["SECRET_KEY"] = key
    result = bare_manage(["check"], env, tmp_path)
    assert result.returncode != 0
    assert "ImproperlyConfigured: SECRET_KEY must be" in result.stderr


def test_debug_runs_on_the_dev_key_and_setup_key_file_is_used(tmp_path):
    assert bare_manage(["check"], {"DEBUG": "true"}, tmp_path).returncode == 0
    # What `make setup` writes: with it, DEBUG off starts without SECRET_KEY in the env.
    (tmp_path / "secret-key").write_text(secrets.token_urlsafe(50) + "\n")
    shown = bare_manage(
        ["shell", "-c", "from django.conf import settings; print(settings.SECRET_KEY)"],
        {}, tmp_path)
    assert shown.stdout.strip().splitlines()[-1] == (tmp_path / "secret-key").read_text().strip()


def test_a_bad_value_stops_start_up_with_its_name(tmp_path):
    result = bare_manage(["check"], {"DEBUG": "true", "SECURE_HSTS_SECONDS": "a year"}, tmp_path)
    assert result.returncode != 0
    assert "SECURE_HSTS_SECONDS must be a whole number, got 'a year'" in result.stderr


def test_healthz_is_exempt_from_the_https_redirect(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    assert client.get("/healthz").status_code == 200
    login = client.get("/login/")
    assert login.status_code == 301 and login["Location"] == "https://testserver/login/"


def test_every_middleware_is_async_capable_so_no_request_queues_for_a_thread():
    """One sync-only middleware makes Django run the chain above it on the single thread
    for thread-sensitive code: under ASGI every request (push streams too) would queue there."""
    from django.conf import settings as django_settings
    from django.utils.module_loading import import_string

    sync_only = [m for m in django_settings.MIDDLEWARE
                 if not getattr(import_string(m), "async_capable", False)]
    assert sync_only == []


def test_static_files_are_served_under_asgi(db):
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    async def fetch():
        return await AsyncClient().get("/static/js/app.js")

    response = async_to_sync(fetch)()
    assert response.status_code == 200
    body = b"".join(response.streaming_content) if response.streaming else response.content
    assert b"tracerail" in body


def test_djangos_middleware_runs_on_the_loop_and_a_session_save_keeps_its_thread(
        db, monkeypatch, agent):
    """Session, common, authentication and messages middleware run their hooks on the
    event loop (no thread hop each); saving a changed session still happens on a thread,
    and the login it belongs to works."""
    import threading

    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    from cases.web import middleware
    from tests.conftest import PASSWORD

    where: list[tuple[str, bool]] = []
    for cls in (middleware.SessionMiddleware, middleware.CommonMiddleware,
                middleware.AuthenticationMiddleware, middleware.MessageMiddleware):
        for hook in ("process_request", "process_response"):
            real = getattr(cls, hook, None)
            if real is None:
                continue

            def spy(self, *args, _real=real, _name=f"{cls.__name__}.{hook}"):
                where.append((_name, threading.current_thread() is loop_thread[0]))
                return _real(self, *args)

            monkeypatch.setattr(cls, hook, spy)
    loop_thread: list[threading.Thread] = []

    async def visit():
        loop_thread.append(threading.current_thread())
        client = AsyncClient()
        page = await client.get("/login/")
        where.append(("-- login", True))
        login = await client.post("/login/", {"username": agent.username,
                                               "password": PASSWORD})
        return page, login

    page, login = async_to_sync(visit)()
    assert page.status_code == 200 and login.status_code == 302
    split = where.index(("-- login", True))
    before, after = where[:split], where[split + 1:]
    assert len(before) == 7 and all(on_loop for _, on_loop in before), before
    # The login changed the session: only its save went to a thread.
    assert [name for name, on_loop in after if not on_loop] == [
        "SessionMiddleware.process_response"]
    assert "sessionid" in login.cookies


def test_requests_borrow_their_thread_and_give_it_back(monkeypatch):
    """Under ASGI each request's synchronous part runs on a thread of a reused pool, one
    request at a time per thread, instead of two new threads per request."""
    import asyncio
    import threading

    from asgiref.sync import async_to_sync

    from cases.config import reading as config
    from tracerail.asgi import application

    ran_on: list[int] = []
    real = config.resolve

    def resolve(request):
        ran_on.append(threading.get_ident())
        return real(request)

    monkeypatch.setattr(config, "resolve", resolve)

    async def get(path: str) -> int:
        sent: list[dict] = []
        asked, done = [], asyncio.Event()

        async def receive() -> dict:
            if not asked:
                asked.append(1)
                return {"type": "http.request", "body": b"", "more_body": False}
            await done.wait()  # then the client goes, as a browser does
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                done.set()

        await application({"type": "http", "method": "GET", "path": path, "query_string": b"",
                           "headers": [(b"host", b"testserver")], "scheme": "http",
                           "server": ("testserver", 80), "client": ("127.0.0.1", 1)},
                          receive, send)
        return sent[0]["status"]

    async def visits() -> list[int]:
        one = [await get("/healthz") for _ in range(3)]  # one after another: one thread
        together = await asyncio.gather(*(get("/healthz") for _ in range(3)))
        return one + list(together)

    assert async_to_sync(visits)() == [200] * 6
    assert len(set(ran_on[:3])) == 1 and threading.get_ident() not in ran_on
    assert len(set(ran_on[3:])) == 3  # at once: a thread each, the first one reused
    assert ran_on[0] in ran_on[3:]
