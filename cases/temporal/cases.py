"""One case at a time: start it, act on it (an Update, in its turn), read it (a Query), and
ask Temporal what it knows of it when no worker answers."""

from __future__ import annotations

from datetime import UTC, datetime

from django.conf import settings
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import DescribeWorkflowExecutionRequest
from temporalio.client import (
    Client,
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
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from cases.temporal.client import get_client, rpc_timeout, unavailable
from cases.temporal.rows import decode_row
from cases.temporal.timing import timed
from cases.temporal.turns import update_in_turn
from cases.temporal.types import (
    ActionRefused,
    CaseCompleted,
    CaseExists,
    CaseNotFound,
    CaseRow,
    WorkerUnavailable,
)
from workers import rules
from workers.model import CaseInput, CaseState, Command, NewCase, QueuePolicy
from workers.search_attributes import ROW_MEMO_KEY, initial_search_attributes, row_memo

WORKFLOW_TYPE = "Case"

UPDATE_NAMES: dict[type[Command], str] = {r.command: n for n, r in rules.COMMANDS.items()}


@timed
async def start_case(case_id: str, new: NewCase, actor: str,
                     policy: QueuePolicy | None = None) -> str:
    """Start the case's workflow. The id doubles as an idempotency key: starting the same id
    twice raises CaseExists rather than opening a second case. `policy` is what a case in
    its queue gets (cases.config.queue_policy); without it the case asks its queue."""
    client = await get_client()
    # The workflow computes the authoritative state; this preview only seeds Visibility.
    preview = rules.open_case(case_id, new, actor, (policy or QueuePolicy()).sla,
                              datetime.now(UTC), policy.case_types if policy else None)
    try:
        await client.start_workflow(
            WORKFLOW_TYPE,
            CaseInput(
                case_id=case_id,
                actor=actor,
                new=new,
                policy=policy,
                auto_close_seconds=settings.CASE_AUTO_CLOSE_SECONDS,
                notify_quiet_seconds=settings.NOTIFY_QUIET_SECONDS,
            ),
            id=case_id,
            task_queue=settings.TEMPORAL_TASK_QUEUE,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            search_attributes=initial_search_attributes(preview),
            memo={ROW_MEMO_KEY: row_memo(preview)},
            static_summary=new.title[:200],
            rpc_timeout=rpc_timeout(),
        )
    except WorkflowAlreadyStartedError as err:
        raise CaseExists(f"{case_id} already exists.") from err
    except RPCError as err:
        raise unavailable(err) from err
    return case_id


@timed
async def act(case_id: str, command: Command, update_id: str | None = None) -> CaseState:
    """Send one command as a workflow Update and return the state it produced.

    `update_id` makes retries idempotent: Temporal returns the first outcome for a repeated id.
    """
    client = await get_client()
    handle = client.get_workflow_handle(case_id)
    try:
        result = await update_in_turn(handle, UPDATE_NAMES[type(command)], command, update_id)
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
        raise unavailable(err) from err
    return result


@timed
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
            rpc_timeout=rpc_timeout(settings.TEMPORAL_QUERY_TIMEOUT),
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
        raise unavailable(err) from err


@timed
async def describe_case(case_id: str) -> CaseRow:
    """What Temporal itself knows about a case; needs no worker."""
    client = await get_client()
    return decode_row(await describe_execution(client, case_id))


async def describe_execution(client: Client, case_id: str) -> WorkflowExecutionInfo:
    try:
        resp = await client.workflow_service.describe_workflow_execution(
            DescribeWorkflowExecutionRequest(
                namespace=client.namespace, execution=WorkflowExecution(workflow_id=case_id)
            ),
            timeout=rpc_timeout(),
        )
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise CaseNotFound(f"No case {case_id}.") from err
        raise unavailable(err) from err
    return resp.workflow_execution_info


async def _exists(client: Client, case_id: str) -> bool:
    try:
        await describe_case(case_id)
    except CaseNotFound:
        return False
    return True
