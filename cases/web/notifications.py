"""The in-app side of notifications (issue 16): the inbox page, marking read, the badge's
count, and each person's per-kind choices."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cases.config.reading import access_of
from cases.models import Notification, NotificationPreference
from workers.rules import NOTICE_KINDS

PAGE = 100


def _visible(request: HttpRequest) -> QuerySet[Notification]:
    """The reader's notices of cases they can still see: a notice names its case, its title
    and what was said, so access taken away since it was told takes it off the page."""
    found = Notification.objects.filter(user=request.user)
    queues = access_of(request.user).visible_queues
    return found if queues is None else found.filter(queue__in=queues)


@require_GET
@login_required
def inbox(request: HttpRequest) -> HttpResponse:
    items = list(_visible(request)[:PAGE])
    unread = _visible(request).filter(read_at__isnull=True).count()
    return render(request, "notifications/inbox.html", {"items": items, "unread": unread})


@require_GET
@login_required
def badge(request: HttpRequest) -> HttpResponse:
    unread = _visible(request).filter(read_at__isnull=True).count()
    return JsonResponse({"unread": unread})


@require_POST
@login_required
def mark_read(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(_visible(request), pk=pk)
    if item.read_at is None:
        item.read_at = timezone.now()
        item.save(update_fields=["read_at"])
    return redirect("notifications:inbox")


@require_POST
@login_required
def mark_all_read(request: HttpRequest) -> HttpResponse:
    done = _visible(request).filter(read_at__isnull=True).update(
        read_at=timezone.now())
    messages.success(request, f"Marked {done} read.")
    return redirect("notifications:inbox")


class PreferencesForm(forms.Form):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        for kind, label in NOTICE_KINDS.items():
            self.fields[kind] = forms.ChoiceField(
                label=label, choices=NotificationPreference.CHANNELS,
                initial=NotificationPreference.BOTH)


@require_http_methods(["GET", "POST"])
@login_required
def preferences(request: HttpRequest) -> HttpResponse:
    saved = {p.kind: p.channel for p in NotificationPreference.objects.filter(user=request.user)}
    if request.method == "POST":
        form = PreferencesForm(request.POST)
        if form.is_valid():
            for kind in NOTICE_KINDS:
                NotificationPreference.objects.update_or_create(
                    user=request.user, kind=kind, defaults={"channel": form.cleaned_data[kind]})
            messages.success(request, "Saved how you are told.")
            return redirect("notifications:settings")
    else:
        form = PreferencesForm(initial={k: saved.get(k, NotificationPreference.BOTH)
                                        for k in NOTICE_KINDS})
    return render(request, "notifications/settings.html", {"form": form})
