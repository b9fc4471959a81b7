"""Configuration only. Case data lives in Temporal, never in these tables."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from workers.model import SEARCH_ATTRIBUTE_TYPES
from workers.rules import QUEUE_RE


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

    class Meta:
        ordering = ["slug"]

    def __str__(self) -> str:
        return self.name


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
