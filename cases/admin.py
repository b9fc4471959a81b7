from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from asgiref.sync import async_to_sync
from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from cases import temporal
from cases.config import attributes, case_types
from cases.config.access import refusal_to_give
from cases.models import (
    ApiToken,
    BusinessCalendar,
    CaseAttribute,
    CaseType,
    CaseTypeField,
    CaseTypeVersion,
    ClosedDay,
    EmailDelivery,
    Macro,
    MailIgnored,
    NotificationPreference,
    Queue,
    QueueMailbox,
    WorkingHours,
)
from workers import rules


def _namespace_or_say_why(request: HttpRequest) -> temporal.NamespaceAttributes | None:
    """The namespace's attributes, or None after telling the admin why Temporal did not say."""
    try:
        return async_to_sync(temporal.namespace_attributes)()
    except temporal.GatewayError as err:
        messages.error(request, err.message)
        return None


class QueueForm(forms.ModelForm):
    class Meta:
        model = Queue
        fields = ("slug", "name", "email", "agents", "calendar", "routing",
                  "escalate_raise_priority", "escalate_to_queue", "escalate_to", "reply_default")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        person, target = cleaned.get("escalate_to"), cleaned.get("escalate_to_queue")
        if person is None:
            return cleaned
        # A breach gives the case to this person in the queue it moves to (else this one):
        # only someone who can see that queue's cases (the breach checks it again, as the
        # queue's agents may change after this).
        if target is None or (self.instance.pk and target.pk == self.instance.pk):
            slug, name = cleaned.get("slug") or "", cleaned.get("name") or ""
            agents = [u.pk for u in cleaned.get("agents") or []]
        else:
            slug, name, agents = target.slug, target.name, None
        refused = refusal_to_give(person.get_username(), slug, name, agents)
        if refused:
            self.add_error("escalate_to", f"{refused}: a breach would give them a case they "
                                          "cannot open.")
        return cleaned


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    form = QueueForm
    list_display = ("slug", "name", "email", "calendar", "reply_default", "agent_names")
    raw_id_fields = ("escalate_to",)
    filter_horizontal = ("agents",)
    search_fields = ("slug", "name", "email")

    @admin.display(description="Agents")
    def agent_names(self, obj: Queue) -> str:
        return ", ".join(u.get_username() for u in obj.agents.all()) or "—"


class WorkingHoursInline(admin.TabularInline):
    model = WorkingHours
    extra = 0


class ClosedDayInline(admin.TabularInline):
    model = ClosedDay
    extra = 0


@admin.register(BusinessCalendar)
class BusinessCalendarAdmin(admin.ModelAdmin):
    """Business hours for queues' SLAs; a change applies to cases opened after it."""

    list_display = ("name", "time_zone", "holidays_country", "holidays_subdivision")
    inlines = (WorkingHoursInline, ClosedDayInline)


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


# --- custom case attributes (Temporal search attributes) ------------------------------------


class CaseAttributeForm(forms.ModelForm):
    class Meta:
        model = CaseAttribute
        fields = ("name", "type", "label", "help_text", "choices", "filterable",
                  "agent_editable")

    def clean_name(self) -> str:
        name = (self.cleaned_data.get("name") or "").strip()
        attributes.validate_name(name)
        # Unique in any letter case: "Region" and "region" would only confuse people.
        others = CaseAttribute.objects.filter(name__iexact=name)
        if self.instance.pk:
            others = others.exclude(pk=self.instance.pk)
        clash = others.first()
        if clash is not None:
            raise forms.ValidationError(f"The registry already has “{clash.name}”.")
        return name

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("choices", "").strip() and cleaned.get("type") != "Keyword":
            self.add_error("choices", "Allowed values are only for Keyword attributes; "
                                      "leave this empty or change the type to Keyword.")
        return cleaned


def _mark(row: CaseAttribute, state: str, temporal_type: str, now: datetime) -> None:
    row.state, row.temporal_type, row.checked = state, temporal_type, now
    row.save(update_fields=["state", "temporal_type", "checked"])


def _names(rows: Iterable[CaseAttribute]) -> str:
    return ", ".join(r.name for r in rows)


def _slots(custom_in_temporal: dict[str, str]) -> list[dict[str, Any]]:
    in_use = attributes.used(custom_in_temporal)
    free = attributes.remaining(custom_in_temporal)
    core = Counter(attributes.CORE_ATTRIBUTES.values())
    return [
        {"type": t, "used": in_use[t], "core": core.get(t, 0), "limit": limit,
         "remaining": free[t]}
        for t, limit in attributes.SQL_LIMITS.items()
    ]


@admin.register(CaseAttribute)
class CaseAttributeAdmin(admin.ModelAdmin):
    """The registry of custom case attributes and their search attributes in Temporal."""

    form = CaseAttributeForm
    list_display = ("name", "label", "type", "filterable", "agent_editable", "state_label",
                    "checked")
    list_filter = ("type", "state", "filterable", "agent_editable")
    search_fields = ("name", "label")
    readonly_fields = ("state_label", "temporal_type", "checked")
    actions = ("register_in_temporal", "sync_from_temporal", "remove_from_temporal")

    @admin.display(description="State", ordering="state")
    def state_label(self, obj: CaseAttribute) -> str:
        label = obj.get_state_display()
        if obj.state == CaseAttribute.MISMATCH and obj.temporal_type:
            return f"{label} ({obj.temporal_type} in Temporal)"
        return label

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        if obj is not None and obj.state == CaseAttribute.REGISTERED:
            # Renaming or retyping would orphan the search attribute in Temporal.
            fields = ("name", "type", *fields)
        return fields

    def save_model(self, request: HttpRequest, obj: CaseAttribute, form: Any,
                   change: bool) -> None:
        if change and {"name", "type"} & set(form.changed_data):
            obj.state, obj.temporal_type, obj.checked = CaseAttribute.UNKNOWN, "", None
        super().save_model(request, obj, form, change)

    # --- the changelist: free slots per type ----------------------------------------------

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None
                        ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        if request.method == "GET":
            try:
                found = async_to_sync(temporal.namespace_attributes)()
            except temporal.GatewayError as err:
                extra_context["temporal_error"] = err.message
            else:
                extra_context["slots"] = _slots(found.custom)
        return super().changelist_view(request, extra_context)

    # --- actions ----------------------------------------------------------------------------

    @admin.action(description="Register in Temporal", permissions=["change"])
    def register_in_temporal(self, request: HttpRequest, queryset: QuerySet[CaseAttribute]
                             ) -> None:
        found = _namespace_or_say_why(request)
        if found is None:
            return
        now = timezone.now()
        to_add: list[CaseAttribute] = []
        already: list[CaseAttribute] = []
        for row in queryset:
            try:
                attributes.validate_name(row.name, also_reserved=found.system)
            except ValidationError as err:
                messages.error(request, f"{row.name}: {' '.join(err.messages)} Not registered.")
                continue
            existing = found.custom.get(row.name)
            if existing == row.type:
                _mark(row, CaseAttribute.REGISTERED, existing, now)
                already.append(row)
            elif existing is not None:
                # Temporal would accept the call and keep the old type: say so instead.
                _mark(row, CaseAttribute.MISMATCH, existing, now)
                messages.error(
                    request,
                    f"{row.name} already exists in Temporal as {existing}, not {row.type}; "
                    f"remove it from Temporal first or change the type here. Not registered.")
            else:
                to_add.append(row)
        if already:
            messages.info(request, f"Already registered: {_names(already)}.")
        if not to_add:
            return
        wanted = {row.name: row.type for row in to_add}
        refusals = attributes.check_capacity(wanted, found.custom)
        if refusals:
            for reason in refusals:
                messages.error(request, reason)
            messages.error(request, f"Nothing registered: {_names(to_add)}.")
            return
        try:
            async_to_sync(temporal.register_attributes)(wanted)
        except temporal.GatewayError as err:
            messages.error(request, err.message)
            return
        now = timezone.now()
        for row in to_add:
            _mark(row, CaseAttribute.REGISTERED, row.type, now)
        messages.success(request, f"Registered in Temporal: {_names(to_add)}.")

    @admin.action(description="Sync from Temporal", permissions=["view"])
    def sync_from_temporal(self, request: HttpRequest, queryset: QuerySet[CaseAttribute]
                           ) -> None:
        found = _namespace_or_say_why(request)
        if found is None:
            return
        now = timezone.now()
        by_state: dict[str, list[CaseAttribute]] = {}
        for row in queryset:
            existing = found.custom.get(row.name)
            if existing is None:
                state = CaseAttribute.MISSING
            elif existing == row.type:
                state = CaseAttribute.REGISTERED
            else:
                state = CaseAttribute.MISMATCH
            _mark(row, state, existing or "", now)
            by_state.setdefault(state, []).append(row)
        if by_state.get(CaseAttribute.REGISTERED):
            messages.success(request, f"Registered: {_names(by_state[CaseAttribute.REGISTERED])}.")
        if by_state.get(CaseAttribute.MISSING):
            messages.warning(
                request, f"Missing in Temporal: {_names(by_state[CaseAttribute.MISSING])}.")
        for row in by_state.get(CaseAttribute.MISMATCH, []):
            messages.error(request, f"Type mismatch: {row.name} is {row.temporal_type} in "
                                    f"Temporal but {row.type} here.")
        known = {n.casefold() for n in CaseAttribute.objects.values_list("name", flat=True)}
        known |= {n.casefold() for n in attributes.CORE_ATTRIBUTES}
        extras = sorted(n for n in found.custom if n.casefold() not in known)
        if extras:
            messages.warning(
                request, "In Temporal but not in the registry: "
                + ", ".join(f"{n} ({found.custom[n]})" for n in extras) + ".")
        else:
            messages.info(request, "Every custom attribute in Temporal is a core attribute or "
                                   "in the registry.")

    @admin.action(description="Remove from Temporal", permissions=["change"])
    def remove_from_temporal(self, request: HttpRequest, queryset: QuerySet[CaseAttribute]
                             ) -> TemplateResponse | None:
        rows = list(queryset)
        core_names = {n.casefold() for n in attributes.CORE_ATTRIBUTES}
        core = [r for r in rows if r.name.casefold() in core_names]
        custom = [r for r in rows if r.name.casefold() not in core_names]
        if core:
            messages.error(request, f"Core case attributes are never removed: {_names(core)}.")
        if not custom:
            return None
        if not request.POST.get("post"):
            opts = self.model._meta
            context = {
                **self.admin_site.each_context(request),
                "title": "Remove from Temporal?",
                "subtitle": None,
                "opts": opts,
                "rows": custom,
                "core": core,
                "queryset": queryset.filter(pk__in=[r.pk for r in custom]),
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "media": self.media,
            }
            request.current_app = self.admin_site.name
            return TemplateResponse(
                request, "admin/cases/caseattribute/remove_confirmation.html", context)
        try:
            found = async_to_sync(temporal.namespace_attributes)()
            present = [r for r in custom if r.name in found.custom]
            if present:
                async_to_sync(temporal.remove_attributes)([r.name for r in present])
        except temporal.GatewayError as err:
            messages.error(request, err.message)
            return None
        now = timezone.now()
        for row in custom:
            _mark(row, CaseAttribute.MISSING, "", now)
        if present:
            messages.success(request, f"Removed from Temporal: {_names(present)}.")
        absent = [r for r in custom if r not in present]
        if absent:
            messages.info(request, f"Not in Temporal, nothing to remove: {_names(absent)}.")
        return None


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    list_display = ("user", "kind", "channel")
    list_filter = ("kind", "channel")


@admin.register(EmailDelivery)
class EmailDeliveryAdmin(admin.ModelAdmin):
    """The delivery ledger, for looking up what was sent; rows are written by the worker."""

    list_display = ("sent_at", "case_id", "recipient", "outcome", "message_id")
    list_filter = ("outcome",)
    search_fields = ("case_id", "recipient", "message_id")
    readonly_fields = ("message_id", "case_id", "events", "recipient", "sent_at", "outcome",
                       "reply")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


class QueueMailboxForm(forms.ModelForm):
    """The password is write-only: a new one replaces the stored (sealed) one, an empty field
    keeps it, and the stored one is never rendered, not even as dots in the page's source."""

    new_password = forms.CharField(
        required=False, strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Leave empty to keep the stored password (it is never shown).")

    class Meta:
        model = QueueMailbox
        fields = ("queue", "host", "port", "use_tls", "username", "new_password", "folder",
                  "enabled")

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not cleaned.get("new_password") and not self.instance.password_sealed:
            self.add_error("new_password", "A new mailbox needs its password.")
        return cleaned

    def save(self, commit: bool = True) -> QueueMailbox:
        mailbox = super().save(commit=False)
        if self.cleaned_data.get("new_password"):
            mailbox.set_password(self.cleaned_data["new_password"])
            mailbox.last_error = ""
        if commit:
            mailbox.save()
        return mailbox


@admin.register(QueueMailbox)
class QueueMailboxAdmin(admin.ModelAdmin):
    """Hosted mailboxes `manage.py poll_mailboxes` reads, one queue each."""

    form = QueueMailboxForm
    list_display = ("username", "host", "folder", "queue", "enabled", "last_poll", "last_count",
                    "last_error")
    list_filter = ("enabled", "queue")
    search_fields = ("username", "host")
    readonly_fields = ("last_poll", "last_count", "last_error")


@admin.register(MailIgnored)
class MailIgnoredAdmin(admin.ModelAdmin):
    """Mail that opened nothing (issue 23), newest first: a record of the intake's own
    decisions, so nobody adds, edits or removes a row."""

    list_display = ("at", "door", "sender", "held", "reason", "message_id")
    list_filter = ("held", "door")
    search_fields = ("sender", "message_id", "reason")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- case types (issue 25) -------------------------------------------------------------------


class CaseTypeFieldForm(forms.ModelForm):
    class Meta:
        model = CaseTypeField
        fields = ("attribute", "required", "default", "position")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        attribute, text = data.get("attribute"), data.get("default") or ""
        if attribute is not None and text.strip():
            try:
                value = case_types.parse_default(attribute.type, text)
                if value is not None:
                    rules.clean_attribute(attribute.name, value)
            except (ValueError, KeyError):
                self.add_error("default", f"Not a {attribute.type} value.")
            except rules.RuleError as err:
                self.add_error("default", err.message)
        return data


class CaseTypeFieldInline(admin.TabularInline):
    model = CaseTypeField
    form = CaseTypeFieldForm
    extra = 1


class CaseTypeVersionInline(admin.TabularInline):
    """The saved versions, read only: a case keeps the one it was opened with."""

    model = CaseTypeVersion
    extra = 0
    can_delete = False
    readonly_fields = ("version", "spec", "saved")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(CaseType)
class CaseTypeAdmin(admin.ModelAdmin):
    list_display = ("label", "name", "queue", "is_default", "current_version")
    list_filter = ("queue",)
    inlines = (CaseTypeFieldInline, CaseTypeVersionInline)

    @admin.display(description="Version")
    def current_version(self, obj: CaseType) -> int:
        newest = obj.versions.first()
        return newest.version if newest else 0

    def save_related(self, request: HttpRequest, form: Any, formsets: Any,
                     change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # Saved with its fields: a change is a new version for new cases.
        case_types.save_version(form.instance)

_MACRO_USES = threading.local()


@admin.register(Macro)
class MacroAdmin(admin.ModelAdmin):
    """Shared macros (issue 25); personal ones are their owners' ("My macros")."""

    list_display = ("name", "queue_name", "status", "priority", "internal", "uses", "updated")
    list_filter = ("queue",)
    search_fields = ("name", "body")
    exclude = ("owner",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Macro]:
        return super().get_queryset(request).filter(owner=None).select_related("queue")

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False,
                 **kwargs: Any) -> Any:
        from cases import macros

        form = super().get_form(request, obj, change=change, **kwargs)
        registered = CaseAttribute.objects.filter(state=CaseAttribute.REGISTERED)
        form.base_fields["body"].help_text = macros.variables_help(
            registered.order_by("name").values_list("name", flat=True))
        return form

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        from cases.analytics.macro_uses import macro_uses

        # Counted once per page from the case export (not a counter table of case data);
        # per thread, as the admin instance serves every request.
        _MACRO_USES.counts = macro_uses()
        return super().changelist_view(request, extra_context)

    @admin.display(description="Queue")
    def queue_name(self, obj: Macro) -> str:
        return obj.queue.slug if obj.queue else "every queue"

    @admin.display(description="Uses (from the case export)")
    def uses(self, obj: Macro) -> str:
        uses = getattr(_MACRO_USES, "counts", None)
        return "—" if uses is None else str(uses.get(obj.name, 0))
