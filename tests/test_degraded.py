"""Degraded, never broken: worker down and Temporal down, each answered within 2 s."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cases import temporal as gateway
from cases.temporal.ids import new_case_id
from workers.model import NewCase

from .conftest import TEMPORAL_BIN, eventually, free_port, run

# The pages promise an answer within 2 s; these bounds check that promise, they do not
# measure speed (bench/ does).
BUDGET = 2.0


class Throwaway:
    """A dev server of its own that a test may stop and start again (state kept on disk)."""

    def __init__(self, db_file: Path) -> None:
        self.port = free_port()
        self.db_file = db_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [TEMPORAL_BIN, "server", "start-dev", "--headless", "--ip", "127.0.0.1",
             "--port", str(self.port), "--db-filename", str(self.db_file),
             "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.1)
        raise RuntimeError("throwaway dev server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def throwaway(tmp_path, settings, temporal) -> Iterator[Throwaway]:
    server = Throwaway(tmp_path / "temporal.db")
    server.start()
    settings.TEMPORAL_ADDRESS = server.address
    gateway.reset_client()

    def ready() -> None:
        try:
            run(gateway.setup_namespace(1))
        except Exception as err:  # the server may still be booting its namespace
            raise AssertionError(err) from err

    eventually(ready, timeout=30, interval=0.3)
    try:
        yield server
    finally:
        server.stop()
        settings.TEMPORAL_ADDRESS = temporal.address
        gateway.reset_client()


def _timed_get(client, url: str, **headers: str):
    started = time.monotonic()
    response = client.get(url, **headers)
    return response, time.monotonic() - started


def test_temporal_going_down_is_a_503_within_budget_and_recovers(throwaway, agent_client):
    assert agent_client.get("/cases/").status_code == 200  # connected and working
    throwaway.stop()
    for url in ("/cases/", "/cases/case-00000000/", "/cases/?status=new&q=refund"):
        response, elapsed = _timed_get(agent_client, url)
        assert response.status_code == 503, url
        assert b"Temporal is not answering" in response.content
        assert elapsed < BUDGET, (url, elapsed)
    throwaway.start()

    def recovered() -> None:
        assert agent_client.get("/cases/").status_code == 200

    eventually(recovered, timeout=30, interval=0.3)


def test_worker_down_case_page_is_degraded_within_budget(throwaway, agent_client, settings):
    # Nothing polls the throwaway server's task queue: every Query waits for a worker.
    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(title="Waiting for a worker", queue="technical"),
                           "intake"))
    response, elapsed = _timed_get(agent_client, f"/cases/{case_id}/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Live details are unavailable" in content
    assert "Waiting for a worker" in content  # the header, from Temporal's own records
    assert "/claim/" not in content  # actions disabled
    assert elapsed < BUDGET, elapsed
    # A pushed refresh of the open page (it may share a Query) degrades the same way.
    response, elapsed = _timed_get(agent_client, f"/cases/{case_id}/?since=1",
                                   HTTP_HX_REQUEST="true", HTTP_HX_TARGET="case")
    assert response.status_code == 200 and elapsed < BUDGET, elapsed
    assert "Live details are unavailable" in response.content.decode()
    # The list still works without a worker: it is Visibility.
    eventually(lambda: _assert_in(case_id, agent_client.get("/cases/").content.decode()))


def _assert_in(needle: str, haystack: str) -> None:
    assert needle in haystack


def test_unregistered_attributes_say_what_to_do(tmp_path, settings, agent_client, temporal):
    server = Throwaway(tmp_path / "bare.db")
    server.start()
    settings.TEMPORAL_ADDRESS = server.address
    gateway.reset_client()
    try:
        def answered() -> bytes:
            response = agent_client.get("/cases/")
            assert response.status_code == 503
            return response.content

        content = eventually(answered, timeout=30, interval=0.3)
        assert b"temporal_setup" in content
    finally:
        server.stop()
        settings.TEMPORAL_ADDRESS = temporal.address
        gateway.reset_client()


def test_htmx_requests_get_the_503_message_in_place(agent_client, settings, temporal):
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"
    gateway.reset_client()
    try:
        response = agent_client.get("/cases/?q=x", HTTP_HX_REQUEST="true",
                                    HTTP_HX_CURRENT_URL="http://testserver/cases/?q=x")
        assert response.status_code == 503
        assert response["HX-Retarget"] == "main" and response["HX-Reswap"] == "innerHTML"
        content = response.content.decode()
        assert content.lstrip().startswith('<section class="error-page"')
        assert 'href="http://testserver/cases/?q=x"' in content
    finally:
        settings.TEMPORAL_ADDRESS = temporal.address
        gateway.reset_client()


def test_action_without_worker_keeps_what_was_typed(agent_client, settings, temporal):
    settings.TEMPORAL_TASK_QUEUE = "nobody-polls-this-queue"
    settings.TEMPORAL_QUERY_TIMEOUT = 0.5
    settings.TEMPORAL_UPDATE_TIMEOUT = 0.5
    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(title="No worker", queue="technical"), "intake"))
    response = agent_client.post(f"/cases/{case_id}/comment/",
                                 {"comment-body": "A long careful answer"},
                                 HTTP_HX_REQUEST="true")
    content = response.content.decode()
    assert response.status_code == 200
    assert "did not answer in time" in content
    assert "<textarea readonly" in content and "A long careful answer" in content
