"""Rules for custom case attributes (Temporal search attributes an admin registers).

Pure: names, types and the per-type limits of SQL visibility. Talking to Temporal is the
gateway's job; the admin (cases/admin.py) puts the two together.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

from django.core.exceptions import ValidationError

from workers.model import CORE_ATTRIBUTES, SEARCH_ATTRIBUTE_TYPES

# Custom search attributes a namespace may hold per type on SQL visibility (the server's
# pre-allocated columns). The core case attributes count against these too.
SQL_LIMITS: dict[str, int] = {t: 10 if t == "Keyword" else 3 for t in SEARCH_ATTRIBUTE_TYPES}


# Temporal's system search attributes and the internal fields the server refuses as names.
# Anything starting with "Temporal" is reserved as well (RESERVED_PREFIX); the admin also
# checks the live server's own system list, which grows with server versions.
RESERVED_NAMES: frozenset[str] = frozenset({
    "BatcherNamespace", "BatcherUser", "BinaryChecksums", "BuildIds", "CloseTime",
    "ExecutionDuration", "ExecutionStatus", "ExecutionTime", "HistoryLength",
    "HistorySizeBytes", "ParentRunId", "ParentWorkflowId", "RootRunId", "RootWorkflowId",
    "RunId", "StartTime", "StateTransitionCount", "TaskQueue", "WorkflowId", "WorkflowType",
    "TemporalChangeVersion", "TemporalExternalPayloadCount",
    "TemporalExternalPayloadSizeBytes", "TemporalNamespaceDivision", "TemporalPauseInfo",
    "TemporalReportedProblems", "TemporalSchedulePaused", "TemporalScheduledById",
    "TemporalScheduledStartTime", "TemporalUsedWorkerDeploymentVersions",
    "TemporalWorkerDeployment", "TemporalWorkerDeploymentVersion",
    "TemporalWorkflowVersioningBehavior",
    # Internal visibility fields the server refuses ("reserved by system").
    "NamespaceId", "Memo", "MemoEncoding", "VisibilityTaskKey",
})
RESERVED_PREFIX = "Temporal"
MAX_NAME_LENGTH = 64
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
_BAD_CHAR_RE = re.compile(r"[^A-Za-z0-9_]")


def _clash(name: str, names: Iterable[str]) -> str | None:
    folded = name.casefold()
    return next((n for n in names if n.casefold() == folded), None)


def validate_name(name: str, also_reserved: Iterable[str] = ()) -> None:
    """Raise ValidationError unless `name` is a usable custom search attribute name.

    Temporal's rules (starts with a letter; letters, digits and underscores; at most 64
    characters; the "Temporal" prefix is the server's), and no clash, in any letter case, with
    a system attribute (RESERVED_NAMES plus `also_reserved`, e.g. the live server's list) or a
    core case attribute.
    """
    name = name or ""
    if not name:
        raise ValidationError("Enter a name.", code="required")
    if len(name) > MAX_NAME_LENGTH:
        raise ValidationError(
            f"A search attribute name may have at most {MAX_NAME_LENGTH} characters "
            f"(this one has {len(name)}).", code="too_long")
    if not name[0].isascii() or not name[0].isalpha():
        raise ValidationError("A search attribute name must start with a letter.",
                              code="first_char")
    if not _NAME_RE.fullmatch(name):
        bad = sorted(set(_BAD_CHAR_RE.findall(name)))
        shown = ", ".join("space" if c == " " else repr(c) for c in bad)
        raise ValidationError(
            f"Use only letters, digits and underscores; not allowed here: {shown}.",
            code="invalid_chars")
    if name.casefold().startswith(RESERVED_PREFIX.casefold()):
        raise ValidationError(
            f"Names starting with “{RESERVED_PREFIX}” are reserved by Temporal.",
            code="reserved_prefix")
    system = _clash(name, [*RESERVED_NAMES, *also_reserved])
    if system:
        raise ValidationError(
            f"“{name}” is taken by Temporal's system attribute {system}; pick another name.",
            code="system")
    core = _clash(name, CORE_ATTRIBUTES)
    if core:
        raise ValidationError(
            f"“{name}” is taken by the core case attribute {core}; pick another name.",
            code="core")


def used(custom_in_temporal: dict[str, str]) -> dict[str, int]:
    """How many custom attributes of each type the namespace holds (core included)."""
    counts = Counter(custom_in_temporal.values())
    return {t: counts.get(t, 0) for t in SQL_LIMITS}


def remaining(custom_in_temporal: dict[str, str]) -> dict[str, int]:
    """Free slots per type: SQL visibility's limits minus what the namespace already uses
    (the core case attributes are custom attributes to Temporal, so they count)."""
    in_use = used(custom_in_temporal)
    return {t: max(0, limit - in_use[t]) for t, limit in SQL_LIMITS.items()}


def check_capacity(to_add: dict[str, str], custom_in_temporal: dict[str, str]) -> list[str]:
    """Readable reasons why registering `to_add` ({name: type}) would exceed a type's limit;
    empty if it fits. Names Temporal already has take no new slot."""
    free = remaining(custom_in_temporal)
    wanted: dict[str, list[str]] = {}
    for name, type_name in to_add.items():
        if name not in custom_in_temporal:
            wanted.setdefault(type_name, []).append(name)
    reasons = []
    for type_name, names in wanted.items():
        limit = SQL_LIMITS.get(type_name)
        if limit is None:
            reasons.append(f"{', '.join(sorted(names))}: Temporal has no type “{type_name}”.")
            continue
        if len(names) > free[type_name]:
            left = free[type_name]
            reasons.append(
                f"Cannot register {len(names)} {type_name} attribute"
                f"{'s' if len(names) != 1 else ''} ({', '.join(sorted(names))}): "
                f"{'only ' if left else ''}{left} of {limit} {type_name} slots "
                f"{'is' if left == 1 else 'are'} left on SQL visibility."
            )
    return reasons
