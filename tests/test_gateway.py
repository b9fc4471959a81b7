"""How the gateway fails: no worker, no Temporal, bad ids."""

from __future__ import annotations

import time

import pytest

from cases import temporal as gateway
from cases.temporal.ids import new_case_id
from workers.model import Claim, NewCase

from .conftest import run


@pytest.fixture
def no_worker_queue(settings, temporal):
    settings.TEMPORAL_TASK_QUEUE = "nobody-polls-this-queue"
    settings.TEMPORAL_QUERY_TIMEOUT = 1.0
    settings.TEMPORAL_UPDATE_TIMEOUT = 1.0


def test_query_without_worker_says_so_within_its_timeout(no_worker_queue):
    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(title="Orphan", queue="general"), "intake"))
    started = time.monotonic()
    with pytest.raises(gateway.WorkerUnavailable, match="No worker answered"):
        run(gateway.get_case(case_id))
    # Bounded by the configured rpc timeout, not the server's 30 s default.
    assert time.monotonic() - started < 10
    # describe() still knows the case without a worker.
    assert run(gateway.describe_case(case_id)).case_id == case_id


def test_update_without_worker_is_reported(no_worker_queue):
    case_id = new_case_id()
    run(gateway.start_case(case_id, NewCase(title="Orphan", queue="general"), "intake"))
    with pytest.raises(gateway.WorkerUnavailable, match="did not answer in time"):
        run(gateway.act(case_id, Claim(actor="alice")))


def test_unknown_case(temporal):
    with pytest.raises(gateway.CaseNotFound):
        run(gateway.get_case("case-00000000"))
    with pytest.raises(gateway.CaseNotFound):
        run(gateway.act("case-00000000", Claim(actor="alice")))


def test_start_same_id_twice_is_refused(temporal):
    case_id = new_case_id()
    new = NewCase(title="Once", queue="general")
    run(gateway.start_case(case_id, new, "intake"))
    with pytest.raises(gateway.CaseExists):
        run(gateway.start_case(case_id, new, "intake"))


@pytest.fixture
def temporal_down(settings, temporal):
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"  # nothing listens on port 1
    gateway.reset_client()
    yield
    settings.TEMPORAL_ADDRESS = temporal.address
    gateway.reset_client()


def test_unreachable_temporal_raises_temporal_unavailable(temporal_down):
    with pytest.raises(gateway.TemporalUnavailable, match="Cannot reach Temporal") as err:
        run(gateway.count_cases("WorkflowType = 'Case'"))
    # Said in words (pages and 503s show it), not the transport's debug text.
    assert err.value.message == ("Cannot reach Temporal at 127.0.0.1:1: nothing is listening "
                                 "there (connection refused).")


@pytest.mark.parametrize("raw, words", [
    ('Failed client connect: Server connection error: tonic::transport::Error(Transport, '
     'ConnectError(ConnectError("tcp connect error", 127.0.0.1:7391, Os { code: 111, kind: '
     'ConnectionRefused, message: "Connection refused" })))',
     "nothing is listening there (connection refused)"),
    ("Failed client connect: Server connection error: tonic::transport::Error(Transport, "
     "ConnectError(ConnectError(\"dns error\", Custom { kind: Uncategorized, error: "
     "\"failed to lookup address information\" })))", "the host name does not resolve"),
    ("Failed client connect: deadline has elapsed", "it did not answer in time"),
    ("Failed client connect: invalid TLS configuration: no root certificates",
     "its TLS certificate was not accepted"),
    ("Failed client connect: invalid TLS handshake", "the TLS handshake failed"),
    ("Failed client connect: Server connection error: tonic::transport::Error(Transport, "
     "hyper::Error(Io))", "Failed client connect: Server connection error"),
])
def test_a_failed_connection_is_said_in_words(raw, words):
    from cases.temporal.client import connect_words

    assert connect_words(RuntimeError(raw)) == words


def test_healthz(client, settings, temporal):
    assert client.get("/healthz").content == b"ok\n"
    assert client.get("/healthz?temporal=1").status_code == 200
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"
    gateway.reset_client()
    try:
        down = client.get("/healthz?temporal=1")
        assert down.status_code == 503 and b"temporal unavailable" in down.content
        assert client.get("/healthz").status_code == 200  # the web tier itself is fine
    finally:
        settings.TEMPORAL_ADDRESS = temporal.address
        gateway.reset_client()
