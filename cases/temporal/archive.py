"""Completed cases past retention, in the visibility archive (on a cluster that keeps one)."""

from __future__ import annotations

from temporalio.api.enums.v1 import ArchivalState
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    ListArchivedWorkflowExecutionsRequest,
)
from temporalio.service import RPCError, RPCStatusCode

from cases.temporal.client import get_client, rpc_timeout, unavailable
from cases.temporal.rows import decode_row, decode_token, encode_token
from cases.temporal.types import (
    ArchivalNotConfigured,
    ArchivalStatus,
    ArchiveQueryRefused,
    CasePage,
)

# How the frontend says there is no archive to search (service/frontend/errors.go).
_NO_ARCHIVE = ("not configured for visibility archival",
               "not configured for reading archived visibility")


async def archival_status() -> ArchivalStatus:
    client = await get_client()
    try:
        desc = await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=client.namespace), timeout=rpc_timeout())
    except RPCError as err:
        raise unavailable(err) from err
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
                next_page_token=decode_token(page_token)),
            timeout=rpc_timeout(10))
    except RPCError as err:
        if err.status == RPCStatusCode.UNIMPLEMENTED or any(
                text in err.message for text in _NO_ARCHIVE):
            raise ArchivalNotConfigured(f"Archival is not available: {err.message}") from err
        if err.status == RPCStatusCode.INVALID_ARGUMENT:
            raise ArchiveQueryRefused(f"The archive refused the search: {err.message}"
                                      ) from err
        raise unavailable(err) from err
    return CasePage([decode_row(info) for info in resp.executions],
                    encode_token(resp.next_page_token))
