"""The single door to Temporal: `from cases import temporal`, then `temporal.list_cases(...)`.

Owns one Client per process (created on first use, recreated after a fork), bounds every call
with a timeout, maps Temporal errors onto a few exceptions the views understand, and hands out
plain dataclasses. Nothing else in the application imports temporalio but workers/ (ruff's
TID251 in pyproject.toml enforces it; tests and benchmarks may, to compare with raw calls).

The package's modules, by concern:
  types      errors and dataclasses (no temporalio, no django.urls)
  client     the process's client, error mapping, readiness, retries for commands
  cases      start, act, Query, describe: one case at a time
  turns      Updates taking turns on a busy case
  rows       List and Count within the Visibility budget (cases/store/budget.py), row decoding
  namespace  setup and the search-attribute registry
  history    a case rebuilt from its event history
  archive    completed cases in the visibility archive
  timing     how long a request waited on Temporal (its Server-Timing header)

Only the errors and dataclasses load with the package; everything else loads on first use
(module __getattr__), so importing `cases.temporal.types`, or naming a CaseRow, costs no SDK.
Callers go through these attributes, so a test that replaces one (monkeypatch.setattr(temporal,
"list_cases", ...)) replaces it for every caller; functions the package calls internally are
patched where they are defined (e.g. cases.temporal.rows._count_cases).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cases.temporal.types import (
    ActionRefused,
    ArchivalNotConfigured,
    ArchivalStatus,
    ArchiveQueryRefused,
    AttributeRegistrationError,
    CaseBusy,
    CaseCompleted,
    CaseExists,
    CaseHistory,
    CaseNotFound,
    CasePage,
    CaseRow,
    CaseUnreadable,
    GatewayError,
    NamespaceAttributes,
    SetupReport,
    TemporalRefused,
    TemporalUnavailable,
    VisibilityBusy,
    WorkerUnavailable,
)

if TYPE_CHECKING:
    from cases.temporal.archive import archival_status, list_archived
    from cases.temporal.cases import (
        UPDATE_NAMES,
        WORKFLOW_TYPE,
        act,
        describe_case,
        get_case,
        start_case,
    )
    from cases.temporal.client import (
        get_client,
        is_transient,
        ping,
        reset_client,
        retry_transient,
        wait_until_reachable,
    )
    from cases.temporal.history import case_history, state_from_json, state_to_json
    from cases.temporal.namespace import (
        ATTRIBUTE_TYPES,
        namespace_attributes,
        register_attributes,
        remove_attributes,
        setup_namespace,
    )
    from cases.temporal.rows import count_cases, list_cases
    from workers.projection import Entry, Projection

# Where each lazily loaded name is defined.
_HOMES = {
    "cases.temporal.client": ("get_client", "reset_client", "ping", "wait_until_reachable",
                              "is_transient", "retry_transient"),
    "cases.temporal.cases": ("WORKFLOW_TYPE", "UPDATE_NAMES", "start_case", "act",
                             "get_case", "describe_case"),
    "cases.temporal.rows": ("list_cases", "count_cases"),
    "cases.temporal.namespace": ("setup_namespace", "ATTRIBUTE_TYPES", "namespace_attributes",
                                 "register_attributes", "remove_attributes"),
    "cases.temporal.history": ("case_history", "state_to_json", "state_from_json"),
    "cases.temporal.archive": ("archival_status", "list_archived"),
    # A history's timeline, as the pages that show it name it.
    "workers.projection": ("Entry", "Projection"),
}
_HOME_OF = {name: module for module, names in _HOMES.items() for name in names}

__all__ = [
    "ATTRIBUTE_TYPES",
    "UPDATE_NAMES",
    "WORKFLOW_TYPE",
    "ActionRefused",
    "ArchivalNotConfigured",
    "ArchivalStatus",
    "ArchiveQueryRefused",
    "AttributeRegistrationError",
    "CaseBusy",
    "CaseCompleted",
    "CaseExists",
    "CaseHistory",
    "CaseNotFound",
    "CasePage",
    "CaseRow",
    "CaseUnreadable",
    "Entry",
    "GatewayError",
    "NamespaceAttributes",
    "Projection",
    "SetupReport",
    "TemporalRefused",
    "TemporalUnavailable",
    "VisibilityBusy",
    "WorkerUnavailable",
    "act",
    "archival_status",
    "case_history",
    "count_cases",
    "describe_case",
    "get_case",
    "get_client",
    "is_transient",
    "list_archived",
    "list_cases",
    "namespace_attributes",
    "ping",
    "register_attributes",
    "remove_attributes",
    "reset_client",
    "retry_transient",
    "setup_namespace",
    "start_case",
    "state_from_json",
    "state_to_json",
    "wait_until_reachable",
]


def __getattr__(name: str) -> Any:
    module = _HOME_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # once: later reads (and a test's monkeypatch) see the attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
