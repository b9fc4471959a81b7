"""The single door to Temporal.

Owns one Client per process (created on first use, recreated after a fork), bounds every call
with a timeout, maps Temporal errors onto a few exceptions the views understand, and hands out
plain dataclasses. Nothing else in the web tier imports temporalio.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import logging
import os
import random
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from django.conf import settings
from google.protobuf.duration_pb2 import Duration
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import (
    ArchivalState,
    IndexedValueType,
    ResourceExhaustedCause,
    WorkflowExecutionStatus,
)
from temporalio.api.errordetails.v1 import ResourceExhaustedFailure
from temporalio.api.namespace.v1 import NamespaceConfig
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
    RemoveSearchAttributesRequest,
)
from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import (
    CountWorkflowExecutionsRequest,
    DescribeNamespaceRequest,
    DescribeWorkflowExecutionRequest,
    GetSystemInfoRequest,
    ListArchivedWorkflowExecutionsRequest,
    ListWorkflowExecutionsRequest,
    UpdateNamespaceRequest,
)
from temporalio.client import (
    Client,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
)
from temporalio.common import (
    QueryRejectCondition,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.envconfig import ClientConfig
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RetryConfig, RPCError, RPCStatusCode

from cases import store
from workers import rules
from workers.model import (
    CaseInput,
    CaseState,
    Command,
    NewCase,
    SlaPolicy,
)
from workers.projection import Entry as Entry  # re-exported for the views
from workers.projection import Projection, project
from workers.search_attributes import (
    CORE_KEYS,
    ROW_MEMO_KEY,
    initial_search_attributes,
    row_memo,
)

logger = logging.getLogger(__name__)

WORKFLOW_TYPE = "Case"

UPDATE_NAMES: dict[type[Command], str] = {r.command: n for n, r in rules.COMMANDS.items()}


# --- what the views get ----------------------------------------------------------------------


class GatewayError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TemporalUnavailable(GatewayError):
    """The cluster did not answer in time: pages say so with a 503."""


class WorkerUnavailable(GatewayError):
    """Temporal answered but no worker did: live details and actions are unavailable."""


class CaseNotFound(GatewayError):
    pass


class CaseCompleted(GatewayError):
    """The case's workflow has ended: it answers no Query; read it from its history."""


class CaseUnreadable(GatewayError):
    """The workflow's history is not one the case workflow wrote (another client started a
    workflow of its type with an input of its own): there is no case state in it to read."""


class CaseExists(GatewayError):
    pass


class CaseBusy(GatewayError):
    """So many Updates were in flight on the case that this one got no turn within
    TEMPORAL_UPDATE_TIMEOUT. The case never accepted it, so nothing was applied; sending it
    again (same or new update id) is safe."""


class ActionRefused(GatewayError):
    """The workflow's validator (or its handler) refused the command; nothing was applied."""

    def __init__(self, message: str, field: str = "", stale: bool = False) -> None:
        super().__init__(message)
        self.field = field
        self.stale = stale


@dataclass
class CaseRow:
    """A case as Visibility knows it: enough for a list row or a degraded header."""

    case_id: str
    title: str
    status: str
    priority: int | None
    queue: str
    assignee: str | None
    tags: list[str]
    due_at: datetime | None
    updated_at: datetime | None
    sla_breached: bool
    started_at: datetime | None
    execution_status: str
    requester: str = ""
    version: int | None = None
    comments: int = 0
    run_id: str = ""
    closed_at: datetime | None = None
    # Other search attributes on the case (admin-registered ones among them), raw JSON values.
    attributes: dict[str, Any] = field(default_factory=dict)
    # Fields any client wrote in a type or shape this row could not read (shown as their
    # defaults): Temporal names, e.g. "CaseTags" or "row.version".
    unreadable: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        # The case page's path, without reversing a URL per row of a 50-row page.
        return f"{_case_url_prefix()}{self.case_id}/"

    @classmethod
    def from_state(cls, state: CaseState) -> CaseRow:
        """The row an Update's result implies, to refresh a list without re-reading it."""
        return cls(
            case_id=state.case_id, title=state.title, status=state.status,
            priority=state.priority, queue=state.queue, assignee=state.assignee,
            tags=list(state.tags), due_at=state.due_at, updated_at=state.updated_at,
            sla_breached=state.sla_breached, started_at=state.created_at,
            execution_status="completed" if state.status == "closed" else "running",
            requester=state.requester.name or state.requester.email,
            version=state.version, comments=len(state.comments),
            attributes={k: v.value for k, v in state.attributes.items()},
        )


@cache
def _case_url_prefix() -> str:
    from django.urls import reverse

    return reverse("cases:detail", args=["case-00000000"]).removesuffix("case-00000000/")


@dataclass
class CasePage:
    rows: list[CaseRow]
    next_page_token: str | None = None


@dataclass
class SetupReport:
    added: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    retention_days: int = 0


# --- the client --------------------------------------------------------------------------------

_client: Client | None = None
_client_pid: int | None = None


def _timeout(seconds: float | None = None) -> timedelta:
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
            connect_timeout=_timeout(2.0),
            # Fail fast: a page should say "Temporal is down" in seconds, not retry for ten.
            retry_config=RetryConfig(
                initial_interval_millis=50, max_retries=3, max_elapsed_time_millis=1500
            ),
        )
    except Exception as err:  # the SDK raises RuntimeError for connect failures
        raise TemporalUnavailable(
            f"Cannot reach Temporal at {settings.TEMPORAL_ADDRESS}: {err}"
        ) from err
    _client, _client_pid = client, os.getpid()
    return client


def reset_client() -> None:
    global _client, _client_pid
    _client, _client_pid = None, None


def _unavailable(err: RPCError) -> TemporalUnavailable:
    if err.status == RPCStatusCode.RESOURCE_EXHAUSTED:
        return TemporalUnavailable(
            "Temporal is rate-limiting requests right now; try again in a few seconds."
        )
    return TemporalUnavailable(f"Temporal did not answer ({err.status.name}): {err.message}")


def _visibility_error(err: RPCError, query: str) -> GatewayError:
    if err.status == RPCStatusCode.INVALID_ARGUMENT:
        # The builder only writes valid syntax, so this means the namespace is not set up
        # (e.g. a fresh cluster without the case search attributes).
        return TemporalUnavailable(
            "Temporal refused the case list query; are the case search attributes "
            f"registered (python manage.py temporal_setup)? Temporal said: {err.message}"
        )
    return _unavailable(err)


# --- writes ------------------------------------------------------------------------------------


def sla_policy() -> SlaPolicy:
    return SlaPolicy(seconds_by_priority=list(settings.CASE_SLA_SECONDS))


async def start_case(case_id: str, new: NewCase, actor: str) -> str:
    """Start the case's workflow. The id doubles as an idempotency key: starting the same id
    twice raises CaseExists rather than opening a second case."""
    client = await get_client()
    # The workflow computes the authoritative state; this preview only seeds Visibility.
    preview = rules.open_case(case_id, new, actor, sla_policy(), datetime.now(UTC))
    try:
        await client.start_workflow(
            WORKFLOW_TYPE,
            CaseInput(
                case_id=case_id,
                actor=actor,
                new=new,
                sla=sla_policy(),
                auto_close_seconds=settings.CASE_AUTO_CLOSE_SECONDS,
            ),
            id=case_id,
            task_queue=settings.TEMPORAL_TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=initial_search_attributes(preview),
            memo={ROW_MEMO_KEY: row_memo(preview)},
            static_summary=new.title[:200],
            rpc_timeout=_timeout(),
        )
    except WorkflowAlreadyStartedError as err:
        raise CaseExists(f"{case_id} already exists.") from err
    except RPCError as err:
        raise _unavailable(err) from err
    return case_id


async def act(case_id: str, command: Command, update_id: str | None = None) -> CaseState:
    """Send one command as a workflow Update and return the state it produced.

    `update_id` makes retries idempotent: Temporal returns the first outcome for a repeated id.
    """
    client = await get_client()
    handle = client.get_workflow_handle(case_id)
    try:
        result = await _update_in_turn(handle, UPDATE_NAMES[type(command)], command, update_id)
    except WorkflowUpdateFailedError as err:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            details = cause.details
            fld = details[0] if details and isinstance(details[0], str) else ""
            if cause.type == "NotFound":
                raise CaseNotFound(f"No case {case_id}.") from err
            raise ActionRefused(cause.message, fld, stale=cause.type == "Stale") from err
        raise ActionRefused(str(cause or err)) from err
    except WorkflowUpdateRPCTimeoutOrCancelledError as err:
        raise WorkerUnavailable(
            "The case did not answer in time; the action may still be applied when its "
            "worker is back. Reload the case before trying again."
        ) from err
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            # Either no such case or its workflow has completed (closed cases take no actions).
            if await _exists(client, case_id):
                raise ActionRefused("This case is closed.") from err
            raise CaseNotFound(f"No case {case_id}.") from err
        raise _unavailable(err) from err
    return result


# --- taking turns on a busy case -------------------------------------------------------------
# Temporal admits at most 10 Updates in flight per workflow run (history.maxInFlightUpdates) and
# refuses the next. A refusal is not harmless: the server then drops the case's cached state,
# aborting the Updates it had admitted but not yet accepted ("workflow update was aborted"),
# so a crowd that keeps overshooting the limit makes almost no progress. Each process therefore
# lets at most TEMPORAL_UPDATES_PER_CASE of its Updates into a case at once and halves that
# after each refusal (other processes, API or bulk work share the 10) until the case is idle
# here again: growing back would only find the limit again by being refused. A refused Update
# waits a jittered, growing pause and queues again under the same update id, which Temporal
# deduplicates, so no retry can apply a change twice.

BUSY_MESSAGE = ("Many people are changing this case right now; nothing was applied. "
                "Your text is below; send it again.")
_BACKOFF_FIRST = 0.05
_BACKOFF_MAX = 1.0
# Waiting for a turn may use this share of TEMPORAL_UPDATE_TIMEOUT; the Update itself keeps
# the rest, so a turn that came late is not reported as a case that did not answer.
_TURN_SHARE = 0.75


class _Turns:
    """One case's turns in this process: a FIFO gate whose width adapts to refusals."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.active = 0
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.holders = 0  # waiting or holding; at zero the entry goes, so idle cases cost nothing
        # Bumped by every cut: refusals of attempts sent before it carry no news.
        self.round = 0

    async def acquire(self) -> None:
        if self.active < self.width and not self.waiters:
            self.active += 1
            return
        turn = asyncio.get_running_loop().create_future()
        self.waiters.append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self.release()  # handed a turn just as the wait ended
            elif turn in self.waiters:
                self.waiters.remove(turn)
            raise

    def release(self) -> None:
        self.active -= 1
        while self.waiters and self.active < self.width:
            turn = self.waiters.popleft()
            if not turn.done():
                self.active += 1
                turn.set_result(None)

    def refused(self, sent_in: int) -> None:
        if sent_in == self.round:
            self.round += 1
            self.width = max(1, self.width // 2)


_turns: dict[tuple[int, str], _Turns] = {}


@asynccontextmanager
async def _case_turn(case_id: str, last_start: float) -> AsyncIterator[_Turns | None]:
    """A turn on the case, or CaseBusy when none comes by `last_start` (loop time)."""
    ceiling = settings.TEMPORAL_UPDATES_PER_CASE
    if ceiling <= 0:
        yield None
        return
    # Keyed by loop too: futures belong to the loop that waits on them.
    key = (id(asyncio.get_running_loop()), case_id)
    turns = _turns.get(key)
    if turns is None:
        turns = _turns[key] = _Turns(ceiling)
    turns.holders += 1
    try:
        try:
            async with asyncio.timeout_at(last_start):
                await turns.acquire()
        except TimeoutError:
            raise CaseBusy(BUSY_MESSAGE) from None
        try:
            yield turns
        finally:
            turns.release()
    finally:
        turns.holders -= 1
        if turns.holders == 0:
            del _turns[key]


def _no_turn(err: RPCError) -> bool:
    """Whether the case turned the Update away only for the Updates in flight on it; it was
    not accepted, so sending it again under the same id is safe."""
    if err.status == RPCStatusCode.UNAVAILABLE:
        # Dropped by the server with the case's cached state (see above), to be sent again.
        return err.message.lower().rstrip(".") == "workflow update was aborted"
    if err.status != RPCStatusCode.RESOURCE_EXHAUSTED:
        return False
    for detail in err.grpc_status.details:
        failure = ResourceExhaustedFailure()
        if detail.Unpack(failure):
            # The same cause covers the in-flight payload size limit, which drains alike.
            return failure.cause == ResourceExhaustedCause.RESOURCE_EXHAUSTED_CAUSE_CONCURRENT_LIMIT
    return "in-flight updates" in err.message


async def _update_in_turn(handle: WorkflowHandle[Any, Any], name: str, command: Command,
                          update_id: str | None) -> CaseState:
    """The Update, sent once the case has room for it, all within TEMPORAL_UPDATE_TIMEOUT."""
    budget = settings.TEMPORAL_UPDATE_TIMEOUT
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    last_start = deadline - budget * (1 - _TURN_SHARE)
    # Chosen before the first attempt: every retry must name the same Update.
    update_id = update_id or str(uuid.uuid4())
    for attempt in itertools.count():
        async with _case_turn(handle.id, last_start) as turns:
            sent_in = turns.round if turns else 0
            remaining = deadline - loop.time()
            if remaining < 0.05:
                # A loaded process got its turn past the deadline: not sent, nothing applied.
                raise CaseBusy(BUSY_MESSAGE)
            try:
                result: CaseState = await handle.execute_update(
                    name,
                    command,
                    id=update_id,
                    result_type=CaseState,
                    rpc_timeout=timedelta(seconds=remaining),
                )
            except RPCError as err:
                if not _no_turn(err):
                    raise
                if turns:
                    turns.refused(sent_in)
                refusal = err
            else:
                return result
        now = loop.time()
        if now >= last_start:
            raise CaseBusy(BUSY_MESSAGE) from refusal
        pause = random.uniform(0, min(_BACKOFF_MAX, _BACKOFF_FIRST * 2**attempt))
        await asyncio.sleep(min(pause, last_start - now))
    raise AssertionError("unreachable")


# --- reads ---------------------------------------------------------------------------------


async def get_case(case_id: str) -> CaseState:
    """The live case, answered by its workflow (a Query). Raises WorkerUnavailable when
    Temporal knows the case but no worker answers within the query timeout, and
    CaseCompleted when its workflow has ended (see case_history)."""
    client = await get_client()
    handle = client.get_workflow_handle(case_id)
    try:
        state: CaseState = await handle.query(
            "get_case",
            result_type=CaseState,
            # A completed case is refused by the server at once, with no worker involved
            # (a Query on it would make a worker replay its whole history).
            reject_condition=QueryRejectCondition.NOT_OPEN,
            rpc_timeout=_timeout(settings.TEMPORAL_QUERY_TIMEOUT),
        )
        return state
    except WorkflowQueryRejectedError as err:
        raise CaseCompleted(f"{case_id} has ended; its history tells the rest.") from err
    except WorkflowQueryFailedError as err:
        raise WorkerUnavailable(f"The case could not answer: {err.message}") from err
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise CaseNotFound(f"No case {case_id}.") from err
        if err.status in (RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.CANCELLED):
            # A query waits for a worker; tell "no worker" apart from "no Temporal".
            await describe_case(case_id)
            raise WorkerUnavailable(
                "No worker answered for this case; live details and actions are unavailable."
            ) from err
        raise _unavailable(err) from err


async def describe_case(case_id: str) -> CaseRow:
    """What Temporal itself knows about a case; needs no worker."""
    client = await get_client()
    return _row(await _describe(client, case_id))


async def _describe(client: Client, case_id: str) -> WorkflowExecutionInfo:
    try:
        resp = await client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=client.namespace, execution=WorkflowExecution(workflow_id=case_id)
            ),
            timeout=_timeout(),
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise CaseNotFound(f"No case {case_id}.") from err
        raise _unavailable(err) from err
    return resp.workflow_execution_info


async def _exists(client: Client, case_id: str) -> bool:
    try:
        await describe_case(case_id)
    except CaseNotFound:
        return False
    return True


# --- the Visibility budget ---------------------------------------------------------------------
# Visibility is rate-limited per namespace (30 calls/s on Temporal Cloud, shared by every reader;
# 10-30 self-hosted). Every List and Count this deployment makes takes a slot in one budget kept
# in the shared store (Redis in production), so N web processes and the change feed together
# stay within VISIBILITY_RPS; callers wait for a slot instead of being refused by the cluster.
# Answers are shared and kept fresh by cases/live/answers.py and the change feed.


class VisibilityBusy(TemporalUnavailable):
    """No slot in the Visibility budget within VISIBILITY_WAIT_SECONDS."""


def _busy(waited: float) -> VisibilityBusy:
    return VisibilityBusy(
        f"Temporal is answering this deployment's other screens first (its Visibility limit is "
        f"{settings.VISIBILITY_RPS:g} calls a second) and this page waited {waited:.0f} s; "
        f"try again in a moment.")


class _Budget:
    """A fixed one-second window per deployment: at most VISIBILITY_RPS calls in each, of
    which pages take all but one: the change feed's poll (`priority`), which keeps every
    screen fresh, is never starved by page reads. A page waits at most
    VISIBILITY_WAIT_SECONDS for a slot, then raises VisibilityBusy (a 503 that says so)."""

    async def acquire(self, priority: bool = False) -> None:
        rate = settings.VISIBILITY_RPS
        if rate <= 0:
            return
        limit = rate if priority or rate < 2 else rate - 1
        shared = store.shared()
        started = time.time()
        give_up = started + settings.VISIBILITY_WAIT_SECONDS
        while True:
            now = time.time()
            window = int(now)
            key = f"vis:budget:{window}"
            try:
                shared.add(key, 0, timeout=5)
                used = shared.incr(key)
                if used > limit and not priority:
                    shared.decr(key)  # not taken: the feed's slot stays free
            except Exception:  # the store away: fall back to this process's own share
                return await _local.acquire(None if priority else give_up)
            if used <= limit:
                return
            # Spread the ones that wait over the next window instead of all at its start.
            wake = window + 1 + random.uniform(0, 0.2)
            if not priority and wake > give_up:
                raise _busy(now - started)
            await asyncio.sleep(wake - now)


class _RateLimiter:
    """A token bucket for this process alone: used only while the shared store is away."""

    def __init__(self) -> None:
        self.tokens = 0.0
        self.stamp: float | None = None

    async def acquire(self, give_up: float | None = None) -> None:
        rate = settings.VISIBILITY_RPS
        if rate <= 0:
            return
        loop = asyncio.get_running_loop()
        started = time.time()
        while True:
            now = loop.time()
            if self.stamp is None:
                self.stamp, self.tokens = now, float(rate)
            self.tokens = min(float(rate), self.tokens + (now - self.stamp) * rate)
            self.stamp = now
            if self.tokens >= 1:
                self.tokens -= 1
                return
            wait = (1 - self.tokens) / rate
            if give_up is not None and time.time() + wait > give_up:
                raise _busy(time.time() - started)
            await asyncio.sleep(wait)


_local = _RateLimiter()
_limiter = _Budget()


async def list_cases(query: str, page_size: int, page_token: str | None = None, *,
                     priority: bool = False) -> CasePage:
    """A page of cases, within the Visibility budget, asked now (shared, feed-checked
    answers are cases/live/answers.py's). `priority`: the change feed's poll."""
    await _limiter.acquire(priority)
    return await _list_cases(query, page_size, page_token)


async def count_cases(query: str) -> int:
    await _limiter.acquire()
    return await _count_cases(query)


async def _list_cases(query: str, page_size: int, page_token: str | None = None) -> CasePage:
    """One page of cases from Visibility.

    Uses the raw RPC and decodes only the fields a row needs: the SDK's list_workflows builds
    a rich object per row, which costs more than the RPC itself at 50 rows.
    """
    client = await get_client()
    try:
        resp = await client.workflow_service.list_workflow_executions(
            ListWorkflowExecutionsRequest(
                namespace=client.namespace,
                page_size=page_size,
                next_page_token=_decode_token(page_token),
                query=query,
            ),
            timeout=_timeout(),
        )
    except RPCError as err:
        raise _visibility_error(err, query) from err
    return CasePage(
        rows=[_row(info) for info in resp.executions],
        next_page_token=_encode_token(resp.next_page_token),
    )


async def _count_cases(query: str) -> int:
    client = await get_client()
    try:
        resp = await client.workflow_service.count_workflow_executions(
            CountWorkflowExecutionsRequest(namespace=client.namespace, query=query),
            timeout=_timeout(),
        )
    except RPCError as err:
        raise _visibility_error(err, query) from err
    return int(resp.count)


def _encode_token(token: bytes) -> str | None:
    """A Visibility cursor as URL-safe text for the next-page link."""
    return base64.urlsafe_b64encode(token).decode() if token else None


def _decode_token(token: str | None) -> bytes:
    if not token:
        return b""
    try:
        return base64.urlsafe_b64decode(token.encode())
    except (binascii.Error, ValueError):
        return b""


# A payload present but not JSON (another encoding, or nested deeper than the parser goes):
# unreadable rather than absent, so the row can say so.
_UNREADABLE: Any = object()


def _json(payload: Any) -> Any:
    try:
        return json.loads(payload.data) if payload.data else None
    except (ValueError, RecursionError):
        return _UNREADABLE


def _datetime(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        # In UTC, so rows compare with each other and with the feed's watermark; Temporal
        # writes UTC, so a value without an offset is read as UTC.
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    except (ValueError, OverflowError):  # not a date, or one past the calendar in UTC
        return None


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _whole(value: Any) -> int | None:
    # Some JSON writers send 3.0 for 3; true is not a number here.
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _flag(value: Any) -> bool | None:
    return value if isinstance(value, bool) else None


class _Fields:
    """One row's values (decoded search attributes, or the row memo), read field by field:
    a value of the wrong type or shape is the field's default, and its name is noted."""

    def __init__(self, values: dict[str, Any], bad: list[str], prefix: str = "") -> None:
        self.values, self.bad, self.prefix = values, bad, prefix

    def read(self, key: str, read: Any, default: Any) -> Any:
        value = self.values.get(key)
        if value is None:
            return default
        out = None if value is _UNREADABLE else read(value)
        if out is None:
            self.bad.append(self.prefix + key)
            return default
        return out

    def keywords(self, key: str) -> list[str]:
        value = self.values.get(key)
        if value is None:
            return []
        if isinstance(value, str):
            return [value]  # a lone keyword where a list belongs: one tag, not its letters
        if isinstance(value, list):
            words = [v for v in value if isinstance(v, str)]
            if len(words) < len(value):
                self.bad.append(self.prefix + key)  # shown: the words that are words
            return words
        self.bad.append(self.prefix + key)
        return []


def _time(info: WorkflowExecutionInfo, name: str, label: str, bad: list[str]
          ) -> datetime | None:
    if not info.HasField(name):
        return None
    try:
        return getattr(info, name).ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError):
        bad.append(label)
        return None


def _execution_status(info: WorkflowExecutionInfo, bad: list[str]) -> str:
    try:
        name = WorkflowExecutionStatus.Name(info.status)
    except ValueError:  # a status newer than this SDK
        bad.append("ExecutionStatus")
        return "unknown"
    return name.removeprefix("WORKFLOW_EXECUTION_STATUS_").lower()


def _row(info: WorkflowExecutionInfo) -> CaseRow:
    """A Visibility row as a CaseRow. Any client can start a workflow of this type with any
    memo and search attributes, so nothing here may raise on what a row holds: a field that
    cannot be read is its default, named in `unreadable` and in one log line."""
    bad: list[str] = []
    sa_values = {k: _json(v) for k, v in info.search_attributes.indexed_fields.items()}
    sa = _Fields(sa_values, bad)
    memo_payload = info.memo.fields.get(ROW_MEMO_KEY)
    memo_value = _json(memo_payload) if memo_payload is not None else None
    if memo_value is not None and not isinstance(memo_value, dict):
        bad.append(ROW_MEMO_KEY)
        memo_value = None
    memo = _Fields(memo_value or {}, bad, f"{ROW_MEMO_KEY}.")
    attributes: dict[str, Any] = {}
    for name, value in sa_values.items():
        if name in _CORE_NAMES:
            continue
        if value is _UNREADABLE:
            bad.append(name)
            value = None
        attributes[name] = value
    row = CaseRow(
        case_id=info.execution.workflow_id,
        title=sa.read("CaseTitle", _text, ""),
        status=sa.read("CaseStatus", _text, "new") or "new",
        priority=sa.read("CasePriority", _whole, None),
        queue=sa.read("CaseQueue", _text, ""),
        assignee=sa.read("CaseAssignee", _text, None) or None,
        tags=sa.keywords("CaseTags"),
        due_at=sa.read("CaseDueAt", _datetime, None),
        updated_at=sa.read("CaseUpdatedAt", _datetime, None),
        sla_breached=sa.read("CaseSlaBreached", _flag, False),
        started_at=_time(info, "start_time", "StartTime", bad),
        execution_status=_execution_status(info, bad),
        requester=memo.read("requester", _text, ""),
        version=memo.read("version", _whole, None),
        comments=memo.read("comments", _whole, 0),
        attributes=attributes,
        run_id=info.execution.run_id,
        closed_at=_time(info, "close_time", "CloseTime", bad),
        unreadable=tuple(bad),
    )
    if bad:
        _warn_unreadable(row)
    return row


# Rows already reported by this process: a list refreshed by many people, or the feed's
# overlap, reads the same bad row again and again, and one line says it.
_reported: OrderedDict[tuple[str, str, tuple[str, ...]], None] = OrderedDict()
_REPORTED_MAX = 1000


def _warn_unreadable(row: CaseRow) -> None:
    key = (row.case_id, row.run_id, row.unreadable)
    if key in _reported:
        return
    _reported[key] = None
    while len(_reported) > _REPORTED_MAX:
        _reported.popitem(last=False)
    logger.warning("case row %s (run %s): unreadable %s, shown as their defaults",
                   row.case_id, row.run_id, ", ".join(row.unreadable))


_CORE_NAMES = frozenset(k.name for k in CORE_KEYS)


# --- namespace setup ---------------------------------------------------------------------------

async def setup_namespace(retention_days: int) -> SetupReport:
    """Register the core case search attributes and set retention. Safe to run repeatedly."""
    client = await get_client()
    report = SetupReport(retention_days=retention_days)
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=client.namespace), timeout=_timeout(10)
    )
    wanted: dict[str, IndexedValueType.ValueType] = {}
    for key in CORE_KEYS:
        if key.name in existing.custom_attributes:
            report.present.append(key.name)
        else:
            wanted[key.name] = IndexedValueType.ValueType(int(key.indexed_value_type))
    if wanted:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=wanted),
            timeout=_timeout(30),
        )
        report.added.extend(wanted)
    desc = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace), timeout=_timeout(10)
    )
    current = desc.config.workflow_execution_retention_ttl.seconds
    if current != retention_days * 86400:
        await client.workflow_service.update_namespace(
            UpdateNamespaceRequest(
                namespace=client.namespace,
                config=NamespaceConfig(
                    workflow_execution_retention_ttl=Duration(seconds=retention_days * 86400)
                ),
            ),
            timeout=_timeout(10),
        )
    return report


async def ping() -> None:
    """Is the cluster answering? A cheap call outside the Visibility budget."""
    client = await get_client()
    try:
        await client.workflow_service.get_system_info(GetSystemInfoRequest(), timeout=_timeout())
    except RPCError as err:
        raise _unavailable(err) from err


# --- history: the timeline, time travel and completed cases -----------------------------------

# A case continues as new every few thousand events; this many runs is years of work.
MAX_RUNS = 50


@dataclass
class CaseHistory:
    projection: Projection
    # Each run's raw history in Temporal's proto-JSON form (WorkflowHistory.to_json_dict, which
    # the SDK's Replayer reads back), oldest run first.
    raw: list[dict[str, Any]]


async def _histories(client: Client, case_id: str, run_id: str | None
                     ) -> list[tuple[str, WorkflowHistory]]:
    """The case's runs, oldest first: the latest one (or `run_id`) and, through each run's
    start event, the ones it continued from. By run id, GetWorkflowExecutionHistory is served
    from the archive once retention has passed, on a cluster with history archival."""
    if run_id is None:
        run_id = (await _describe(client, case_id)).execution.run_id
    runs: list[tuple[str, WorkflowHistory]] = []
    while run_id and len(runs) < MAX_RUNS:
        handle = client.get_workflow_handle(case_id, run_id=run_id)
        try:
            history = await handle.fetch_history(rpc_timeout=_timeout(5))
        except RPCError as err:
            # NOT_FOUND, or INVALID_ARGUMENT "may have passed retention period" when the
            # cluster reads archives but this namespace has none (a malformed run id too).
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                if not runs:
                    raise CaseNotFound(f"No case {case_id}.") from err
                break  # an earlier run past retention, not archived: project what is left
            raise _unavailable(err) from err
        runs.append((run_id, history))
        first = history.events[0] if history.events else None
        run_id = first.workflow_execution_started_event_attributes.continued_execution_run_id \
            if first is not None else ""
    runs.reverse()
    return runs


async def case_history(case_id: str, run_id: str | None = None, *,
                       raw: bool = False) -> CaseHistory:
    """The case rebuilt from its event history by the workflow's own rules: every entry of
    its timeline and the state right after it. Needs no worker. `raw` adds the JSON."""
    client = await get_client()
    runs = await _histories(client, case_id, run_id)
    try:
        projection = project(case_id, ((rid, h.events) for rid, h in runs),
                             client.data_converter.payload_converter)
    except Exception as err:  # the payloads of a history are any starter's data
        logger.warning("case %s: its history cannot be read as a case's (%s: %s)",
                       case_id, type(err).__name__, err)
        raise CaseUnreadable(f"{case_id} was not started as a case; its history cannot be "
                             "read.") from err
    return CaseHistory(projection, [
        {"runId": rid, **h.to_json_dict()} for rid, h in runs] if raw else [])


# --- completed cases in the archive ------------------------------------------------------------


@dataclass
class ArchivalStatus:
    namespace: str
    retention_days: float
    history: bool
    visibility: bool
    history_uri: str = ""
    visibility_uri: str = ""


class ArchivalNotConfigured(GatewayError):
    pass


class ArchiveQueryRefused(GatewayError):
    pass


# How the frontend says there is no archive to search (service/frontend/errors.go).
_NO_ARCHIVE = ("not configured for visibility archival",
               "not configured for reading archived visibility")


async def archival_status() -> ArchivalStatus:
    client = await get_client()
    try:
        desc = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=client.namespace), timeout=_timeout())
    except RPCError as err:
        raise _unavailable(err) from err
    config = desc.config
    return ArchivalStatus(
        namespace=client.namespace,
        retention_days=config.workflow_execution_retention_ttl.seconds / 86400,
        history=config.history_archival_state == ArchivalState.ARCHIVAL_STATE_ENABLED,
        visibility=config.visibility_archival_state == ArchivalState.ARCHIVAL_STATE_ENABLED,
        history_uri=config.history_archival_uri,
        visibility_uri=config.visibility_archival_uri,
    )


async def list_archived(query: str, page_size: int, page_token: str | None = None) -> CasePage:
    """ListArchivedWorkflowExecutions: closed runs found in the visibility archive."""
    client = await get_client()
    try:
        resp = await client.workflow_service.list_archived_workflow_executions(
            ListArchivedWorkflowExecutionsRequest(
                namespace=client.namespace, page_size=page_size, query=query,
                next_page_token=_decode_token(page_token)),
            timeout=_timeout(10))
    except RPCError as err:
        if err.status == RPCStatusCode.UNIMPLEMENTED or any(
                text in err.message for text in _NO_ARCHIVE):
            raise ArchivalNotConfigured(f"Archival is not available: {err.message}") from err
        if err.status == RPCStatusCode.INVALID_ARGUMENT:
            raise ArchiveQueryRefused(f"The archive refused the search: {err.message}"
                                      ) from err
        raise _unavailable(err) from err
    return CasePage([_row(info) for info in resp.executions],
                    _encode_token(resp.next_page_token))


# --- the search-attribute registry ------------------------------------------------------------

ATTRIBUTE_TYPES: dict[str, IndexedValueType.ValueType] = {
    "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    "Text": IndexedValueType.INDEXED_VALUE_TYPE_TEXT,
    "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    "Double": IndexedValueType.INDEXED_VALUE_TYPE_DOUBLE,
    "Bool": IndexedValueType.INDEXED_VALUE_TYPE_BOOL,
    "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
    "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}
_TYPE_NAMES = {v: k for k, v in ATTRIBUTE_TYPES.items()}


@dataclass
class NamespaceAttributes:
    custom: dict[str, str]  # name -> type name ("Keyword", ...)
    system: dict[str, str]


async def namespace_attributes() -> NamespaceAttributes:
    """The namespace's search attributes, as Temporal reports them."""
    client = await get_client()
    try:
        resp = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace), timeout=_timeout(5)
        )
    except RPCError as err:
        raise _unavailable(err) from err
    return NamespaceAttributes(
        custom={k: _TYPE_NAMES.get(v, str(v)) for k, v in resp.custom_attributes.items()},
        system={k: _TYPE_NAMES.get(v, str(v)) for k, v in resp.system_attributes.items()},
    )


class AttributeRegistrationError(GatewayError):
    pass


async def register_attributes(attributes: dict[str, str]) -> None:
    """AddSearchAttributes for {name: type name}; Temporal's refusals become readable text."""
    client = await get_client()
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(
                namespace=client.namespace,
                search_attributes={n: ATTRIBUTE_TYPES[t] for n, t in attributes.items()},
            ),
            timeout=_timeout(30),
        )
    except RPCError as err:
        if err.status in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.ALREADY_EXISTS,
                          RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.PERMISSION_DENIED):
            raise AttributeRegistrationError(f"Temporal refused: {err.message}") from err
        raise _unavailable(err) from err


async def remove_attributes(names: list[str]) -> None:
    client = await get_client()
    try:
        await client.operator_service.remove_search_attributes(
            RemoveSearchAttributesRequest(namespace=client.namespace, search_attributes=names),
            timeout=_timeout(30),
        )
    except RPCError as err:
        if err.status in (RPCStatusCode.INVALID_ARGUMENT, RPCStatusCode.NOT_FOUND,
                          RPCStatusCode.FAILED_PRECONDITION, RPCStatusCode.PERMISSION_DENIED):
            raise AttributeRegistrationError(f"Temporal refused: {err.message}") from err
        raise _unavailable(err) from err


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
    # Imported here so this change stays inside this function (gateway.py is shared work).
    from temporalio.api.enums.v1 import TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_seconds
    per_call = 2.0
    said = ""
    while True:
        left = max(0.5, deadline - loop.time())
        limit = _timeout(min(per_call, left))
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

# What a cluster says while it is starting, overloaded or briefly away; anything else (a bad
# request, a refusal, a missing case) is an answer and is not retried.
_TRANSIENT = frozenset({
    RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED, RPCStatusCode.RESOURCE_EXHAUSTED,
    RPCStatusCode.ABORTED, RPCStatusCode.CANCELLED,
})


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
