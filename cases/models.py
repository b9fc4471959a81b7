"""Configuration only. Case data lives in Temporal, never in these tables."""

from __future__ import annotations

import hashlib
import secrets

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

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
