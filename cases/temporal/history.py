"""A case from its event history: the timeline, time travel and completed cases, rebuilt by
the workflow's own rules (workers/projection.py). Needs no worker."""

from __future__ import annotations

import logging

from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from cases.temporal.cases import describe_execution
from cases.temporal.client import get_client, rpc_timeout, unavailable
from cases.temporal.types import CaseHistory, CaseNotFound, CaseUnreadable
from workers.model import CaseState
from workers.projection import project

logger = logging.getLogger(__name__)

# A case continues as new every few thousand events; this many runs is years of work.
MAX_RUNS = 50


async def _histories(client: Client, case_id: str, run_id: str | None
                     ) -> list[tuple[str, WorkflowHistory]]:
    """The case's runs, oldest first: the latest one (or `run_id`) and, through each run's
    start event, the ones it continued from. By run id, GetWorkflowExecutionHistory is served
    from the archive once retention has passed, on a cluster with history archival."""
    if run_id is None:
        run_id = (await describe_execution(client, case_id)).execution.run_id
    runs: list[tuple[str, WorkflowHistory]] = []
    while run_id and len(runs) < MAX_RUNS:
        handle = client.get_workflow_handle(case_id, run_id=run_id)
        try:
            history = await handle.fetch_history(rpc_timeout=rpc_timeout(5))
        except RPCError as err:
            # NOT_FOUND, or INVALID_ARGUMENT "may have passed retention period" when the
            # cluster reads archives but this namespace has none (a malformed run id too).
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
                if not runs:
                    raise CaseNotFound(f"No case {case_id}.") from err
                break  # an earlier run past retention, not archived: project what is left
            raise unavailable(err) from err
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
        if not projection.entries:
            # No run opened a case: its input was none of a case's, or refused by the rules.
            raise ValueError("no run of it opened a case")
    except Exception as err:  # the payloads of a history are any starter's data
        logger.warning("case %s: its history cannot be read as a case's (%s: %s)",
                       case_id, type(err).__name__, err)
        raise CaseUnreadable(f"{case_id} was not started as a case; its history cannot be "
                             "read.") from err
    return CaseHistory(projection, [
        {"runId": rid, **h.to_json_dict()} for rid, h in runs] if raw else [])


def state_to_json(state: CaseState) -> str:
    """A case's state as the payload converter writes it (the export keeps ended cases so)."""
    payload = DataConverter.default.payload_converter.to_payloads([state])[0]
    return payload.data.decode()


def state_from_json(text: str) -> CaseState:
    """The inverse of state_to_json; ValueError for text that is not a case's state."""
    payload = Payload(metadata={"encoding": b"json/plain"}, data=text.encode())
    try:
        return DataConverter.default.payload_converter.from_payloads([payload], [CaseState])[0]
    except Exception as err:  # the export is files anyone with the bucket could have written
        raise ValueError(f"not a case's state: {err}") from err
