"""The Case's business rules as pure functions.

The workflow's validators and handlers both call `decide`, so what a validator accepts is
exactly what a handler applies, and the same code can rebuild a case from history.
Nothing here reads a clock: callers pass `now` (workflow.now() inside the workflow).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from . import business_hours
from .model import (
    CORE_ATTRIBUTES,
    OPEN_STATUSES,
    PRIORITY_LABELS,
    STATUS_LABELS,
    SYSTEM_ACTOR,
    AddComment,
    AddTag,
    ApplyMacro,
    Assign,
    Attach,
    Attachment,
    AttributeValue,
    Authority,
    CaseInput,
    CaseState,
    CaseTypeSpec,
    ChangeRequester,
    Claim,
    Close,
    Command,
    Comment,
    Delivered,
    FileRef,
    MacroChanges,
    NewCase,
    Notice,
    QueuePolicy,
    ReceiveMail,
    RemoveTag,
    Reopen,
    Requester,
    Resolve,
    SetAttributes,
    SetCaseType,
    SetDue,
    SetPriority,
    SetStatus,
    SlaPolicy,
    TypeField,
    Unwatch,
    Watch,
)

MAX_TITLE = 200
MAX_DESCRIPTION = 10_000
MAX_COMMENT = 10_000
MAX_RESOLUTION = 10_000
MAX_TAGS = 20
MAX_TAG = 40
MAX_NAME = 200
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
QUEUE_RE = re.compile(r"^[a-z][a-z0-9_\-]{0,39}$")
USERNAME_RE = re.compile(r"^[\w.@+\-]{1,150}$")
# "@name" not preceded by a word character (so an email address is no mention); a name
# ends on a word character, so "@bob." or "@bob," mention bob.
MENTION_RE = re.compile(r"(?<![\w@])@([\w](?:[\w.+\-@]*[\w])?)")
MAX_MENTIONS = 20
ATTRIBUTE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
CORE_ATTRIBUTE_NAMES = frozenset(CORE_ATTRIBUTES)
# Case ids: `case-` and eight Crockford base32 characters (no I, L, O, U).
CASE_ID_RE = re.compile(r"^case-[0-9A-HJKMNP-TV-Z]{8}$")
MAX_KEYWORD = 256
MAX_ATTRIBUTE_TEXT = 2000
# Files on a case (issue 23), by reference: each costs a few hundred bytes of the case's
# state, which every Query and continue-as-new carries.
MAX_ATTACHMENTS = 200
MAX_FILES_PER_COMMAND = 20
MAX_FILE_NAME = 255
MAX_CONTENT_TYPE = 100
# Far past ATTACHMENT_MAX_BYTES (a setting the rules cannot read): a bound on what a
# Temporal client may claim, not the upload limit.
MAX_FILE_SIZE = 2**40
SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
CONTENT_TYPE_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+\-]*/[a-z0-9][a-z0-9!#$&^_.+\-]*$")
ATTACHMENT_ID_RE = re.compile(r"^a([1-9][0-9]*)$")

# Statuses a person may pick directly; resolved and closed have their own commands.
STATUS_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("in_progress", "waiting"),
    "in_progress": ("waiting", "new"),
    "waiting": ("in_progress",),
    "resolved": (),
    "closed": (),
}


class RuleError(Exception):
    """A command that the case refuses; the message is shown to people as is."""

    kind = "Rejected"

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class StaleError(RuleError):
    kind = "Stale"


class NotVisibleError(RuleError):
    """The actor may not see this case at all; shown to people as "not found"."""

    kind = "NotFound"


@dataclass
class Effect:
    """What an accepted command changes, and what the timeline says of it."""

    kind: str
    detail: str = ""
    changes: dict[str, Any] = field(default_factory=dict)
    # A macro's parts (issue 25), in the order applied: what each would tell is told.
    parts: list[Effect] = field(default_factory=list)


# --- field validation shared by the workflow, the forms and the intake API ------------------


def clean_tag(tag: str) -> str:
    tag = tag.strip()
    if not tag:
        raise RuleError("A tag cannot be empty.", "tag")
    if len(tag) > MAX_TAG:
        raise RuleError(f"A tag has at most {MAX_TAG} characters.", "tag")
    if not TAG_RE.match(tag):
        raise RuleError(
            "A tag uses letters, digits, '-', '_' and '.', starting with a letter or digit.",
            "tag",
        )
    return tag


def validate_new_case(new: NewCase) -> None:
    if not new.title.strip():
        raise RuleError("A title is required.", "title")
    if len(new.title) > MAX_TITLE:
        raise RuleError(f"The title has at most {MAX_TITLE} characters.", "title")
    if len(new.description) > MAX_DESCRIPTION:
        raise RuleError(
            f"The description has at most {MAX_DESCRIPTION:,} characters.", "description"
        )
    if not QUEUE_RE.match(new.queue):
        raise RuleError("Choose a queue.", "queue")
    if new.priority not in (1, 2, 3, 4):
        raise RuleError("Priority is 1 (urgent) to 4 (low).", "priority")
    if len(new.requester_name) > MAX_NAME:
        raise RuleError(f"The name has at most {MAX_NAME} characters.", "requester_name")
    if new.requester_email and (
        len(new.requester_email) > MAX_NAME or not EMAIL_RE.match(new.requester_email)
    ):
        raise RuleError("Enter a valid email address.", "requester_email")
    if len(new.tags) > MAX_TAGS:
        raise RuleError(f"A case has at most {MAX_TAGS} tags.", "tags")
    if len(set(new.tags)) != len(new.tags):
        raise RuleError("Tags must be distinct.", "tags")
    for tag in new.tags:
        if clean_tag(tag) != tag:
            raise RuleError("Tags cannot have surrounding spaces.", "tags")
    if not isinstance(new.case_type, str) or (
            new.case_type and not TYPE_NAME_RE.match(new.case_type)):
        raise RuleError("Choose a case type.", "case_type")
    if new.follows and not CASE_ID_RE.match(new.follows):
        raise RuleError("A follow-up names the case it follows by its id.", "follows")
    if not isinstance(new.files, list) or len(new.files) > MAX_FILES_PER_COMMAND:
        raise RuleError(f"A case opens with at most {MAX_FILES_PER_COMMAND} files.", "files")
    for ref in new.files:
        problem = file_problem(ref)
        if problem:
            raise RuleError(problem, "files")


def clean_attribute(name: str, attr: AttributeValue) -> AttributeValue:
    """Validate a custom attribute's value by its type; returns it normalised."""
    if not ATTRIBUTE_NAME_RE.match(name) or name in CORE_ATTRIBUTE_NAMES:
        raise RuleError(f"{name!r} is not a custom attribute.", name)
    value, kind = attr.value, attr.type
    if value is None or value == "" or value == []:
        return AttributeValue(kind, None)
    if kind in ("Keyword", "Text"):
        limit = MAX_KEYWORD if kind == "Keyword" else MAX_ATTRIBUTE_TEXT
        if not isinstance(value, str) or len(value) > limit:
            raise RuleError(f"{name} takes text of at most {limit} characters.", name)
        if any(ord(ch) < 32 for ch in value):
            raise RuleError(f"{name} cannot contain control characters.", name)
        return AttributeValue(kind, value.strip())
    if kind == "Int":
        if isinstance(value, bool) or not isinstance(value, int) or abs(value) >= 2**63:
            raise RuleError(f"{name} takes a whole number.", name)
        return AttributeValue(kind, value)
    if kind == "Double":
        if isinstance(value, bool) or not isinstance(value, int | float) or value != value \
                or value in (float("inf"), float("-inf")):
            raise RuleError(f"{name} takes a number.", name)
        return AttributeValue(kind, float(value))
    if kind == "Bool":
        if not isinstance(value, bool):
            raise RuleError(f"{name} takes yes or no.", name)
        return AttributeValue(kind, value)
    if kind == "Datetime":
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError as err:
            raise RuleError(f"{name} takes a date and time.", name) from err
        if moment.tzinfo is None:
            raise RuleError(f"{name} needs a time zone.", name)
        return AttributeValue(kind, moment.isoformat())
    if kind == "KeywordList":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value) \
                or len(value) > MAX_TAGS:
            raise RuleError(f"{name} takes a list of at most {MAX_TAGS} values.", name)
        items = list(dict.fromkeys(v.strip() for v in value if v.strip()))
        if any(len(v) > MAX_KEYWORD or '"' in v or any(ord(c) < 32 for c in v)
               for v in items):
            raise RuleError(f"{name} values are short text without quotes.", name)
        return AttributeValue(kind, items or None)
    raise RuleError(f"{name} has an unknown type {kind!r}.", name)


def file_key(sha256: str) -> str:
    """Where the file store keeps the bytes of this SHA-256: the one derivation, so a FileRef
    from outside cannot point a case at another blob (or a path) than its hash names."""
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


def _shown(ch: str) -> bool:
    # Control and format characters (a right-to-left override makes "gpj.exe" read as
    # "exe.jpg") never belong in a name shown to people or put in a header.
    return unicodedata.category(ch) not in ("Cc", "Cf", "Zl", "Zp")


def clean_file_name(name: str) -> str:
    """A name as a FileRef may carry it: the last part of a path, without control or
    format characters, at most MAX_FILE_NAME characters keeping a short extension; "file"
    when nothing is left. A name from outside must equal its cleaned self (file_problem)."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(ch for ch in name if _shown(ch)).strip()
    if name in ("", ".", ".."):
        return "file"
    if len(name) > MAX_FILE_NAME:
        stem, dot, ext = name.rpartition(".")
        ext = ext[:20] if dot and stem else ""
        name = name[:MAX_FILE_NAME - len(ext) - 1].rstrip() + ("." + ext if ext else "")
    return name


def file_problem(ref: FileRef) -> str | None:
    """Why a FileRef from outside (any Temporal client, a mail) cannot be recorded, or None.
    Only its shape: whether the bytes exist is the store's business."""
    if not isinstance(ref, FileRef):
        return "A file is given by its stored reference."
    name = ref.name
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_FILE_NAME:
        return f"A file's name has 1 to {MAX_FILE_NAME} characters."
    if name != clean_file_name(name):
        return "A file's name has no path separators or control characters."
    if not _whole(ref.size, 0, MAX_FILE_SIZE):
        return "A file's size is a whole number of bytes."
    if not isinstance(ref.sha256, str) or not SHA256_RE.match(ref.sha256):
        return "A file's SHA-256 is 64 lowercase hexadecimal digits."
    if ref.key != file_key(ref.sha256):
        return "A file's key is the store's key for its SHA-256."
    if not isinstance(ref.content_type, str) or len(ref.content_type) > MAX_CONTENT_TYPE \
            or not CONTENT_TYPE_RE.match(ref.content_type):
        return "A file's type is a short media type (type/subtype)."
    return None


def new_attachments(state: CaseState, files: list[FileRef], by: str, now: datetime,
                    comment: int | None = None) -> list[Attachment]:
    """The attachments `files` become on this case: each checked (file_problem), numbered
    after the highest id the case ever gave (ids are in download URLs: never reused), within
    MAX_FILES_PER_COMMAND and MAX_ATTACHMENTS. Raises RuleError naming "files"."""
    if not isinstance(files, list):
        raise RuleError("Files come as a list.", "files")
    if len(files) > MAX_FILES_PER_COMMAND:
        raise RuleError(f"At most {MAX_FILES_PER_COMMAND} files at a time.", "files")
    if len(state.attachments) + len(files) > MAX_ATTACHMENTS:
        raise RuleError(f"A case has at most {MAX_ATTACHMENTS} files.", "files")
    for ref in files:
        problem = file_problem(ref)
        if problem:
            raise RuleError(problem, "files")
    last = max((int(m.group(1)) for m in (ATTACHMENT_ID_RE.match(a.id)
                                          for a in state.attachments) if m), default=0)
    return [Attachment(id=f"a{last + n}", file=ref, by=by, at=now, comment=comment)
            for n, ref in enumerate(files, start=1)]


def case_id_of(workflow_id: str) -> str:
    """A case is named by its workflow's own id, whatever id its input carries (any Temporal
    client can start one): the page, its forms and every Update address that id."""
    if not CASE_ID_RE.match(workflow_id):
        raise RuleError(f"{workflow_id!r} is not a case id (case- and eight letters or digits).")
    return workflow_id


# --- case types (issue 25) --------------------------------------------------------------------
# A queue's types come from its configuration (cases/config/case_types.py) in QueuePolicy, from
# the web or from the queue_policy activity, or from any Temporal client: their shape is
# checked (types_problem) before a case lives by them.
TYPE_NAME_RE = re.compile(r"^[a-z][a-z0-9_\-]{0,39}$")
MAX_TYPE_LABEL = 100
MAX_TYPE_FIELDS = 50
MAX_CASE_TYPES = 50
MAX_TYPE_VERSION = 2**31 - 1


def field_words(name: str) -> str:
    """An attribute's name as people say it: OrderNumber, order_number -> "Order number"."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ").strip()
    words = spaced.split()
    return " ".join([words[0].capitalize(), *(w.lower() for w in words[1:])]) if words \
        else name


def type_words(spec: CaseTypeSpec) -> str:
    """ "a refund", "an incident": the type as a sentence names it."""
    label = (spec.label or spec.name.replace("_", " ").replace("-", " ")).strip()
    if len(label) > 1 and not label[:2].isupper():
        label = label[0].lower() + label[1:]
    return ("an " if label[:1].lower() in "aeiou" else "a ") + label


def default_of(f: TypeField) -> AttributeValue | None:
    """A field's default as the value a case gets (None: no default). Given as an
    AttributeValue, or AttributeValue-shaped JSON ({"type": ..., "value": ...})."""
    d = f.default
    if d is None:
        return None
    if isinstance(d, dict) and set(d) == {"type", "value"}:
        d = AttributeValue(d["type"], d["value"])
    if not isinstance(d, AttributeValue) or not isinstance(d.type, str):
        raise RuleError(f"The default of {f.name} is a value with its type.", f.name)
    clean = clean_attribute(f.name, d)
    return None if clean.value is None else clean


def type_problem(spec: Any) -> str | None:
    """Why a case type from outside cannot be lived by, or None: only its shape."""
    if not isinstance(spec, CaseTypeSpec):
        return "A case type is a name, a label, a version and its fields."
    if not isinstance(spec.name, str) or not TYPE_NAME_RE.match(spec.name):
        return "A case type's name is a slug: lowercase letters, digits, '-' and '_'."
    if not isinstance(spec.label, str) or len(spec.label) > MAX_TYPE_LABEL:
        return f"A case type's label is text of at most {MAX_TYPE_LABEL} characters."
    if not _whole(spec.version, 1, MAX_TYPE_VERSION):
        return "A case type's version is a whole number from 1."
    if not isinstance(spec.fields, list) or len(spec.fields) > MAX_TYPE_FIELDS:
        return f"A case type has a list of at most {MAX_TYPE_FIELDS} fields."
    seen: set[str] = set()
    for f in spec.fields:
        if not isinstance(f, TypeField) or not isinstance(f.name, str) \
                or not ATTRIBUTE_NAME_RE.match(f.name) or f.name in CORE_ATTRIBUTE_NAMES:
            return "A case type's field names a registered attribute."
        if f.name in seen:
            return f"A case type names {f.name} once."
        seen.add(f.name)
        if not isinstance(f.required, bool):
            return f"Whether {f.name} is required is true or false."
        if not isinstance(f.label, str) or len(f.label) > MAX_TYPE_LABEL:
            return f"A field's label is text of at most {MAX_TYPE_LABEL} characters."
        try:
            default_of(f)
        except RuleError as err:
            return err.message
    return None


def types_problem(types: Any) -> str | None:
    """Why a queue's case types (QueuePolicy.case_types) from outside cannot be lived by."""
    if not isinstance(types, dict) or len(types) > MAX_CASE_TYPES:
        return f"policy.case_types maps at most {MAX_CASE_TYPES} type names to their types."
    for name, spec in types.items():
        problem = type_problem(spec)
        if problem is not None:
            return problem
        if name != spec.name:
            return "policy.case_types names each type by its own name."
    return None


def type_named(types: dict[str, CaseTypeSpec], name: str) -> CaseTypeSpec:
    spec = types.get(name)
    if spec is None:
        raise RuleError(f"{name!r} is not a case type of this queue.", "case_type")
    return spec


def typed_attributes(spec: CaseTypeSpec, attributes: dict[str, AttributeValue]
                     ) -> dict[str, AttributeValue]:
    """A case's attributes under `spec`: its defaults fill what is not set, and every
    required field must then have a value (the same words for the form, the intake API, a
    Temporal client's case and a change of type)."""
    merged = dict(attributes)
    for f in spec.fields:
        default = default_of(f)
        if f.name not in merged and default is not None:
            merged[f.name] = default
    for f in spec.fields:
        if f.required and merged.get(f.name, AttributeValue("Keyword", None)).value is None:
            raise RuleError(f"{f.label or field_words(f.name)} is required for "
                            f"{type_words(spec)}.", f.name)
    return merged


def take_type(state: CaseState, name: str, policy: QueuePolicy) -> Effect:
    """The type a case started without its queue's policy named, checked once its queue
    answered (any Temporal client): a RuleError ends the run as a refused input does."""
    spec = type_named(policy.case_types, name)
    return Effect("typed", spec.name, {"case_type": spec,
                                       "attributes": typed_attributes(spec, state.attributes)})


def _set_case_type(s: CaseState, c: SetCaseType, now: datetime, sla: SlaPolicy) -> Effect:
    _require_not_closed(s)
    problem = type_problem(c.case_type)
    if problem is not None:
        raise RuleError(problem if c.case_type is not None else "Choose a case type.",
                        "case_type")
    if c.case_type == s.case_type:
        raise RuleError(f"The case is already {type_words(c.case_type)}.", "case_type")
    merged = typed_attributes(c.case_type, s.attributes)
    return Effect("retyped", c.case_type.label or c.case_type.name,
                  {"case_type": c.case_type, "attributes": merged})


def _agents_setting_type(state: CaseState, command: SetCaseType) -> str | None:
    return "Only supervisors can change a case's type."


# --- a case's input, from any Temporal client (issue 22) -------------------------------------
# Bounds far past any real configuration and well inside what datetime can count, so a
# refused input fails the run with its reason instead of a workflow task that retries forever.
MAX_SLA_SECONDS = 366 * 24 * 3600
MAX_AUTO_CLOSE_SECONDS = 5 * 366 * 24 * 3600
MAX_QUIET_SECONDS = 24 * 3600
# A run needs about a dozen events to start and wait; fewer would continue as new forever.
MIN_HISTORY_EVENT_LIMIT = 20
MAX_HISTORY_EVENT_LIMIT = 50_000
# Working intervals end before the year 9000: past them add_working counts the wall clock.
MAX_EPOCH = 221_845_392_000


def _whole(value: object, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _number(value: object, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) \
        and low <= value <= high  # NaN compares false, infinities are out of range


def sla_problem(sla: SlaPolicy) -> tuple[str, str] | None:
    """(field, why) when an SLA policy from outside cannot be counted with, else None."""
    seconds = sla.seconds_by_priority
    if not isinstance(seconds, list) or len(seconds) != 4 or \
            not all(_whole(v, 1, MAX_SLA_SECONDS) for v in seconds):
        return ("seconds_by_priority", "seconds_by_priority is four whole numbers of seconds "
                f"from 1 to {MAX_SLA_SECONDS:,} (366 days), one per priority.")
    shares = sla.at_risk_by_priority
    if shares is not None and (not isinstance(shares, list) or len(shares) != 4 or
                               not all(_number(v, 0.0, 1.0) for v in shares)):
        return ("at_risk_by_priority",
                "at_risk_by_priority is four shares from 0 to 1, one per priority.")
    work = sla.working
    if work is not None:
        spans = work.intervals
        last = 0
        for span in spans if isinstance(spans, list) else [None]:
            if not isinstance(span, list) or len(span) != 2 or \
                    not _whole(span[0], last, MAX_EPOCH) or \
                    not _whole(span[1], span[0] + 1, MAX_EPOCH):
                return ("working", "working.intervals are sorted, disjoint [start, end) pairs "
                        "of UTC epoch seconds before the year 9000.")
            last = span[1]
    escalation = sla.escalation
    if escalation is not None and (
            not isinstance(escalation.raise_priority, bool)
            or not isinstance(escalation.to_queue, str)
            or (escalation.to_queue and not QUEUE_RE.match(escalation.to_queue))
            or not isinstance(escalation.to_assignee, str)
            or (escalation.to_assignee and not USERNAME_RE.match(escalation.to_assignee))):
        return ("escalation", "escalation names a queue and a username, or none.")
    return None


def policy_problem(policy: QueuePolicy) -> tuple[str, str] | None:
    """(field, why) when a queue's policy cannot be lived by, else None."""
    if not isinstance(policy.queue, str) or (policy.queue and not QUEUE_RE.match(policy.queue)):
        return ("queue", "policy.queue is a queue's slug.")
    if not isinstance(policy.route, bool):
        return ("route", "policy.route is true or false.")
    problem = types_problem(policy.case_types)
    if problem is not None:
        return ("case_types", problem)
    return sla_problem(policy.sla)


def admit(inp: CaseInput, continued: bool) -> None:
    """Refuse a case's input that no rule allows, whoever started it (issue 22): a state
    outside a continue-as-new (it would skip every rule of opening), an SLA, a quiet period,
    an auto-close or a history limit that cannot be counted with."""
    if inp.state is not None and not continued:
        raise RuleError("A case's state is taken only when it continues as new; start a case "
                        "with its fields (new).", "state")
    if inp.state is None and inp.new is None:
        raise RuleError("A case needs its fields.")
    for given in (inp.sla, inp.policy):
        problem = None if given is None else (
            sla_problem(given) if isinstance(given, SlaPolicy) else policy_problem(given))
        if problem is not None:
            raise RuleError(problem[1], problem[0])
    if not _number(inp.notify_quiet_seconds, float("-inf"), MAX_QUIET_SECONDS) or \
            inp.notify_quiet_seconds == float("-inf"):
        raise RuleError("notify_quiet_seconds is at most a day (negative: no notices).",
                        "notify_quiet_seconds")
    if not _whole(inp.auto_close_seconds, 0, MAX_AUTO_CLOSE_SECONDS):
        raise RuleError("auto_close_seconds is a whole number of seconds up to five years.",
                        "auto_close_seconds")
    limit = inp.history_event_limit
    if limit is not None and not _whole(limit, MIN_HISTORY_EVENT_LIMIT,
                                        MAX_HISTORY_EVENT_LIMIT):
        raise RuleError(f"history_event_limit is from {MIN_HISTORY_EVENT_LIMIT} to "
                        f"{MAX_HISTORY_EVENT_LIMIT:,} events, or none.", "history_event_limit")


def queue_rules(state: CaseState, policy: QueuePolicy) -> Effect | None:
    """The due and at-risk times an open case gets under the queue's policy it asked for
    (issue 22), counted from its creation like a new priority; None when nothing changes (a
    breached case keeps its breach)."""
    if not state.is_open or state.sla_breached:
        return None
    changes: dict[str, Any] = {}
    due = due_at(policy.sla, state.created_at, state.priority)
    risk = risk_point(policy.sla, state.created_at, state.priority)
    if due != state.due_at:
        changes["due_at"] = due
    if risk != state.at_risk_at:
        changes.update(at_risk_at=risk, at_risk=False)
    if not changes:
        return None
    said = [f"due {due.isoformat(timespec='minutes')}"]
    if policy.sla.working is not None:
        said.append(f"business hours {policy.sla.working.calendar}".rstrip())
    return Effect("queue rules", f"{policy.queue}: {', '.join(said)}", changes)


def due_at(sla: SlaPolicy, start: datetime, priority: int) -> datetime:
    """When a case of `priority` counted from `start` is due: its policy's seconds of the
    queue's working time (business_hours), or of the wall clock for a queue without hours."""
    seconds = sla.seconds_for(priority)
    if sla.working is None:
        return start + timedelta(seconds=seconds)
    return business_hours.add_working(sla.working, start, seconds)


def risk_point(sla: SlaPolicy, start: datetime, priority: int) -> datetime | None:
    """When a case counted from `start` becomes at risk: the policy's share of its time to
    due (working time where the queue has hours), or None where the policy warns of nothing."""
    if sla.at_risk_by_priority is None:
        return None
    share = sla.at_risk_by_priority[priority - 1]
    seconds = sla.seconds_for(priority) * share
    if sla.working is None:
        return start + timedelta(seconds=seconds)
    return business_hours.add_working(sla.working, start, seconds)


def open_case(
    case_id: str, new: NewCase, actor: str, sla: SlaPolicy, now: datetime,
    case_types: dict[str, CaseTypeSpec] | None = None,
) -> CaseState:
    """The case `new` opens. `case_types`: its queue's types, when known at opening (the
    starter gave the policy); a named type is then checked here, else once the queue answers
    (`take_type`)."""
    validate_new_case(new)
    state = CaseState(
        case_id=case_id,
        title=new.title.strip(),
        description=new.description,
        requester=Requester(name=new.requester_name.strip(), email=new.requester_email.strip()),
        queue=new.queue,
        priority=new.priority,
        status="new",
        created_at=now,
        created_by=actor,
        updated_at=now,
        updated_by=actor,
        tags=list(new.tags),
        attributes={n: a for n, a in ((n, clean_attribute(n, a)) for n, a in
                                      new.attributes.items()) if a.value is not None},
        due_at=due_at(sla, now, new.priority),
        at_risk_at=risk_point(sla, now, new.priority),
        follows=new.follows,
    )
    if new.files:
        state.attachments = new_attachments(state, new.files, actor, now)
    if new.case_type and case_types is not None:
        spec = type_named(case_types, new.case_type)
        state.attributes = typed_attributes(spec, state.attributes)
        state.case_type = spec
    return state


# --- commands ----------------------------------------------------------------------------------


def _require_not_closed(s: CaseState) -> None:
    if s.status == "closed":
        raise RuleError("This case is closed.")


def _require_open(s: CaseState, doing: str) -> None:
    _require_not_closed(s)
    if s.status == "resolved":
        raise RuleError(f"This case is resolved; reopen it before you {doing}.")


def _claim(s: CaseState, c: Claim, now: datetime, sla: SlaPolicy) -> Effect:
    _require_open(s, "claim it")
    if s.assignee == c.actor:
        raise RuleError("You already hold this case.")
    if s.assignee:
        raise RuleError(f"Already claimed by {s.assignee}.")
    changes: dict[str, Any] = {"assignee": c.actor}
    if s.status == "new":
        changes["status"] = "in_progress"
    return Effect("claimed", changes=changes)


def _assign(s: CaseState, c: Assign, now: datetime, sla: SlaPolicy) -> Effect:
    _require_open(s, "assign it")
    if c.assignee is None:
        if s.assignee is None:
            raise RuleError("This case is not assigned to anyone.")
        return Effect("unassigned", f"was {s.assignee}", {"assignee": None})
    if not USERNAME_RE.match(c.assignee):
        raise RuleError("That is not a valid username.", "assignee")
    if c.assignee == s.assignee:
        raise RuleError(f"Already assigned to {s.assignee}.", "assignee")
    changes: dict[str, Any] = {"assignee": c.assignee}
    if s.status == "new":
        changes["status"] = "in_progress"
    return Effect("assigned", c.assignee, changes)


def _set_priority(s: CaseState, c: SetPriority, now: datetime, sla: SlaPolicy) -> Effect:
    _require_open(s, "change its priority")
    if c.priority not in (1, 2, 3, 4):
        raise RuleError("Priority is 1 (urgent) to 4 (low).", "priority")
    if c.priority == s.priority:
        raise RuleError(f"Priority is already {c.priority}.", "priority")
    changes: dict[str, Any] = {"priority": c.priority}
    # A new priority brings the policy's due time, counted from creation, unless already breached.
    if not s.sla_breached:
        changes["due_at"] = due_at(sla, s.created_at, c.priority)
        if sla.at_risk_by_priority is not None:
            changes["at_risk_at"] = risk_point(sla, s.created_at, c.priority)
            changes["at_risk"] = False
    return Effect("priority", f"{s.priority} → {c.priority}", changes)


def _set_status(s: CaseState, c: SetStatus, now: datetime, sla: SlaPolicy) -> Effect:
    _require_not_closed(s)
    if s.status == "resolved":
        raise RuleError("This case is resolved; reopen it first.")
    if c.status == s.status:
        raise RuleError(f"The case is already {c.status.replace('_', ' ')}.", "status")
    if c.status == "resolved":
        raise RuleError("Use Resolve, which records a resolution.", "status")
    if c.status == "closed":
        raise RuleError("Use Close to close the case.", "status")
    if c.status not in STATUS_TRANSITIONS.get(s.status, ()):
        raise RuleError(
            f"A case cannot go from {s.status.replace('_', ' ')} to "
            f"{c.status.replace('_', ' ')}.",
            "status",
        )
    return Effect("status", f"{s.status} → {c.status}", {"status": c.status})


def _comment(s: CaseState, c: AddComment, now: datetime, sla: SlaPolicy) -> Effect:
    _require_not_closed(s)
    body = c.body.strip()
    if not body and not c.files:
        raise RuleError("A comment cannot be empty.", "body")
    if len(body) > MAX_COMMENT:
        raise RuleError(f"A comment has at most {MAX_COMMENT:,} characters.", "body")
    files = new_attachments(s, c.files, c.actor, now, comment=len(s.comments))
    comment = Comment(author=c.actor, body=body, internal=c.internal, at=now,
                      attachments=[a.id for a in files])
    changes: dict[str, Any] = {"comments": [*s.comments, comment]}
    if files:
        changes["attachments"] = [*s.attachments, *files]
    return Effect("internal note" if c.internal else "comment", changes=changes)


def _attach(s: CaseState, c: Attach, now: datetime, sla: SlaPolicy) -> Effect:
    _require_not_closed(s)
    if not c.files:
        raise RuleError("Choose a file to attach.", "files")
    files = new_attachments(s, c.files, c.actor, now)
    names = ", ".join(a.file.name for a in files)
    detail = names if len(names) <= 200 else f"{len(files)} files"
    return Effect("attached", detail, {"attachments": [*s.attachments, *files]})


# Mail in (issue 23). The intake is the only sender of a received mail: a person's form (or
# anyone with an authority) cannot make one up.
MAIL_ACTOR = "mail"
MAX_MESSAGE_ID = 320  # as the delivery ledger keeps one
MAIL_ALREADY_HERE = "This mail is already on the case."
MAIL_FROM_INTAKE_ONLY = "Received mail is recorded by the mail intake only."


def _receive_mail(s: CaseState, c: ReceiveMail, now: datetime, sla: SlaPolicy) -> Effect:
    if c.authority is not None:
        raise RuleError(MAIL_FROM_INTAKE_ONLY)
    _require_not_closed(s)
    message_id = c.message_id.strip()
    if not message_id or len(message_id) > MAX_MESSAGE_ID:
        raise RuleError("A received mail names its Message-ID.", "message_id")
    # Temporal answers a repeated Update id only within one run; this holds across them.
    if any(comment.message_id == message_id for comment in s.comments):
        raise RuleError(MAIL_ALREADY_HERE, "message_id")
    body = c.body.strip()
    if not body:
        raise RuleError("A received mail has some text.", "body")
    if len(body) > MAX_COMMENT:
        raise RuleError(f"A comment has at most {MAX_COMMENT:,} characters.", "body")
    email = c.sender_email.strip()
    if len(email) > MAX_NAME or not EMAIL_RE.match(email):
        raise RuleError("A received mail names its sender's address.", "sender_email")
    name = " ".join(c.sender_name.split())[:MAX_NAME]
    sender = f"{name} <{email}>" if name else email
    from_requester = bool(s.requester.email) and email.lower() == s.requester.email.lower()
    if not from_requester:
        # Colleagues read it; the requester is never mailed someone else's words.
        body = f"Email from {sender}, not the requester:\n\n{body}"[:MAX_COMMENT]
    files = [*c.files, *([c.original] if c.original is not None else [])]
    added = new_attachments(s, files, c.actor, now, comment=len(s.comments))
    original = added[-1].id if c.original is not None else ""
    comment = Comment(author=c.actor, body=body, internal=not from_requester, at=now,
                      attachments=[a.id for a in added if a.id != original], via="email",
                      sender=sender, original=original, message_id=message_id)
    changes: dict[str, Any] = {"comments": [*s.comments, comment]}
    if added:
        changes["attachments"] = [*s.attachments, *added]
    said = sender
    if s.status == "resolved":  # the customer answered: the case is theirs again
        changes.update(status="in_progress" if s.assignee else "new", resolved_at=None)
        said += ", reopening the case"
    return Effect("mail in" if from_requester else "mail note", said, changes)


def _add_tag(s: CaseState, c: AddTag, now: datetime, sla: SlaPolicy) -> Effect:
    _require_not_closed(s)
    tag = clean_tag(c.tag)
    if tag in s.tags:
        raise RuleError(f"Already tagged {tag}.", "tag")
    if len(s.tags) >= MAX_TAGS:
        raise RuleError(f"A case has at most {MAX_TAGS} tags.", "tag")
    return Effect("tagged", tag, {"tags": [*s.tags, tag]})


def _remove_tag(s: CaseState, c: RemoveTag, now: datetime, sla: SlaPolicy) -> Effect:
    _require_not_closed(s)
    if c.tag not in s.tags:
        raise RuleError(f"The case is not tagged {c.tag}.", "tag")
    return Effect("untagged", c.tag, {"tags": [t for t in s.tags if t != c.tag]})


def _set_due(s: CaseState, c: SetDue, now: datetime, sla: SlaPolicy) -> Effect:
    _require_open(s, "change its due time")
    if c.due_at.tzinfo is None:
        raise RuleError("A due time needs a time zone.", "due_at")
    if c.due_at <= now:
        raise RuleError("The due time must be in the future.", "due_at")
    return Effect(
        "due",
        c.due_at.isoformat(timespec="minutes"),
        _due_changes(s, c.due_at, now, sla),
    )


def _due_changes(s: CaseState, due: datetime, now: datetime, sla: SlaPolicy) -> dict[str, Any]:
    changes: dict[str, Any] = {"due_at": due, "sla_breached": False}
    if sla.at_risk_by_priority is not None:
        # The same share of the time from now to the new due time (wall clock).
        share = sla.at_risk_by_priority[s.priority - 1]
        changes["at_risk_at"] = now + (due - now) * share
        changes["at_risk"] = False
    return changes


def _resolve(s: CaseState, c: Resolve, now: datetime, sla: SlaPolicy) -> Effect:
    _require_open(s, "resolve it again")
    text = c.resolution.strip()
    if not text:
        raise RuleError("A resolution is required.", "resolution")
    if len(text) > MAX_RESOLUTION:
        raise RuleError(f"A resolution has at most {MAX_RESOLUTION:,} characters.", "resolution")
    return Effect(
        "resolved",
        text[:200],
        {"status": "resolved", "resolution": text, "resolved_at": now},
    )


def _reopen(s: CaseState, c: Reopen, now: datetime, sla: SlaPolicy) -> Effect:
    if s.status != "resolved":
        raise RuleError("Only a resolved case can be reopened.")
    return Effect(
        "reopened",
        c.reason.strip()[:200],
        {"status": "in_progress" if s.assignee else "new", "resolved_at": None},
    )


def _set_attributes(s: CaseState, c: SetAttributes, now: datetime, sla: SlaPolicy) -> Effect:
    _require_not_closed(s)
    if not c.values:
        raise RuleError("Nothing to change.", "values")
    merged = dict(s.attributes)
    changed: list[str] = []
    for name, attr in sorted(c.values.items()):
        clean = clean_attribute(name, attr)
        old = s.attributes.get(name)
        if (old.value if old else None) == clean.value:
            continue
        if clean.value is None:
            merged.pop(name, None)
        else:
            merged[name] = clean
        changed.append(f"{name} = {clean.value if clean.value is not None else '—'}")
    if not changed:
        raise RuleError("Those values are already set.", "values")
    return Effect("attributes", "; ".join(changed)[:200], {"attributes": merged})


def _close(s: CaseState, c: Close, now: datetime, sla: SlaPolicy) -> Effect:
    _require_not_closed(s)
    return Effect("closed", changes={"status": "closed", "closed_at": now})


def _change_requester(s: CaseState, c: ChangeRequester, now: datetime,
                      sla: SlaPolicy) -> Effect:
    _require_not_closed(s)
    name, email = c.name.strip(), c.email.strip()
    if not name:
        raise RuleError("The requester needs a name.", "name")
    if len(name) > MAX_NAME:
        raise RuleError(f"The name has at most {MAX_NAME} characters.", "name")
    if len(email) > MAX_NAME or not EMAIL_RE.match(email):
        raise RuleError("Enter a valid email address.", "email")
    requester = Requester(name=name, email=email)
    if requester == s.requester:
        raise RuleError(f"{name} <{email}> is already the requester.", "name")
    return Effect("requester", f"{name} <{email}>", {"requester": requester})


def _watch(s: CaseState, c: Watch, now: datetime, sla: SlaPolicy) -> Effect:
    _require_not_closed(s)
    if c.actor in s.watchers:
        raise RuleError("You already watch this case.")
    return Effect("watched", changes={"watchers": [*s.watchers, c.actor]})


def _unwatch(s: CaseState, c: Unwatch, now: datetime, sla: SlaPolicy) -> Effect:
    _require_not_closed(s)
    if c.actor not in s.watchers:
        raise RuleError("You do not watch this case.")
    return Effect("unwatched", changes={"watchers": [w for w in s.watchers if w != c.actor]})


# --- who among agents may send a command (supervisors and admins may send any) -------------
# Each command's entry names one of these; a refusal here is about the actor, so it names no
# field and the page does not offer the action.


def agents_on_any_case(state: CaseState, command: Command) -> str | None:
    return None


def agents_holding_it(state: CaseState, command: Command) -> str | None:
    if state.assignee == command.actor:
        return None
    if state.assignee is None:
        return "Claim this case before you work on it."
    return f"This case is held by {state.assignee}; only they or a supervisor can do that."


def _agents_assigning(state: CaseState, command: Assign) -> str | None:
    if command.assignee == command.actor and state.assignee is None:
        return None  # assigning an unassigned case to oneself is claiming it
    if command.assignee is None and state.assignee == command.actor:
        return None  # releasing one's own case
    return "Only supervisors can assign cases to others."


def _agents_setting_attributes(state: CaseState, command: SetAttributes) -> str | None:
    allowed = command.authority.attributes if command.authority else None
    if allowed is not None and not set(command.values) <= set(allowed):
        return "Only supervisors can set those attributes."
    return agents_holding_it(state, command)


# --- forms, as plain data ------------------------------------------------------------------
# The workflow sandbox imports this module, so a form is described here and built as a
# Django form in cases/web/forms.py.

INPUT_KINDS = frozenset({"text", "textarea", "email", "choice", "username", "datetime", "bool",
                         "attributes", "files", "case_type"})


@dataclass(frozen=True)
class Input:
    """One field of a command's form, filling the command's dataclass field `name`."""

    name: str
    kind: str = "text"  # one of INPUT_KINDS
    label: str = ""  # "" lets Django word it from the name
    required: bool = True
    max_length: int | None = None
    # "choice": the values' type is the input's. "bool": (False, label), (True, label) ask
    # for one of two named modes instead of a tick box that is easy to miss.
    choices: tuple[tuple[Any, str], ...] = ()
    placeholder: str = ""
    # The case's field (a dotted path) the form starts from, e.g. "requester.name".
    initial: str = ""
    # A pure check also run on the form, where no case is at hand yet (bulk work).
    clean: Callable[[Any], Any] | None = None
    # Typed at length by a person: handed back when the action could not be applied.
    hand_back: bool = False


@dataclass(frozen=True)
class Form:
    """How the case page (and bulk work) asks a person for a command."""

    label: str
    inputs: tuple[Input, ...] = ()
    # Input the form sends without asking (Unassign: nobody).
    fixed: dict[str, Any] = field(default_factory=dict)
    # The URL action of a second form for the same command; a command's first form is
    # addressed by its Update name.
    name: str = ""
    # False: the page draws it its own way (one small form per tag), not in the actions.
    in_actions: bool = True


def _blank(inp: Input) -> Any:
    """Placeholder input that a rule refuses *as input* (a refusal naming a field)."""
    if inp.kind == "choice":
        return type(inp.choices[0][0])()  # 0 or "": never a real choice
    if inp.kind == "datetime":
        return datetime(2000, 1, 1)  # naive: refused for its missing time zone
    if inp.kind == "attributes":
        return {}
    if inp.kind == "files":
        return []
    if inp.kind == "case_type":
        return None
    return ""


PRIORITY_CHOICES = tuple((p, f"{p} · {label}") for p, label in PRIORITY_LABELS.items())
# Statuses a person picks directly; resolved and closed have their own commands.
SETTABLE_STATUSES = tuple((s, STATUS_LABELS[s]) for s in OPEN_STATUSES)


@dataclass(frozen=True)
class Tells:
    """Whom an effect of one kind tells, and what the notice carries. Preferences are keys
    of NOTICE_KINDS (the reason a person is told, which they may turn off). Nobody is told of
    their own doing; the requester only with an address and never of an internal note."""

    watchers: bool = True  # the case's watchers, as "watching"
    # The case's holder after the change, under this preference ("": not as holder)...
    assignee: str = ""
    new_assignee: bool = False  # ...only when the change gave them the case
    says: str = ""  # the text beneath the line: a key of NOTICE_TEXTS
    mentioned: bool = False  # those @mentioned in that text, as "mentioned"
    requester: bool = False
    supervisors: str = ""  # the queue's supervisors, under this preference


# Watching a case says nothing of it; a line only the timeline has tells nobody.
NOBODY = Tells(watchers=False)


@dataclass(frozen=True)
class CommandRule:
    """One case command: the workflow Update that carries it, its input, the rule that
    decides it, how the timeline words each effect kind it produces, which agents may send
    it, and the forms that ask for it. The workflow's Updates, the history projection, the
    gateway, the case page's forms and bulk work are all derived from `COMMANDS`."""

    update: str
    command: type[Command]
    decide: Callable[[CaseState, Any, datetime, SlaPolicy], Effect]
    # Effect kind -> timeline line; {actor}, {detail} and {words} (detail, `_` as spaces).
    # A line without {detail} or {words} shows the detail beneath it (a comment's body).
    wording: dict[str, str]
    # agents_on_any_case, agents_holding_it, or a policy of its own.
    agents: Callable[[CaseState, Any], str | None]
    forms: tuple[Form, ...]
    # Its label in the case list's "with selected" bar; "" keeps it off bulk work.
    bulk: str = ""
    # Effect kind -> whom it tells; a kind not named tells the watchers alone.
    tells: dict[str, Tells] = field(default_factory=dict)

    def probe(self, form: Form, actor: str) -> Command:
        """The command `form` would send with every input left blank, for `offers`."""
        blanks = {i.name: _blank(i) for i in form.inputs if i.kind != "bool"}
        return self.command(actor=actor, **{**blanks, **form.fixed})


# --- macros (issue 25) -----------------------------------------------------------------------
# A macro is the existing commands applied in one Update: each part decided by its own rule
# and its own agents' policy against the case as the parts before it left it, all or none.

MAX_MACRO_NAME = 100
# A part asking for what the case already is (status waiting on a waiting case) is left out
# rather than refusing the whole macro: a macro says where the case should end up.


def clean_macro_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else ""
    if not name:
        raise RuleError("A macro needs its name.", "macro")
    if len(name) > MAX_MACRO_NAME or not all(_shown(ch) for ch in name):
        raise RuleError(f"A macro's name is at most {MAX_MACRO_NAME} characters, without "
                        "control characters.", "macro")
    return name


def clean_macro_changes(changes: MacroChanges) -> MacroChanges:
    """The shape of a macro's changes (from a form, the admin or any Temporal client); what
    each is worth on a case is its own rule's business. Raises RuleError naming the field."""
    if not isinstance(changes, MacroChanges):
        raise RuleError("A macro's changes come as its fields.", "changes")
    if changes.status is not None and changes.status not in STATUS_TRANSITIONS:
        raise RuleError(f"{changes.status!r} is not a status.", "status")
    if changes.priority is not None and changes.priority not in PRIORITY_LABELS:
        raise RuleError("Priority is 1 (urgent) to 4 (low).", "priority")
    for name in ("add_tags", "remove_tags"):
        tags = getattr(changes, name)
        if not isinstance(tags, list) or len(tags) > MAX_TAGS or \
                not all(isinstance(t, str) for t in tags):
            raise RuleError(f"At most {MAX_TAGS} tags.", name)
        for tag in tags:
            try:
                clean_tag(tag)
            except RuleError as err:
                raise RuleError(err.message, name) from err
    if changes.assignee is not None and (not isinstance(changes.assignee, str) or (
            changes.assignee and not USERNAME_RE.match(changes.assignee))):
        raise RuleError("That is not a valid username.", "assignee")
    if not isinstance(changes.attributes, dict) or not all(
            isinstance(k, str) and isinstance(v, AttributeValue)
            for k, v in changes.attributes.items()):
        raise RuleError("Attributes come by name, each with its type and value.", "attributes")
    for name, attr in changes.attributes.items():
        clean_attribute(name, attr)
    return changes


def macro_parts(state: CaseState, c: ApplyMacro, name: str) -> list[Command]:
    """The commands `c` is made of, in the order they are applied: the reply first (a
    closed case takes none), the status last (a resolved case takes no new priority)."""
    ch = c.changes
    who: dict[str, Any] = {"actor": c.actor, "authority": c.authority}
    parts: list[Command] = []
    if c.body.strip():
        parts.append(AddComment(body=c.body, internal=bool(c.internal), **who))
    if ch.attributes:
        parts.append(SetAttributes(values=dict(ch.attributes), **who))
    parts += [AddTag(tag=t, **who) for t in ch.add_tags]
    parts += [RemoveTag(tag=t.strip(), **who) for t in ch.remove_tags]
    if ch.priority is not None:
        parts.append(SetPriority(priority=ch.priority, **who))
    if ch.assignee is not None:
        parts.append(Assign(assignee=ch.assignee or None, **who))
    if ch.status == "resolved":
        # The reply is the resolution, unless it is an internal note: a resolution is mailed.
        said = c.body.strip() if not c.internal else ""
        parts.append(Resolve(resolution=said or f"Resolved with the macro {name}.", **who))
    elif ch.status == "closed":
        parts.append(Close(**who))
    elif ch.status is not None:
        parts.append(SetStatus(status=ch.status, **who))
    return parts


def _already(s: CaseState, part: Command) -> bool:
    """Is the case already what this part asks for (see above)?"""
    if isinstance(part, AddTag):
        return part.tag.strip() in s.tags
    if isinstance(part, RemoveTag):
        return part.tag not in s.tags
    if isinstance(part, SetPriority):
        return part.priority == s.priority
    if isinstance(part, Assign):
        return part.assignee == s.assignee
    if isinstance(part, SetStatus):
        return part.status == s.status
    if isinstance(part, Close):
        return s.status == "closed"
    if isinstance(part, SetAttributes):
        return all((s.attributes[n].value if n in s.attributes else None)
                   == clean_attribute(n, a).value for n, a in part.values.items())
    return False


def _apply_macro(s: CaseState, c: ApplyMacro, now: datetime, sla: SlaPolicy) -> Effect:
    _require_not_closed(s)
    name = clean_macro_name(c.macro)
    if not isinstance(c.body, str) or not isinstance(c.internal, bool):
        raise RuleError("A macro's reply is text, public or internal.", "body")
    try:
        clean_macro_changes(c.changes)
        working, effects = s, []
        for part in macro_parts(s, c, name):
            if _already(working, part):
                continue
            reason = refusal_for(working, part)
            if reason:
                raise RuleError(reason)
            effect = _BY_COMMAND[type(part)].decide(working, part, now, sla)
            working = apply(working, effect, c.actor, now)
            effects.append(effect)
    except RuleError as err:
        # The part's own words, and which macro said them.
        raise RuleError(f"{name}: {err.message}") from err
    if not effects:
        raise RuleError(f"{name}: the case is already as this macro leaves it.")
    keys = dict.fromkeys(k for effect in effects for k in effect.changes)
    return Effect("macro", name, {k: getattr(working, k) for k in keys}, parts=effects)


def _macro_notices(before: CaseState, after: CaseState, effect: Effect, actor: str
                   ) -> list[Notice]:
    """One notice (one event) telling the union of what each part would tell: a person
    told for several reasons is told once, under the most particular; the text carried is
    the first that goes to the requester (a public reply, a resolution), else the first."""
    told: list[Notice] = []
    state = before
    for part in effect.parts:
        then = apply(state, part, actor, after.updated_at)
        told += notices_for(state, then, part, actor)
        state = then
    if not told:
        return []
    users: dict[str, str] = {}
    for notice in told:
        for user, why in notice.users.items():
            if users.get(user, "watching") == "watching":
                users[user] = why
    carrier = next((n for n in told if n.requester), None) or \
        next((n for n in told if n.body), told[0])
    supervisors = next((n for n in told if n.supervisors_of), None)
    return [Notice(event=str(after.version), kind=effect.kind, actor=actor,
                   text=line_for(effect.kind, effect.detail, actor), body=carrier.body,
                   internal=carrier.internal, users=users, requester=carrier.requester,
                   files=carrier.files, comment=carrier.comment,
                   **({"supervisors_of": supervisors.supervisors_of,
                       "supervisors_why": supervisors.supervisors_why} if supervisors else {}))]


MACRO_COMMANDS = (
    CommandRule("apply_macro", ApplyMacro, _apply_macro,
                {"macro": "{actor} applied the macro {detail}"},
                # Each part asks its own command's policy (refusal_for) as it is applied.
                agents=agents_on_any_case,
                # The page draws it as the comment box's macro picker (cases/web/macros.py).
                forms=(Form("Apply macro", (Input("macro", max_length=MAX_MACRO_NAME),),
                            in_actions=False),)),
)


COMMANDS: dict[str, CommandRule] = {rule.update: rule for rule in (
    CommandRule("claim", Claim, _claim, {"claimed": "{actor} claimed the case"},
                agents=agents_on_any_case, forms=(Form("Claim"),)),
    CommandRule("assign", Assign, _assign, {
        "assigned": "{actor} assigned the case to {detail}",
        "unassigned": "{actor} unassigned the case ({detail})"},
        agents=_agents_assigning, bulk="Assign to",
        tells={"assigned": Tells(assignee="assigned")}, forms=(
            Form("Assign", (Input("assignee", "username", max_length=150),)),
            Form("Unassign", fixed={"assignee": None}, name="unassign"))),
    CommandRule("set_priority", SetPriority, _set_priority,
                {"priority": "priority {detail} by {actor}"},
                agents=agents_holding_it, bulk="Set priority", forms=(
                    Form("Set priority", (Input("priority", "choice", choices=PRIORITY_CHOICES,
                                                initial="priority"),)),)),
    CommandRule("set_status", SetStatus, _set_status, {"status": "status {words} by {actor}"},
                agents=agents_holding_it, forms=(
                    Form("Set status", (Input("status", "choice", choices=SETTABLE_STATUSES,
                                              initial="status"),)),)),
    CommandRule("comment", AddComment, _comment, {
        "comment": "{actor} commented", "internal note": "{actor} added an internal note"},
        agents=agents_on_any_case, tells={
            "comment": Tells(says="comment", mentioned=True, requester=True),
            "internal note": Tells(says="comment", mentioned=True, requester=True)},
        forms=(Form("Comment", (
            Input("body", "textarea", label="Comment", max_length=MAX_COMMENT,
                  placeholder="Write a comment…", hand_back=True),
            # Two explicit modes (issue 23): an unticked box mailed the customer by mistake.
            Input("internal", "bool", label="Reply as", required=False,
                  choices=((False, "Public reply"), (True, "Internal note"))),
            Input("files", "files", label="Attach files", required=False),
        )),)),
    CommandRule("receive_mail", ReceiveMail, _receive_mail, {
        "mail in": "reply by {actor} from {detail}",
        "mail note": "internal note by {actor} from {detail}"},
        # Holder and watchers hear of it; nobody is mailed the requester's own words.
        agents=agents_on_any_case, tells={
            "mail in": Tells(says="comment", assignee="watching"),
            "mail note": Tells(says="comment", assignee="watching")},
        # Never on the page: only the intake sends it (the rule refuses any authority).
        forms=(Form("Receive mail", fixed={"sender_name": "", "sender_email": "",
                                           "message_id": "", "body": ""},
                    in_actions=False),)),
    CommandRule("attach", Attach, _attach, {"attached": "{actor} attached {detail}"},
                agents=agents_on_any_case, forms=(
                    # The case page draws it as its Files card (drop, progress bar).
                    Form("Attach", (Input("files", "files", label="Files"),),
                         in_actions=False),)),
    CommandRule("add_tag", AddTag, _add_tag, {"tagged": "{actor} tagged the case {detail}"},
                agents=agents_holding_it, bulk="Add tag", forms=(
                    Form("Add tag", (Input("tag", max_length=MAX_TAG, clean=clean_tag),)),)),
    CommandRule("remove_tag", RemoveTag, _remove_tag,
                {"untagged": "{actor} removed the tag {detail}"},
                agents=agents_holding_it, forms=(
                    Form("Remove tag", (Input("tag", max_length=MAX_TAG),), in_actions=False),)),
    CommandRule("set_due", SetDue, _set_due, {"due": "{actor} set the due time to {detail}"},
                agents=agents_holding_it, forms=(
                    Form("Set due time", (Input("due_at", "datetime", label="Due"),)),)),
    CommandRule("resolve", Resolve, _resolve, {"resolved": "{actor} resolved the case"},
                agents=agents_holding_it,
                tells={"resolved": Tells(says="resolution", requester=True)},
                forms=(Form("Resolve", (
                    Input("resolution", "textarea", max_length=MAX_RESOLUTION,
                          hand_back=True),)),)),
    CommandRule("reopen", Reopen, _reopen, {"reopened": "{actor} reopened the case"},
                agents=agents_holding_it, forms=(Form("Reopen", (
                    Input("reason", max_length=500, required=False, hand_back=True),)),)),
    CommandRule("close", Close, _close, {"closed": "{actor} closed the case"},
                agents=agents_holding_it, bulk="Close", forms=(Form("Close"),)),
    CommandRule("set_attributes", SetAttributes, _set_attributes,
                {"attributes": "{actor} set {detail}"},
                agents=_agents_setting_attributes, forms=(
                    Form("Save attributes", (Input("values", "attributes"),)),)),
    CommandRule("change_requester", ChangeRequester, _change_requester,
                {"requester": "{actor} changed the requester to {detail}"},
                agents=agents_holding_it, forms=(Form("Change requester", (
                    Input("name", label="Requester", max_length=MAX_NAME,
                          initial="requester.name"),
                    Input("email", "email", max_length=MAX_NAME, initial="requester.email"),
                )),)),
    CommandRule("watch", Watch, _watch, {"watched": "{actor} started watching the case"},
                agents=agents_on_any_case, tells={"watched": NOBODY}, forms=(Form("Watch"),)),
    CommandRule("unwatch", Unwatch, _unwatch,
                {"unwatched": "{actor} stopped watching the case"},
                agents=agents_on_any_case, tells={"unwatched": NOBODY},
                forms=(Form("Unwatch"),)),
    # Issue 25: the page offers the case's queue's types by name (cases/web/forms.py).
    CommandRule("set_case_type", SetCaseType, _set_case_type,
                {"retyped": "{actor} changed the case's type to {detail}"},
                agents=_agents_setting_type, forms=(
                    Form("Change type", (Input("case_type", "case_type", label="Type"),)),)),

    *MACRO_COMMANDS,
)}
_BY_COMMAND: dict[type[Command], CommandRule] = {r.command: r for r in COMMANDS.values()}


@dataclass(frozen=True)
class SystemStep:
    """What the workflow does by itself, or only the timeline says: its line and whom it
    tells. The history projection and the notices both read these."""

    wording: str  # as CommandRule.wording's lines
    tells: Tells = NOBODY


SYSTEM_STEPS: dict[str, SystemStep] = {
    "opened": SystemStep("{actor} opened the case"),
    "sla breached": SystemStep("SLA breached", Tells(supervisors="sla_breached")),
    "sla at risk": SystemStep("SLA at risk ({detail})",
                              Tells(assignee="sla_at_risk", supervisors="sla_at_risk")),
    "escalated": SystemStep("escalated on breach: {detail}",
                            Tells(assignee="assigned", new_assignee=True)),
    "routed": SystemStep("routed to {detail}", Tells(assignee="assigned", new_assignee=True)),
    "queue rules": SystemStep("the queue's rules: {detail}"),
    "typed": SystemStep("typed as {detail}"),
    "notified": SystemStep("notified {detail}"),
    "mail refused": SystemStep("mail to {detail}"),
    "ended": SystemStep("{detail}"),
    "truncated": SystemStep("earlier history is past retention and not archived"),
    # A new run whose handed-over case differs from the projection's; a recorded change
    # that today's rules refuse.
    "continued": SystemStep("continued by {actor}"),
    "changed": SystemStep("changed by {actor}"),
}
# Every timeline line, by effect kind: the commands' and the system steps' (no kind is both).
WORDING: dict[str, str] = {
    **{kind: text for rule in COMMANDS.values() for kind, text in rule.wording.items()},
    **{kind: step.wording for kind, step in SYSTEM_STEPS.items()},
}
# The system's close (auto_close) is the close command's kind, said its own way.
AUTO_CLOSED = "closed automatically after {quiet}"
_TELLS: dict[str, Tells] = {
    **{kind: tells for rule in COMMANDS.values() for kind, tells in rule.tells.items()},
    **{kind: step.tells for kind, step in SYSTEM_STEPS.items()},
}


def rule_for(kind: type[Command]) -> CommandRule:
    return _BY_COMMAND[kind]


def can_see(state_queue: str, authority: Authority | None) -> bool:
    return (
        authority is None
        or authority.role != "agent"
        or authority.queues is None
        or state_queue in authority.queues
    )


def refusal_for(state: CaseState, command: Command) -> str | None:
    """Why the command's actor may not send it to this case, or None if they may."""
    authority = command.authority
    if authority is None or authority.role != "agent":
        return None
    return _BY_COMMAND[type(command)].agents(state, command)


def decide(state: CaseState, command: Command, now: datetime, sla: SlaPolicy) -> Effect:
    """Accept or refuse `command` against `state`; raises RuleError, never mutates."""
    if not command.actor or not USERNAME_RE.match(command.actor):
        raise RuleError("Every action needs the acting user.")
    if not can_see(state.queue, command.authority):
        raise NotVisibleError("No such case.")
    if command.expected_version is not None and command.expected_version != state.version:
        raise StaleError(
            f"Changed by {state.updated_by} since you opened it "
            f"(version {command.expected_version} → {state.version}); nothing was applied."
        )
    reason = refusal_for(state, command)
    if reason:
        raise RuleError(reason)
    return _BY_COMMAND[type(command)].decide(state, command, now, sla)


def offers(state: CaseState, probe: Command, now: datetime, sla: SlaPolicy) -> bool:
    """Does the case, as it is now, take this kind of command from this actor? `probe`
    carries placeholder input: a refusal about the input (one naming a field) still means
    the action is on offer, so the page shows its form; a refusal about the case or the
    actor means it is not."""
    try:
        decide(state, probe, now, sla)
    except (StaleError, NotVisibleError):
        return False
    except RuleError as err:
        return err.field is not None
    return True


def apply(state: CaseState, effect: Effect, actor: str, now: datetime) -> CaseState:
    """Return the state after `effect`, one version on. The timeline line is not kept in the
    state: the event history holds it, and workers/projection.py words it."""
    return replace(state, **effect.changes, version=state.version + 1, updated_at=now,
                   updated_by=actor)


def sla_breach(state: CaseState, now: datetime) -> Effect | None:
    """The breach to record if the due time has passed on an unresolved case."""
    if state.sla_breached or state.due_at is None or not state.is_open or now < state.due_at:
        return None
    changes: dict[str, Any] = {"sla_breached": True}
    if state.at_risk:
        changes["at_risk"] = False  # breached now, no longer a warning
    return Effect("sla breached", f"due {state.due_at.isoformat(timespec='minutes')}",
                  changes)


# Why a breach did not give the case to its policy's person when the access check failed.
ESCALATION_UNCHECKED = "whether they may see it could not be checked"


def escalation(state: CaseState, sla: SlaPolicy, refused: str = "") -> Effect | None:
    """What the queue's policy does to a case right after its breach: a higher priority,
    another queue, another person; None when it changes nothing. `refused`: why the person
    may not have the case (they cannot see the queue it will be in): then nobody holds it,
    and the timeline says why."""
    policy = sla.escalation
    if policy is None or not state.is_open or not state.sla_breached:
        return None
    changes: dict[str, Any] = {}
    said = []
    if policy.raise_priority and state.priority > 1:
        changes["priority"] = state.priority - 1
        said.append(f"priority {state.priority} → {state.priority - 1}")
    if policy.to_queue and policy.to_queue != state.queue:
        changes["queue"] = policy.to_queue
        said.append(f"to queue {policy.to_queue}")
    if policy.to_assignee and refused:
        said.append(f"not to {policy.to_assignee} ({refused})")
        if state.assignee:
            changes["assignee"] = None
            said.append("left unassigned")
    elif policy.to_assignee and policy.to_assignee != state.assignee:
        changes["assignee"] = policy.to_assignee
        if state.status == "new":
            changes["status"] = "in_progress"
        said.append(f"to {policy.to_assignee}")
    if not said:
        return None
    return Effect("escalated", ", ".join(said), changes)


def routed(state: CaseState, agent: str, reason: str) -> Effect | None:
    """The router's pick given to a case that still has nobody (issue 17)."""
    if not agent or state.assignee or not state.is_open:
        return None
    changes: dict[str, Any] = {"assignee": agent}
    if state.status == "new":
        changes["status"] = "in_progress"
    return Effect("routed", f"{agent} ({reason})", changes)


def sla_at_risk(state: CaseState, now: datetime) -> Effect | None:
    """The warning to record once an open case passes its at-risk point before its due time."""
    if (state.at_risk or state.sla_breached or not state.is_open or state.at_risk_at is None
            or state.due_at is None or now < state.at_risk_at or now >= state.due_at):
        return None
    return Effect("sla at risk", f"due {state.due_at.isoformat(timespec='minutes')}",
                  {"at_risk": True})


def auto_close(state: CaseState, now: datetime, quiet_seconds: int) -> Effect | None:
    if state.status != "resolved" or state.resolved_at is None:
        return None
    if now < state.resolved_at + timedelta(seconds=quiet_seconds):
        return None
    return Effect("closed", "automatically after the quiet period",
                  {"status": "closed", "closed_at": now})


def next_deadline(state: CaseState, quiet_seconds: int) -> datetime | None:
    """When the workflow must next wake up by itself (SLA due or auto-close)."""
    if state.status == "resolved" and state.resolved_at is not None:
        return state.resolved_at + timedelta(seconds=quiet_seconds)
    if state.is_open and not state.sla_breached and state.due_at is not None:
        if not state.at_risk and state.at_risk_at is not None and state.at_risk_at < state.due_at:
            return min(state.at_risk_at, state.due_at)
        return state.due_at
    return None


# --- who is told (issue 16) ------------------------------------------------------------------
# Pure, like the rest: the workflow turns each applied change into notices, and the history
# projection can say the same from the same inputs. Who may see the case and how each person
# wants to be told is decided at delivery (workers/activities.py), where the users live.

# The per-kind choices a person makes on the settings page, in the order shown.
NOTICE_KINDS: dict[str, str] = {
    "assigned": "A case is assigned to me",
    "mentioned": "I am @mentioned",
    "watching": "A case I watch changes",
    "sla_breached": "An SLA is breached in a queue I supervise",
    "sla_at_risk": "A case I hold, or in a queue I supervise, is at risk of breaching",
}


def _newest_comment(s: CaseState) -> tuple[str, bool]:
    return (s.comments[-1].body, s.comments[-1].internal) if s.comments else ("", False)


# What a notice can carry beneath its line (Tells.says), from the case after the change:
# the text and whether it is internal.
NOTICE_TEXTS: dict[str, Callable[[CaseState], tuple[str, bool]]] = {
    "": lambda s: ("", False),
    "comment": _newest_comment,
    "resolution": lambda s: (s.resolution, False),
}


def mentions(body: str) -> list[str]:
    """The usernames @mentioned in a comment's text, first mention first, each once."""
    names = [m for m in MENTION_RE.findall(body) if USERNAME_RE.match(m)]
    return list(dict.fromkeys(names))[:MAX_MENTIONS]


def quiet_period(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} quiet {unit}{'s' if n != 1 else ''}"
    return f"{seconds} quiet second{'s' if seconds != 1 else ''}"


def line_for(kind: str, detail: str, actor: str, quiet_seconds: int | None = None) -> str:
    """The timeline's line for an effect, as people say it. Given the case's quiet period
    (the timeline knows it), the system's close names it."""
    if kind == "closed" and actor == SYSTEM_ACTOR and quiet_seconds is not None:
        return AUTO_CLOSED.format(quiet=quiet_period(quiet_seconds))
    text = WORDING.get(kind, "{kind} by {actor}")
    return text.format(actor=actor, detail=detail, words=detail.replace("_", " "), kind=kind)


def tells_for(kind: str) -> Tells:
    """Whom an effect of `kind` tells: its command's or system step's entry; a kind neither
    names tells the watchers."""
    return _TELLS.get(kind, Tells())


def notices_for(before: CaseState, after: CaseState, effect: Effect, actor: str
                ) -> list[Notice]:
    """Whom an applied change tells, and why, as its kind's entry says (tells_for)."""
    if effect.parts:
        return _macro_notices(before, after, effect, actor)
    kind, tells = effect.kind, tells_for(effect.kind)
    users: dict[str, str] = {}
    if tells.watchers:
        for watcher in after.watchers:
            users[watcher] = "watching"
    if tells.assignee and after.assignee and (
            not tells.new_assignee or after.assignee != before.assignee):
        users[after.assignee] = tells.assignee
    body, internal = NOTICE_TEXTS[tells.says](after)
    if tells.mentioned:
        for name in mentions(body):
            users[name] = "mentioned"
    users.pop(actor, None)
    requester = tells.requester and not internal and bool(after.requester.email)
    if not users and not requester and not tells.supervisors:
        return []
    supervisors = {"supervisors_of": after.queue, "supervisors_why": tells.supervisors
                   } if tells.supervisors else {}
    mails_comment = tells.says == "comment" and requester
    files = _comment_files(after) if mails_comment else []
    return [Notice(event=str(after.version), kind=kind, actor=actor,
                   text=line_for(kind, effect.detail, actor), body=body, internal=internal,
                   users=users, requester=requester, files=files,
                   comment=len(after.comments) - 1 if mails_comment else None,
                   **supervisors)]


def mark_mailed(state: CaseState, notices: list[Notice], delivered: list[Delivered]
                ) -> CaseState | None:
    """The case with each public comment the delivery emailed to its requester marked with
    the address (Comment.mailed_to), or None when nothing changed. The workflow applies it
    to the activity's answer and the history projection to the same recorded answer, so the
    case page reads "Sent to" from the live state instead of reading the history."""
    comment_of = {n.event: n.comment for n in notices if n.comment is not None}
    requester = state.requester.email.lower()
    comments = list(state.comments)
    changed = False
    for d in delivered:
        index = comment_of.get(d.event)
        if index is None or not 0 <= index < len(comments) or "email" not in d.channels \
                or d.recipient.lower() != requester:
            continue
        comment = comments[index]
        if comment.internal or d.recipient in comment.mailed_to:
            continue
        comments[index] = replace(comment, mailed_to=[*comment.mailed_to, d.recipient])
        changed = True
    return replace(state, comments=comments) if changed else None


def _comment_files(s: CaseState) -> list[FileRef]:
    """The files that came with the newest comment, for the requester's mail."""
    if not s.comments or s.comments[-1].internal:
        return []
    ids = set(s.comments[-1].attachments)
    return [a.file for a in s.attachments if a.id in ids]
