from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest

from .models import ApiToken, Queue


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ("slug", "name", "agent_names")
    filter_horizontal = ("agents",)
    search_fields = ("slug", "name")

    @admin.display(description="Agents")
    def agent_names(self, obj: Queue) -> str:
        return ", ".join(u.get_username() for u in obj.agents.all()) or "—"


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ("name", "user", "created", "last_used")
    readonly_fields = ("created", "last_used")
    fields = ("name", "user", "created", "last_used")

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        if not change:
            # Shown once: only the hash is stored.
            token, key = ApiToken.issue(obj.user, obj.name)
            obj.pk, obj.key_hash = token.pk, token.key_hash
            messages.warning(request, f"Token for {obj.user}: {key} — copy it now, it is not "
                                      "shown again.")
            return
        super().save_model(request, obj, form, change)
