"""Dataclasses exchanged with the Case workflow.

Plain dataclasses with no Temporal or Django imports, so the web tier can render them and the
workflow sandbox can load them without pulling in anything non-deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .business_hours import WorkingTime

# A case's statuses and how people read them: the one list the forms, filters, dashboard,
# exports and templates use.
STATUS_LABELS = {
    "new": "New",
    "in_progress": "In progress",
    "waiting": "Waiting",
    "resolved": "Resolved",
    "closed": "Closed",
}
STATUSES = tuple(STATUS_LABELS)
OPEN_STATUSES = ("new", "in_progress", "waiting")
PRIORITIES = (1, 2, 3, 4)
PRIORITY_LABELS = {1: "Urgent", 2: "High", 3: "Normal", 4: "Low"}
SYSTEM_ACTOR = "system"

# The types a search attribute can have, by Temporal's names: the one list that the
# registry's choices, the per-type SQL limits and the SDK keys are made from, and that every
# per-type rule (form field, query clause, validation) must cover (tests/test_attribute_types.py).
SEARCH_ATTRIBUTE_TYPES: tuple[str, ...] = (
    "Keyword", "Text", "Int", "Double", "Bool", "Datetime", "KeywordList")

# The core case search attributes, name -> Temporal type: the one list that
# workers/search_attributes.py makes keys of and that admin-registered names must avoid.
CORE_ATTRIBUTES: dict[str, str] = {
    "CaseStatus": "Keyword",
    "CaseAssignee": "Keyword",
    "CaseQueue": "Keyword",
    "CasePriority": "Int",
    "CaseTitle": "Text",
    "CaseTags": "KeywordList",
    "CaseDueAt": "Datetime",
    "CaseUpdatedAt": "Datetime",
    "CaseSlaBreached": "Bool",
    "CaseAtRisk": "Bool",
}


@dataclass
class Escalation:
    """What a breach does besides telling the queue's supervisors (issue 17): the queue's
    policy as the case was opened."""

    raise_priority: bool = False  # one step more urgent (4 -> 3 ... 1 stays 1)
    to_queue: str = ""  # move the case to this queue
    to_assignee: str = ""  # give the case to this person


@dataclass
class SlaPolicy:
    """Seconds from creation (or re-prioritisation) to due, indexed by priority - 1: working
    seconds of `working` (the queue's business hours) where the case has them, else wall clock."""

    seconds_by_priority: list[int] = field(
        default_factory=lambda: [4 * 3600, 8 * 3600, 24 * 3600, 72 * 3600]
    )
    # The queue's calendar as the case was opened (issue 17); None counts every second.
    working: WorkingTime | None = None
    # Per priority, the share of the time to due after which the case is at risk (0.75: a
    # warning when three quarters are used); None: no warning (cases opened before issue 17).
    at_risk_by_priority: list[float] | None = None
    # The queue's escalation on breach; None: the breach only tells (cases before issue 17).
    escalation: Escalation | None = None

    def seconds_for(self, priority: int) -> int:
        return self.seconds_by_priority[priority - 1]


@dataclass
class TypeField:
    """One registered attribute a case type shows (issue 25): whether the case must have it
    and the value a new case starts with (AttributeValue-shaped JSON: None for none)."""

    name: str
    required: bool = False
    default: Any = None
    # The attribute's label in the registry when this version was saved: a refusal's words
    # ("Order no. is required…"). "" (versions saved before it): words made from the name.
    label: str = ""


@dataclass
class CaseTypeSpec:
    """A queue's case type as one version of it was saved (issue 25). A case keeps the
    version it was opened (or re-typed) with; a later change applies to new cases only."""

    name: str  # a slug, unique within its queue
    label: str = ""
    version: int = 1
    fields: list[TypeField] = field(default_factory=list)


@dataclass
class QueuePolicy:
    """What a case in a queue gets of its queue's configuration (issue 22): the SLA (seconds,
    business hours, at-risk shares, escalation) and whether its router finds it an agent. The
    one answer the web, the intake API and the workflow's `queue_policy` activity give
    (cases/config/queue_policy.py builds it); plain data, so it passes through history."""

    queue: str = ""
    sla: SlaPolicy = field(default_factory=SlaPolicy)
    route: bool = False
    # The queue's case types by name, each as its current version (issue 25).
    case_types: dict[str, CaseTypeSpec] = field(default_factory=dict)


@dataclass
class Requester:
    name: str
    email: str


@dataclass
class FileRef:
    """A stored file by reference (issue 23, claim check): its bytes are in Django's storage
    under `key`, never in a workflow. `content_type` is sniffed from the bytes (filetype), not
    taken from the sender. cases/files/store.py makes these; nothing else does."""

    name: str
    size: int
    content_type: str
    sha256: str
    key: str


@dataclass
class Attachment:
    """A file on a case: what the `attach` command (or a comment, or a mail) recorded.
    `id` is unique within its case and never reused (the download URL names it)."""

    id: str
    file: FileRef
    by: str
    at: datetime
    # The comment it came with (its index in `comments`), or None for a file on its own.
    comment: int | None = None


@dataclass
class Comment:
    author: str
    body: str
    internal: bool
    at: datetime
    # Issue 23. Ids of the attachments that came with it.
    attachments: list[str] = field(default_factory=list)
    # "" typed on the case page (or sent by the API); "email": a mail received.
    via: str = ""
    # A mail received: who sent it ("Ada Lovelace <ada@example.com>"), and the attachment id
    # of the whole message as received (.eml): the full text, one click away.
    sender: str = ""
    original: str = ""
    # A public comment the requester was emailed: the address it went to, as the delivery
    # answered (rules.mark_mailed), so the case page says "Sent to" from the live state.
    mailed_to: list[str] = field(default_factory=list)
    # A mail received: its Message-ID, so the same mail is never a second comment (an
    # Update id is only unique within one run; a case continues as new).
    message_id: str = ""


@dataclass
class AttributeValue:
    """A custom (admin-registered) attribute's value on a case, with its search attribute type.
    JSON-friendly: Datetime values are ISO-8601 strings, KeywordList values lists of strings."""

    type: str  # Keyword, Text, Int, Double, Bool, Datetime or KeywordList
    value: Any  # None unsets


@dataclass
class CaseState:
    case_id: str
    title: str
    description: str
    requester: Requester
    queue: str
    priority: int
    status: str
    created_at: datetime
    created_by: str
    updated_at: datetime
    updated_by: str
    assignee: str | None = None
    tags: list[str] = field(default_factory=list)
    due_at: datetime | None = None
    sla_breached: bool = False
    # At risk of breaching (issue 17): flagged by a durable timer at `at_risk_at`, cleared by
    # a new due time or priority, and by the breach itself.
    at_risk: bool = False
    at_risk_at: datetime | None = None
    comments: list[Comment] = field(default_factory=list)
    resolution: str = ""
    resolved_at: datetime | None = None
    closed_at: datetime | None = None
    version: int = 1
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    # Usernames told of every change (issue 16); anyone who can see the case may watch it.
    watchers: list[str] = field(default_factory=list)
    # Files on the case (issue 23), by reference; bounded by rules.MAX_ATTACHMENTS.
    attachments: list[Attachment] = field(default_factory=list)
    # A follow-up case (a reply to a closed case, issue 23) names the case it follows.
    follows: str = ""
    # Its type as it was opened or re-typed with (issue 25); None: an untyped case.
    case_type: CaseTypeSpec | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES


@dataclass
class NewCase:
    """What a person (or the intake API) supplies to open a case."""

    title: str
    queue: str
    priority: int = 3
    description: str = ""
    requester_name: str = ""
    requester_email: str = ""
    tags: list[str] = field(default_factory=list)
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
    # Issue 23: files it opens with (a mail's attachments and the .eml itself), how it came
    # ("" the page or the API, "email"), and the closed case it follows up, if any.
    files: list[FileRef] = field(default_factory=list)
    via: str = ""
    follows: str = ""
    # Issue 25: the name of one of its queue's case types ("" untyped); the type's required
    # fields must be among `attributes` (its defaults fill the rest).
    case_type: str = ""


@dataclass
class Notice:
    """One change someone is to be told of. The workflow names who (`users` by username,
    each with the reason they are told, and whether the requester is); the activity decides
    whether each may see it and how each wants it."""

    event: str  # the case's version the change made: stable across retries and replays
    kind: str  # assigned, watching, mentioned, comment, resolved, sla_breached
    actor: str
    text: str  # one line, as the timeline says it
    body: str = ""  # a comment's text or a resolution
    internal: bool = False  # an internal note: agents only, never the requester
    # username -> the per-kind preference it is delivered under (assigned, watching, ...)
    users: dict[str, str] = field(default_factory=dict)
    requester: bool = False
    # Queue whose supervisors are told (an SLA breach, a case at risk), and the per-kind
    # preference they are told under.
    supervisors_of: str = ""
    supervisors_why: str = "sla_breached"
    # The files of a public comment, for the requester's mail (issue 23): references only,
    # the delivery reads the bytes. Never those of an internal note.
    files: list[FileRef] = field(default_factory=list)
    # The public comment (its index) this notice mails the requester, so the delivery's
    # answer can mark it mailed; None for every other notice.
    comment: int | None = None



@dataclass
class NoticeBatch:
    """A case's notices gathered over one quiet period: one delivery, one email each."""

    case_id: str
    title: str
    queue: str
    requester: Requester
    notices: list[Notice] = field(default_factory=list)


@dataclass
class Delivered:
    """One notice told to one person, the activity's answer and a line on the timeline."""

    event: str
    recipient: str  # a username, or the requester's email address
    channels: list[str]  # "email", "in-app"
    message_id: str = ""
    # The mail server refused the email for good: its reply ("550 5.1.1 ..."); the email is
    # then not among `channels`.
    refused: str = ""


@dataclass
class CaseInput:
    """Workflow input. `state` is taken only when the workflow continues as new; every bound
    is checked by rules.admit."""

    case_id: str
    actor: str
    new: NewCase | None = None
    # Cases started before issue 22 carry their queue's SLA here and `route` below; newer
    # ones carry `policy`, and a case started without one asks its queue (an activity).
    sla: SlaPolicy = field(default_factory=SlaPolicy)
    auto_close_seconds: int = 7 * 24 * 3600
    state: CaseState | None = None
    # Continue-as-new once history passes this many events even if the server has not
    # suggested it yet; lets tests exercise the hand-over without 10k events.
    history_event_limit: int | None = None
    # Seconds without a new notice before a case's notices go out as one batch (a burst of
    # comments is one email); a durable timer, so it holds across worker restarts.
    notify_quiet_seconds: float = 30.0
    # Notices made but not yet delivered when the run continued as new.
    pending_notices: list[Notice] = field(default_factory=list)
    # The case's queue routes cases to agents (issue 17): it asks its queue's router when it
    # arrives unassigned, is released or escalates. False for cases opened before.
    route: bool = False
    # The queue's policy the case was given (issue 22); None: the case asks its queue.
    policy: QueuePolicy | None = None


# --- Update inputs: one dataclass per command, each carrying the acting user. -----------------


@dataclass
class Authority:
    """What the acting user may do, sent with each command so the workflow decides it
    against the case as it is at that moment (not as the web tier last saw it)."""

    role: str  # "agent" is restricted; "supervisor" and "admin" may do everything
    queues: list[str] | None = None  # the agent's queues; None means every queue
    # Custom attributes an agent may set (on cases they hold); None means any.
    attributes: list[str] | None = None


@dataclass(kw_only=True)
class Command:
    actor: str
    # The version the user saw; None skips the staleness check (API clients, bulk work).
    expected_version: int | None = None
    # None: a trusted caller (system, intake, seeding); no role restrictions.
    authority: Authority | None = None


@dataclass(kw_only=True)
class Claim(Command):
    pass


@dataclass(kw_only=True)
class Assign(Command):
    assignee: str | None  # None unassigns


@dataclass(kw_only=True)
class SetPriority(Command):
    priority: int


@dataclass(kw_only=True)
class SetStatus(Command):
    status: str


@dataclass(kw_only=True)
class AddComment(Command):
    body: str
    internal: bool = False
    files: list[FileRef] = field(default_factory=list)  # issue 23: attached with it


@dataclass(kw_only=True)
class Attach(Command):
    """Files added to a case on their own (issue 23)."""

    files: list[FileRef]


@dataclass(kw_only=True)
class ReceiveMail(Command):
    """A mail that answers a case (issue 23), matched by cases/mailin: a public comment from
    the requester, an internal note from anyone else; it reopens a resolved case. The Update
    id is derived from `message_id`, so the same mail twice is one comment."""

    sender_name: str
    sender_email: str
    message_id: str
    body: str  # quotes and signature stripped
    files: list[FileRef] = field(default_factory=list)
    original: FileRef | None = None  # the message as received


@dataclass
class MacroChanges:
    """What a macro changes besides its reply (issue 25); None / empty: left as it is."""

    status: str | None = None
    priority: int | None = None
    add_tags: list[str] = field(default_factory=list)
    remove_tags: list[str] = field(default_factory=list)
    # A username, "" to unassign, None to leave the holder as it is.
    assignee: str | None = None
    attributes: dict[str, AttributeValue] = field(default_factory=dict)


@dataclass(kw_only=True)
class ApplyMacro(Command):
    """A macro applied to a case (issue 25): its reply and every change as one Update, all
    or nothing. `body` is the reply as rendered for this case and person (the web renders
    the macro's template; any Temporal client may send its own text)."""

    macro: str  # the macro's name, for the timeline and its use counts
    body: str = ""  # "" sends no reply
    internal: bool = False
    changes: MacroChanges = field(default_factory=MacroChanges)


@dataclass(kw_only=True)
class SetCaseType(Command):
    """A supervisor changes a case's type (issue 25): the type as its queue has it now."""

    case_type: CaseTypeSpec


@dataclass(kw_only=True)
class AddTag(Command):
    tag: str


@dataclass(kw_only=True)
class RemoveTag(Command):
    tag: str


@dataclass(kw_only=True)
class SetDue(Command):
    due_at: datetime


@dataclass(kw_only=True)
class Resolve(Command):
    resolution: str


@dataclass(kw_only=True)
class Reopen(Command):
    reason: str = ""


@dataclass(kw_only=True)
class Close(Command):
    pass


@dataclass(kw_only=True)
class SetAttributes(Command):
    values: dict[str, AttributeValue]


@dataclass(kw_only=True)
class Watch(Command):
    pass


@dataclass(kw_only=True)
class Unwatch(Command):
    pass


@dataclass(kw_only=True)
class ChangeRequester(Command):
    name: str
    email: str


@dataclass
class EscalationAsk:
    """May a breach give the case to its policy's person (issue 22)? Asked of the access
    rule at the breach, in the queue the case will then be in: the queue's agents may have
    changed since the policy was saved."""

    case_id: str
    queue: str
    assignee: str


@dataclass
class RouteAsk:
    """A case asks for an agent (issue 17): the activity adds the queue's mode and who is
    available, from Django, and asks the queue's router."""

    case_id: str
    queue: str
    why: str  # arrived, released, escalated


@dataclass
class RouterAsk:
    case_id: str
    mode: str
    candidates: list[str]
    why: str


@dataclass
class RoutePick:
    agent: str  # "" when nobody was picked
    reason: str


@dataclass
class RouteHold:
    """A case tells its queue's router who holds it now (issue 22); `version` is the case's,
    naming the note so that a retry is the same Update."""

    case_id: str
    queue: str
    agent: str  # "" for nobody
    version: int


@dataclass
class RouterHold:
    """Who holds an open case of the router's queue now (issue 22): "" for nobody (ended,
    released, moved away). The whole truth, not a change, so a repeat is harmless."""

    case_id: str
    agent: str


@dataclass
class RouterState:
    """The router's memory, handed over on continue-as-new."""

    last: str = ""
    # Open cases of the queue by case id, to the agent holding each: what least-loaded counts.
    held: dict[str, str] = field(default_factory=dict)
    # How many of `held` each agent has: for reading (the `state` Query), never read back.
    load: dict[str, int] = field(default_factory=dict)


@dataclass
class SlaBreachNotice:
    case_id: str
    title: str
    queue: str
    assignee: str | None
    due_at: datetime
