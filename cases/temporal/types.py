"""What the rest of the project gets from Temporal: the errors and the plain dataclasses.

Imports neither temporalio nor django.urls (tests/test_gateway_package.py checks it), so the
store's codecs, templates and any page can name a CaseRow or catch TemporalUnavailable
without loading the SDK.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from workers.model import CaseState

if TYPE_CHECKING:  # workers.projection reads histories, so it imports temporalio
    from workers.projection import Projection

# --- errors ------------------------------------------------------------------------------------


class GatewayError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class TemporalUnavailable(GatewayError):
    """The cluster did not answer in time: pages say so with a 503."""


class VisibilityBusy(TemporalUnavailable):
    """No slot in the deployment's Visibility budget within VISIBILITY_WAIT_SECONDS."""


class TemporalRefused(GatewayError):
    """Temporal answered with a refusal that asking again will not change (a bad request, a
    missing permission); commands report it rather than retry it."""


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


class ArchivalNotConfigured(GatewayError):
    pass


class ArchiveQueryRefused(GatewayError):
    pass


class AttributeRegistrationError(GatewayError):
    pass


# --- what a read returns -----------------------------------------------------------------------


@dataclass
class CaseRow:
    """A case as Visibility knows it: enough for a list row or a degraded header. Its page's
    address is the web tier's (cases/templatetags/case_tags.py case_url)."""

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
    at_risk: bool = False
    # Other search attributes on the case (admin-registered ones among them), raw JSON values.
    attributes: dict[str, Any] = field(default_factory=dict)
    # Fields any client wrote in a type or shape this row could not read (shown as their
    # defaults): Temporal names, e.g. "CaseTags" or "row.version".
    unreadable: tuple[str, ...] = ()

    @classmethod
    def from_state(cls, state: CaseState) -> CaseRow:
        """The row an Update's result implies, to refresh a list without re-reading it."""
        return cls(
            case_id=state.case_id, title=state.title, status=state.status,
            priority=state.priority, queue=state.queue, assignee=state.assignee,
            tags=list(state.tags), due_at=state.due_at, updated_at=state.updated_at,
            sla_breached=state.sla_breached, started_at=state.created_at,
            at_risk=state.at_risk and state.is_open,
            execution_status="completed" if state.status == "closed" else "running",
            requester=state.requester.name or state.requester.email,
            version=state.version, comments=len(state.comments),
            attributes={k: v.value for k, v in state.attributes.items()},
        )


@dataclass
class CasePage:
    rows: list[CaseRow]
    next_page_token: str | None = None


@dataclass
class CaseHistory:
    projection: Projection
    # Each run's raw history in Temporal's proto-JSON form (WorkflowHistory.to_json_dict, which
    # the SDK's Replayer reads back), oldest run first.
    raw: list[dict[str, Any]]


@dataclass
class SetupReport:
    added: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    retention_days: int = 0


@dataclass
class ArchivalStatus:
    namespace: str
    retention_days: float
    history: bool
    visibility: bool
    history_uri: str = ""
    visibility_uri: str = ""


@dataclass
class NamespaceAttributes:
    custom: dict[str, str]  # name -> type name ("Keyword", ...)
    system: dict[str, str]
