"""Cases as Visibility lists them: List and Count within the deployment's budget, page tokens
as text, and each row decoded field by field (any client can write a workflow of this type,
so nothing a row holds may make it unreadable as a whole)."""

from __future__ import annotations

import base64
import binascii
import json
import logging
from datetime import UTC, datetime
from typing import Any

from cachetools import LRUCache
from django.conf import settings
from temporalio.api.enums.v1 import WorkflowExecutionStatus
from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import (
    CountWorkflowExecutionsRequest,
    ListWorkflowExecutionsRequest,
)
from temporalio.service import RPCError, RPCStatusCode

from cases.store import budget
from cases.temporal.client import get_client, rpc_timeout, unavailable
from cases.temporal.timing import timed
from cases.temporal.types import (
    CasePage,
    CaseRow,
    GatewayError,
    TemporalUnavailable,
    VisibilityBusy,
)
from workers.search_attributes import CORE_KEYS, ROW_MEMO_KEY

logger = logging.getLogger(__name__)


async def _slot(priority: bool = False) -> None:
    """A slot in the deployment's Visibility budget (cases/store/budget.py); a page that gets
    none in time hears why, as a 503."""
    try:
        await budget.acquire(priority)
    except budget.NoSlot as err:
        raise VisibilityBusy(
            f"Temporal is answering this deployment's other screens first (its Visibility "
            f"limit is {settings.VISIBILITY_RPS:g} calls a second) and this page waited "
            f"{err.waited:.0f} s; try again in a moment.") from err


@timed
async def list_cases(query: str, page_size: int, page_token: str | None = None, *,
                     priority: bool = False) -> CasePage:
    """A page of cases, within the Visibility budget, asked now (shared, feed-checked
    answers are cases/live/answers.py's). `priority`: the change feed's poll."""
    await _slot(priority)
    return await _list_cases(query, page_size, page_token)


@timed
async def count_cases(query: str) -> int:
    await _slot()
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
                next_page_token=decode_token(page_token),
                query=query,
            ),
            timeout=rpc_timeout(),
        )
    except RPCError as err:
        raise _visibility_error(err, query) from err
    return CasePage(
        rows=[decode_row(info) for info in resp.executions],
        next_page_token=encode_token(resp.next_page_token),
    )


async def _count_cases(query: str) -> int:
    client = await get_client()
    try:
        resp = await client.workflow_service.count_workflow_executions(
            CountWorkflowExecutionsRequest(namespace=client.namespace, query=query),
            timeout=rpc_timeout(),
        )
    except RPCError as err:
        raise _visibility_error(err, query) from err
    return int(resp.count)


def encode_token(token: bytes) -> str | None:
    """A Visibility cursor as URL-safe text for the next-page link."""
    return base64.urlsafe_b64encode(token).decode() if token else None


def decode_token(token: str | None) -> bytes:
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


def decode_row(info: WorkflowExecutionInfo) -> CaseRow:
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
        at_risk=sa.read("CaseAtRisk", _flag, False),
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
_reported: LRUCache[tuple[str, str, tuple[str, ...]], None] = LRUCache(maxsize=1000)


def _warn_unreadable(row: CaseRow) -> None:
    key = (row.case_id, row.run_id, row.unreadable)
    if key in _reported:
        return
    _reported[key] = None
    logger.warning("case row %s (run %s): unreadable %s, shown as their defaults",
                   row.case_id, row.run_id, ", ".join(row.unreadable))


_CORE_NAMES = frozenset(k.name for k in CORE_KEYS)


def _visibility_error(err: RPCError, query: str) -> GatewayError:
    if err.status == RPCStatusCode.INVALID_ARGUMENT:
        # The builder only writes valid syntax, so this means the namespace is not set up
        # (e.g. a fresh cluster without the case search attributes).
        return TemporalUnavailable(
            "Temporal refused the case list query; are the case search attributes "
            f"registered (python manage.py temporal_setup)? Temporal said: {err.message}"
        )
    return unavailable(err)
