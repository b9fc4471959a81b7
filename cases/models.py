"""Configuration only. Case data lives in Temporal, never in these tables."""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower

from workers.model import SEARCH_ATTRIBUTE_TYPES
from workers.rules import QUEUE_RE, TYPE_NAME_RE


class BusinessCalendar(models.Model):
    """A queue's business hours (issue 17): its SLA counts working time only. A change applies
    to cases opened after it; an open case keeps the hours it was opened under (its input)."""

    name = models.CharField(max_length=100, unique=True)
    time_zone = models.CharField(max_length=64, default="UTC",
                                 help_text="An IANA time zone, e.g. Europe/London.")
    holidays_country = models.CharField(
        max_length=3, blank=True,
        help_text="Public holidays of this country are closed (ISO code, e.g. GB); empty: none.")
    holidays_subdivision = models.CharField(
        max_length=10, blank=True, help_text="Optional: a subdivision's holidays, e.g. ENG.")
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from cases.config.calendars import holiday_dates, valid_time_zone
        if not valid_time_zone(self.time_zone):
            raise ValidationError({"time_zone": "Not a known time zone."})
        if self.holidays_subdivision and not self.holidays_country:
            raise ValidationError({"holidays_country": "A subdivision needs its country."})
        if self.holidays_country:
            try:
                holiday_dates(self.holidays_country, self.holidays_subdivision, 2026, 1)
            except NotImplementedError as err:
                raise ValidationError({"holidays_country": str(err)}) from err


class WorkingHours(models.Model):
    """One span a calendar is open on one weekday, in its time zone (an end of 00:00 is
    midnight). Several spans a day are allowed (a lunch break); a weekday without any is
    closed."""

    WEEKDAYS = [(0, "Monday"), (1, "Tuesday"), (2, "Wednesday"), (3, "Thursday"),
                (4, "Friday"), (5, "Saturday"), (6, "Sunday")]
    calendar = models.ForeignKey(BusinessCalendar, on_delete=models.CASCADE,
                                 related_name="hours")
    weekday = models.PositiveSmallIntegerField(choices=WEEKDAYS)
    start = models.TimeField()
    end = models.TimeField()

    class Meta:
        ordering = ["weekday", "start"]
        verbose_name_plural = "working hours"

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.start:%H:%M}-{self.end:%H:%M}"

    def clean(self) -> None:
        if self.start is not None and self.end is not None and self.end.hour + \
                self.end.minute > 0 and self.end <= self.start:
            raise ValidationError({"end": "The end is after the start (00:00 is midnight)."})


class ClosedDay(models.Model):
    """A whole day a calendar is closed besides its country's holidays (a closure, a local
    holiday)."""

    calendar = models.ForeignKey(BusinessCalendar, on_delete=models.CASCADE,
                                 related_name="closed_days")
    date = models.DateField()
    name = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["date"]
        constraints = [models.UniqueConstraint(fields=["calendar", "date"],
                                               name="one_closure_per_day")]

    def __str__(self) -> str:
        return f"{self.date} {self.name}".strip()


class Queue(models.Model):
    """A queue cases are filed in, and the agents who work it."""

    slug = models.CharField(
        max_length=40,
        unique=True,
        validators=[RegexValidator(QUEUE_RE, "Lowercase letters, digits, '-' and '_'.")],
        help_text="The value stored on cases (CaseQueue); do not rename a queue in use.",
    )
    name = models.CharField(max_length=100)
    agents = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="case_queues",
        help_text="Agents who see and work this queue's cases. Supervisors see every queue.",
    )
    calendar = models.ForeignKey(
        BusinessCalendar, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="queues",
        help_text="Business hours the SLA counts (for cases opened from now on); "
                  "empty: around the clock.")
    ROUTING = [("manual", "Manual: agents claim cases"), ("round_robin", "Round-robin"),
               ("least_loaded", "Least loaded")]
    routing = models.CharField(
        max_length=12, choices=ROUTING, default="manual",
        help_text="How a case that arrives unassigned, is released or escalates here finds an "
                  "agent; agents who are away are skipped. For cases opened from now on.")
    # Escalation on breach (issue 17), besides telling the queue's supervisors; like the
    # calendar, a case keeps the policy it was opened under.
    escalate_raise_priority = models.BooleanField(
        default=False, help_text="On breach, make the case one step more urgent.")
    escalate_to_queue = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="On breach, move the case to this queue.")
    escalate_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
        related_name="+", help_text="On breach, give the case to this person.")
    # Mail in (issue 23): mail to this address opens a case here; replies find their case
    # by the signed reply address, whatever queue address they were sent to.
    email = models.EmailField(
        blank=True, help_text="Mail to this address opens a case in this queue (e.g. "
        "billing@example.com); empty: none.")
    # Issue 23: which of the comment box's two modes a case page of this queue starts in.
    PUBLIC, INTERNAL = "public", "internal"
    reply_default = models.CharField(
        max_length=8, choices=[(PUBLIC, "Public reply (mailed to the requester)"),
                               (INTERNAL, "Internal note (agents only)")], default=PUBLIC,
        help_text="The mode the comment box on this queue's cases starts in; agents can "
                  "switch it for each comment.")

    class Meta:
        ordering = ["slug"]
        constraints = [models.UniqueConstraint(
            Lower("email"), condition=~models.Q(email=""), name="queue_email_unique",
            violation_error_message="Another queue answers at this address.")]

    def __str__(self) -> str:
        return self.name


class AgentPresence(models.Model):
    """Whether a person is available for cases or away (issue 17), as they say it; no row is
    available. Configuration-like state in Django, shown to supervisors per queue."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                                related_name="presence")
    available = models.BooleanField(default=True)
    changed = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user}: {'available' if self.available else 'away'}"


class ApiToken(models.Model):
    """A bearer token for the intake API; only its hash is stored."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="api_tokens")
    name = models.CharField(max_length=100)
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    created = models.DateTimeField(auto_now_add=True)
    last_used = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.name} ({self.user})"

    @staticmethod
    def hash(key: str) -> str:
        return hashlib.sha256(key.encode()).hexdigest()

    @classmethod
    def issue(cls, user: object, name: str) -> tuple[ApiToken, str]:
        """Create a token; the plain key is returned once and never stored."""
        key = "trl_" + secrets.token_urlsafe(32)
        token = cls.objects.create(user=user, name=name, key_hash=cls.hash(key))
        return token, key


class SavedView(models.Model):
    """A named case-list filter (the list's query string), personal, for a group, or global."""

    PERSONAL, GROUP, GLOBAL = "personal", "group", "global"
    SCOPES = [(PERSONAL, "Only me"), (GROUP, "A group"), (GLOBAL, "Everyone")]

    name = models.CharField(max_length=80)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                              related_name="saved_views")
    scope = models.CharField(max_length=10, choices=SCOPES, default=PERSONAL)
    group = models.ForeignKey("auth.Group", null=True, blank=True, on_delete=models.CASCADE,
                              related_name="saved_views")
    # The case list's query string (filters only), e.g. "status=new&queue=billing".
    query = models.CharField(max_length=2000, blank=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(scope="group", group__isnull=False)
                | ~models.Q(scope="group"),
                name="group_view_has_group",
            )
        ]

    def __str__(self) -> str:
        return self.name


class GroupDefaultView(models.Model):
    """The view a group's members land on when they open the case list without a filter."""

    group = models.OneToOneField("auth.Group", on_delete=models.CASCADE,
                                 related_name="default_view")
    view = models.ForeignKey(SavedView, on_delete=models.CASCADE, related_name="default_for")

    def __str__(self) -> str:
        return f"{self.group}: {self.view}"


class CaseAttribute(models.Model):
    """A custom case attribute an admin registers as a Temporal search attribute."""

    TYPES = [(t, t) for t in SEARCH_ATTRIBUTE_TYPES]
    UNKNOWN, REGISTERED, MISSING, MISMATCH = "unknown", "registered", "missing", "mismatch"
    STATES = [(UNKNOWN, "Not checked"), (REGISTERED, "Registered"),
              (MISSING, "Missing in Temporal"), (MISMATCH, "Type mismatch")]

    name = models.CharField(max_length=64, unique=True,
                            help_text="The search attribute's name in Temporal, e.g. Region.")
    type = models.CharField(max_length=12, choices=TYPES)
    label = models.CharField(max_length=80)
    help_text = models.CharField(max_length=200, blank=True)
    choices = models.CharField(
        max_length=1000, blank=True,
        help_text="Keyword only: comma-separated allowed values (a select on forms, and a "
                  "dashboard breakdown). Empty: free text.")
    filterable = models.BooleanField(default=True)
    agent_editable = models.BooleanField(default=False,
                                         help_text="Agents may set it on cases they hold.")
    state = models.CharField(max_length=12, choices=STATES, default=UNKNOWN, editable=False)
    temporal_type = models.CharField(max_length=12, blank=True, editable=False)
    checked = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.label or self.name

    @property
    def choice_list(self) -> list[str]:
        return [c.strip() for c in self.choices.split(",") if c.strip()]


class NotificationPreference(models.Model):
    """How one person wants to be told of one kind of notice (workers.rules.NOTICE_KINDS).
    No row means both: the issue's default."""

    EMAIL, IN_APP, BOTH, NONE = "email", "in-app", "both", "none"
    CHANNELS = [(BOTH, "Email and in-app"), (EMAIL, "Email only"), (IN_APP, "In-app only"),
                (NONE, "Not at all")]

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="notification_preferences")
    kind = models.CharField(max_length=20)
    channel = models.CharField(max_length=10, choices=CHANNELS, default=BOTH)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "kind"],
                                               name="one_preference_per_kind")]

    def __str__(self) -> str:
        return f"{self.user}: {self.kind} by {self.channel}"


class Notification(models.Model):
    """An in-app notice in one person's inbox. Not case data: the case's own record of who
    was told is its history (the delivery's result on the timeline); this is the person's
    inbox, which they read and clear. References only (ADR-002): the case, the version its
    change made, why the person was told and who acted; the page reads the title and what
    was said from Temporal. One per (user, case, event): the unique key makes a retried
    delivery add nothing."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE,
                             related_name="notifications")
    case_id = models.CharField(max_length=20)
    # The case's queue when it was told: the inbox shows a notice only while its reader can
    # still see that queue (cases.notify.inbox.seen_by, the one rule for notices).
    queue = models.CharField(max_length=50, blank=True, default="")
    event = models.CharField(max_length=20)
    kind = models.CharField(max_length=20)  # why they were told (workers.rules.NOTICE_KINDS)
    actor = models.CharField(max_length=150, blank=True, default="")
    created = models.DateTimeField(auto_now_add=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created", "-id"]
        constraints = [models.UniqueConstraint(fields=["user", "case_id", "event"],
                                               name="one_notification_per_event")]
        indexes = [models.Index(fields=["user", "read_at"], name="unread_by_user")]

    def __str__(self) -> str:
        return f"{self.user}: {self.case_id} v{self.event} ({self.kind})"


class EmailDelivery(models.Model):
    """The delivery ledger: one row per email, keyed by its Message-ID. The row is claimed
    (`sending`) before the send and marked `sent` or `refused` after it; a retried delivery
    that finds a row sends nothing, whatever its outcome (exactly once per case, event and
    recipient, even when the worker died between the send and the mark)."""

    SENDING, SENT, REFUSED = "sending", "sent", "refused"

    # A Message-ID of fixed length but for the site's domain (a hostname, at most 253).
    message_id = models.CharField(max_length=320, unique=True)
    case_id = models.CharField(max_length=20)
    events = models.TextField()  # the case versions the email tells of, comma-separated
    recipient = models.CharField(max_length=254)  # a username or the requester's address
    sent_at = models.DateTimeField(auto_now_add=True)
    outcome = models.CharField(max_length=10, default=SENT, choices=[
        (SENDING, "sending"), (SENT, "sent"), (REFUSED, "refused")])
    reply = models.TextField(blank=True)  # the SMTP server's permanent refusal

    def __str__(self) -> str:
        return self.message_id


class QueueMailbox(models.Model):
    """A hosted mailbox (Microsoft 365, Gmail, any IMAP server) `poll_mailboxes` reads for a
    queue (issue 23). The password is stored sealed (cases/config/sealing.py), never plain;
    the admin form takes a new one and never shows it."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="mailboxes")
    host = models.CharField(max_length=253)
    port = models.PositiveIntegerField(default=993)
    use_tls = models.BooleanField(
        default=True, help_text="Implicit TLS (IMAPS, port 993). Off only for a server on "
                                "this host or a test; the password then travels in clear.")
    username = models.CharField(max_length=254)
    password_sealed = models.TextField(blank=True, editable=False)
    folder = models.CharField(max_length=200, default="INBOX")
    enabled = models.BooleanField(default=True)
    # What the poller last saw, for the admin to read; written by the poller only.
    last_poll = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_count = models.PositiveIntegerField(default=0, editable=False,
                                             help_text="Messages handed over by the last poll.")

    class Meta:
        ordering = ["queue__slug", "username"]
        constraints = [models.UniqueConstraint(fields=["host", "username", "folder"],
                                               name="one_mailbox_per_folder")]

    def __str__(self) -> str:
        return f"{self.username}@{self.host}/{self.folder} → {self.queue.slug}"

    def clean(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ValidationError({"port": "A port number is 1-65535."})

    def set_password(self, plain: str) -> None:
        from cases.config.sealing import seal
        self.password_sealed = seal(plain)

    def password(self) -> str:
        """The plain password, for the poller's login; raises Unsealable under another key."""
        from cases.config.sealing import unseal
        return unseal(self.password_sealed) if self.password_sealed else ""


class MailIgnored(models.Model):
    """A received mail that opened no case and added no comment (issue 23): an auto-reply, a
    bounce, a list's mail, our own, or a sender over the rate ("held"). Who and why only,
    never the mail's text; the newest MAIL_IGNORED_KEEP rows are kept."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    door = models.CharField(max_length=60)  # "smtp" or "imap:<queue>"
    sender = models.CharField(max_length=254, blank=True)
    message_id = models.CharField(max_length=320, blank=True)
    held = models.BooleanField(default=False)  # over the sender's rate, rather than noise
    reason = models.CharField(max_length=200)

    class Meta:
        ordering = ["-at", "-pk"]
        verbose_name = "ignored mail"
        verbose_name_plural = "ignored mail"

    def __str__(self) -> str:
        return f"{self.sender or '?'}: {self.reason}"


class MailOpened(models.Model):
    """A case a sender's mail opened, for the per-sender rate (MAIL_SENDER_CASES_PER_MINUTE);
    rows older than an hour go."""

    case_id = models.CharField(max_length=20, unique=True)
    sender = models.CharField(max_length=254, db_index=True)  # lower case
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    def __str__(self) -> str:
        return f"{self.sender} opened {self.case_id}"


class StoredBlob(models.Model):
    """One file's bytes in STORAGES["attachments"] (issue 23), by SHA-256, and how many
    keeps hold it: a keep adds one, a discard (its command refused) takes one back, and the
    bytes go only when none are left, so a file two cases share survives one refusal. No
    case text: a hash, a size and a count."""

    sha256 = models.CharField(max_length=64, primary_key=True)
    size = models.BigIntegerField()
    claims = models.PositiveIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.sha256[:12]}... x{self.claims}"


class CaseType(models.Model):
    """A queue's case type (issue 25): which registered attributes its cases show, which are
    required, their defaults. Saving a change makes a new CaseTypeVersion; a case keeps the
    version it was opened with (it is in the case's state), new cases get the newest."""

    queue = models.ForeignKey(Queue, on_delete=models.CASCADE, related_name="case_types")
    name = models.CharField(
        max_length=40, validators=[RegexValidator(
            TYPE_NAME_RE, "Lowercase letters, digits, '-' and '_', starting with a letter.")],
        help_text="Stored on cases: do not rename a type in use.")
    label = models.CharField(max_length=100)
    is_default = models.BooleanField(
        default=False, help_text="Mail in and the intake API open cases of this type when "
                                 "none is named (one per queue).")

    class Meta:
        ordering = ["queue__slug", "name"]
        constraints = [
            models.UniqueConstraint(fields=["queue", "name"], name="case_type_name_per_queue"),
            models.UniqueConstraint(fields=["queue"], condition=models.Q(is_default=True),
                                    name="one_default_case_type_per_queue"),
        ]

    def __str__(self) -> str:
        return f"{self.queue.slug}: {self.label}"


class CaseTypeField(models.Model):
    """One registered attribute a case type shows; its default as the form would type it."""

    case_type = models.ForeignKey(CaseType, on_delete=models.CASCADE, related_name="fields")
    attribute = models.ForeignKey("CaseAttribute", on_delete=models.CASCADE, related_name="+")
    required = models.BooleanField(default=False)
    default = models.CharField(
        max_length=2000, blank=True,
        help_text="Empty: none. Yes/no for a yes-or-no attribute, comma-separated for a list, "
                  "ISO 8601 with a time zone for a date.")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position", "id"]
        constraints = [models.UniqueConstraint(fields=["case_type", "attribute"],
                                               name="case_type_field_once")]

    def __str__(self) -> str:
        return f"{self.attribute_id}{' (required)' if self.required else ''}"


class CaseTypeVersion(models.Model):
    """One saved version of a case type, never changed once written (cases carry it)."""

    case_type = models.ForeignKey(CaseType, on_delete=models.CASCADE, related_name="versions")
    version = models.PositiveIntegerField()
    # workers.model.CaseTypeSpec as JSON (cases/config/case_types.py writes and reads it).
    spec = models.JSONField()
    saved = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["case_type", "-version"]
        constraints = [models.UniqueConstraint(fields=["case_type", "version"],
                                               name="case_type_version_once")]

    def __str__(self) -> str:
        return f"version {self.version}"


class Macro(models.Model):
    """A canned reply and changes to a case (issue 25), applied as one Update. Shared (no
    owner: admins keep them) for one queue or every queue, or personal (an owner's)."""

    STATUSES = [("", "—"), ("new", "New"), ("in_progress", "In progress"),
                ("waiting", "Waiting"), ("resolved", "Resolved"), ("closed", "Closed")]
    PRIORITIES = [(1, "1 · Urgent"), (2, "2 · High"), (3, "3 · Normal"), (4, "4 · Low")]

    name = models.CharField(max_length=100)
    queue = models.ForeignKey(Queue, null=True, blank=True, on_delete=models.CASCADE,
                              related_name="macros", help_text="Empty: offered in every queue.")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                              on_delete=models.CASCADE, related_name="macros",
                              help_text="Empty: a shared macro. Set: that person's own.")
    body = models.TextField(blank=True, max_length=10_000, verbose_name="reply",
                            help_text="Filled in for each case; empty sends no reply.")
    internal = models.BooleanField(default=False, verbose_name="reply as an internal note")
    status = models.CharField(max_length=12, blank=True, choices=STATUSES)
    priority = models.PositiveSmallIntegerField(null=True, blank=True, choices=PRIORITIES)
    add_tags = models.CharField(max_length=500, blank=True, help_text="Space-separated.")
    remove_tags = models.CharField(max_length=500, blank=True, help_text="Space-separated.")
    assignee = models.CharField(max_length=150, blank=True,
                                help_text="A username to give the case to; empty: as it is.")
    unassign = models.BooleanField(default=False, help_text="Leave the case with nobody.")
    attributes = models.JSONField(default=dict, blank=True,
                                  help_text='Registered attributes to set: {"Name": value}.')
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        from cases import macros

        types = dict(CaseAttribute.objects.filter(state=CaseAttribute.REGISTERED)
                     .values_list("name", "type"))
        errors: dict[str, Any] = {}
        try:
            macros.check_template(self.body, types)
        except ValidationError as err:
            errors["body"] = err.messages
        try:
            macros.check_changes(self, types)
        except ValidationError as err:
            errors.update(err.message_dict)
        if self.assignee and self.unassign:
            errors["unassign"] = "Either give the case to someone or to nobody."
        if errors:
            raise ValidationError(errors)
