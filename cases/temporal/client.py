"""The process's Temporal client, how its errors read, and waiting for a cluster to be ready.

The other modules of this package take their client, timeouts and error mapping from here, so
"unreachable means 503" is decided in one place.
"""

from __future__ import annotations

import asyncio
import logging
import os
from datetime import timedelta
from typing import Any

from django.conf import settings
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import (
    CountWorkflowExecutionsRequest,
    DescribeNamespaceRequest,
    DescribeTaskQueueRequest,
    GetSystemInfoRequest,
)
from temporalio.client import Client
from temporalio.envconfig import ClientConfig
from temporalio.service import RetryConfig, RPCError, RPCStatusCode

from cases.temporal.types import (
    GatewayError,
    TemporalRefused,
    TemporalUnavailable,
    WorkerUnavailable,
)
from workers.search_attributes import CORE_KEYS

_client: Client | None = None
_client_pid: int | None = None


logger = logging.getLogger(__name__)

def rpc_timeout(seconds: float | None = None) -> timedelta:
    return timedelta(seconds=seconds if seconds is not None else settings.TEMPORAL_RPC_TIMEOUT)


async def get_client() -> Client:
    """The process's client. Never created at import time: a client made before a fork
    (gunicorn --preload) would share a connection across processes."""
    global _client, _client_pid
    if _client is not None and _client_pid == os.getpid():
        return _client
    config = ClientConfig.load_client_connect_config()
    config["target_host"] = settings.TEMPORAL_ADDRESS
    config["namespace"] = settings.TEMPORAL_NAMESPACE
    try:
        client = await Client.connect(
            **config,
            connect_timeout=rpc_timeout(2.0),
            # Fail fast: a page should say "Temporal is down" in seconds, not retry for ten.
            retry_config=RetryConfig(
                initial_interval_millis=50, max_retries=3, max_elapsed_time_millis=1500
            ),
        )
    except Exception as err:  # the SDK raises RuntimeError for connect failures
        logger.info("temporal: connecting to %s failed: %s", settings.TEMPORAL_ADDRESS, err)
        raise TemporalUnavailable(
            f"Cannot reach Temporal at {settings.TEMPORAL_ADDRESS}: {connect_words(err)}."
        ) from err
    _client, _client_pid = client, os.getpid()
    return client


# The connect error is the Rust transport's debug text (tonic::transport::Error(Transport,
# ConnectError(... Os { code: 111, ... }))): pages, 503s and waiting commands say its cause
# in words instead, and the log keeps the text.
_CONNECT_CAUSES = (
    ("connection refused", "nothing is listening there (connection refused)"),
    ("timed out", "it did not answer in time"),
    ("deadline", "it did not answer in time"),
    ("dns error", "the host name does not resolve"),
    ("failed to lookup", "the host name does not resolve"),
    ("certificate", "its TLS certificate was not accepted"),
    (" tls", "the TLS handshake failed"),  # a word ("invalid TLS ..."), not inside one
    ("connection reset", "the connection was reset"),
)


def connect_words(err: BaseException) -> str:
    """Why a connection to Temporal failed, as a person would say it."""
    text = str(err)
    lowered = text.lower()
    for needle, words in _CONNECT_CAUSES:
        if needle in lowered:
            return words
    first = text.split("tonic::", 1)[0].strip().rstrip(":").strip()
    return (first or "the connection failed")[:200]


def reset_client() -> None:
    global _client, _client_pid
    _client, _client_pid = None, None


def unavailable(err: RPCError) -> TemporalUnavailable:
    if err.status == RPCStatusCode.RESOURCE_EXHAUSTED:
        return TemporalUnavailable(
            "Temporal is rate-limiting requests right now; try again in a few seconds."
        )
    return TemporalUnavailable(f"Temporal did not answer ({err.status.name}): {err.message}")


# What a cluster says while it is starting, overloaded or briefly away; anything else (a bad
# request, a refusal, a missing case) is an answer and is not retried.
_TRANSIENT = frozenset({
    RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.ABORTED, RPCStatusCode.CANCELLED,
})


def mapped(err: RPCError) -> GatewayError:
    """An RPC error as the project's own: worth retrying (TemporalUnavailable) or an answer
    (TemporalRefused), for calls whose refusals need no wording of their own."""
    if err.status in _TRANSIENT:
        return unavailable(err)
    return TemporalRefused(f"Temporal refused ({err.status.name}): {err.message}")


async def ping() -> None:
    """Is the cluster answering? A cheap call outside the Visibility budget."""
    client = await get_client()
    try:
        await client.workflow_service.get_system_info(GetSystemInfoRequest(),
                                                      timeout=rpc_timeout())
    except RPCError as err:
        raise unavailable(err) from err


async def wait_until_reachable(
    timeout_seconds: float,
    *,
    need_core_attributes: bool = False,
    count_query: str | None = None,
    worker_task_queue: str | None = None,
    on_wait: Any = None,
) -> None:
    """Poll until the cluster answers, its namespace is served, and (if asked) the core
    attributes are registered, Visibility answers `count_query`, and a worker polls
    `worker_task_queue`; used by commands that start next to a booting server.

    A freshly started dev server on a busy machine answers its first calls slowly, so each
    probe gets a longer timeout than a page would (growing from 2 s to 10 s). `on_wait(reason)`
    hears each new reason for waiting. Raises TemporalUnavailable naming the last reason.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    per_call = 2.0
    said = ""
    while True:
        left = max(0.5, deadline - loop.time())
        limit = rpc_timeout(min(per_call, left))
        try:
            client = await get_client()
            await client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=limit)
            await client.workflow_service.describe_namespace(
                DescribeNamespaceRequest(namespace=client.namespace), timeout=limit
            )
            if need_core_attributes:
                found = await client.operator_service.list_search_attributes(
                    ListSearchAttributesRequest(namespace=client.namespace), timeout=limit
                )
                missing = [k.name for k in CORE_KEYS if k.name not in found.custom_attributes]
                if missing:
                    raise TemporalUnavailable(
                        f"case search attributes not registered yet: {', '.join(missing)}"
                    )
            if count_query is not None:
                await client.workflow_service.count_workflow_executions(
                    CountWorkflowExecutionsRequest(namespace=client.namespace, query=count_query),
                    timeout=limit,
                )
            if worker_task_queue is not None:
                desc = await client.workflow_service.describe_task_queue(
                    DescribeTaskQueueRequest(
                        namespace=client.namespace,
                        task_queue=TaskQueue(name=worker_task_queue),
                        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
                    ),
                    timeout=limit,
                )
                if not desc.pollers:
                    raise TemporalUnavailable(
                        f"no worker polls task queue {worker_task_queue!r} yet"
                    )
            return
        except (TemporalUnavailable, RPCError) as err:
            if isinstance(err, RPCError):
                reason = f"{err.status.name}: {err.message}"
                reset_client()
                per_call = min(per_call * 2, 10.0)
            else:
                reason = err.message
            if loop.time() > deadline:
                raise TemporalUnavailable(
                    f"Temporal at {settings.TEMPORAL_ADDRESS} not ready after "
                    f"{timeout_seconds:g} s: {reason}"
                ) from err
            if on_wait is not None and reason != said:
                on_wait(reason)
            said = reason
            await asyncio.sleep(0.5)


# --- riding out a booting or busy cluster (commands only) --------------------------------------


def is_transient(err: BaseException) -> bool:
    """Would the same call, repeated a little later, likely succeed?"""
    if isinstance(err, TemporalUnavailable | WorkerUnavailable):
        return True
    return isinstance(err, RPCError) and err.status in _TRANSIENT


async def retry_transient(call: Any, *, budget_seconds: float, on_retry: Any = None) -> Any:
    """Await `call()` until it succeeds, retrying transient failures (is_transient) with
    backoff for up to `budget_seconds`, then re-raising the last one. Only for calls that are
    safe to repeat (an idempotent setup step, a start with a fixed id, an Update with a fixed
    id). `on_retry(err)` hears each failure that will be retried."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget_seconds
    pause = 0.25
    while True:
        try:
            return await call()
        except Exception as err:
            if not is_transient(err) or loop.time() + pause > deadline:
                raise
            if on_retry is not None:
                on_retry(err)
        await asyncio.sleep(pause)
        pause = min(pause * 2, 4.0)
