"""Saved views: named case-list filters stored in Django (configuration, not case data)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from urllib.parse import urlencode

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser, Group
from django.db.models import Q
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.shortcuts import redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from cases.config import dbconn
from cases.config.access import Access
from cases.config.custom_fields import COLUMNS_PARAM, FILTER_PREFIX, Attribute
from cases.config.reading import access_for, config_for
from cases.live import answers
from cases.models import GroupDefaultView, SavedView
from cases.temporal.visibility import InvalidFilter
from cases.web.forms import CaseFilterForm


@dataclass
class ViewLink:
    view: SavedView
    count: int | None  # None: the stored filter no longer validates (e.g. a removed queue)
    mine: bool


def clean_query(query: QueryDict) -> str:
    """Only the filter parameters (and chosen columns), in a stable order: what a view stores
    and shares."""
    keys = [*CaseFilterForm.PARAMS,
            *sorted(k for k in query if k.startswith(FILTER_PREFIX)), COLUMNS_PARAM]
    return urlencode([(k, v) for k in keys for v in query.getlist(k) if v])


def _visible(user: AbstractBaseUser) -> Q:
    return Q(owner=user) | Q(scope=SavedView.GLOBAL) | Q(scope=SavedView.GROUP, group__user=user)


async def view_links(views: list[SavedView], user: AbstractBaseUser, access: Access,
                     queues: list[tuple[str, str]], attributes: list[Attribute]) -> list[ViewLink]:
    """The sidebar's views with live counts: one shared Count per view, all concurrently."""
    queries: dict[str, str] = {}
    matchers: dict[str, answers.Matcher] = {}
    for view in views:
        form = CaseFilterForm(QueryDict(view.query), queues=queues, attributes=attributes)
        if form.is_valid():
            try:
                f = form.case_filter()
                queries[str(view.pk)] = f.query(access.username, access.visible_queues)
            except InvalidFilter:
                continue
            matchers[str(view.pk)] = partial(f.matches, me=access.username,
                                             visible_queues=access.visible_queues)
    counts = await answers.count_many(queries, matchers=matchers) if queries else {}
    return [ViewLink(v, counts.get(str(v.pk)), v.owner_id == user.pk) for v in views]


async def default_view_url(user: AbstractBaseUser) -> str | None:
    """Where a member of a group with a default view lands on the bare case list."""
    default = await dbconn.read(GroupDefaultView.objects.filter(group__user=user).select_related(
        "view").order_by("group__name").first)
    if default is None:
        return None
    return reverse("views:open", args=[default.view.pk])


class SaveViewForm(forms.Form):
    name = forms.CharField(max_length=80)
    scope = forms.ChoiceField(choices=SavedView.SCOPES)
    # Choices from groups loaded beforehand: a ModelChoiceField would query the database
    # synchronously while validating, which an async view must not do.
    group = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    query = forms.CharField(max_length=2000, required=False, widget=forms.HiddenInput)

    def __init__(self, *args: object, groups: list[Group], may_share_globally: bool,
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.groups = {g.pk: g for g in groups}
        self.fields["group"].choices = [("", "—"), *((g.pk, g.name) for g in groups)]
        self.may_share_globally = may_share_globally

    def clean(self) -> dict[str, object]:
        data = super().clean() or {}
        if data.get("scope") == SavedView.GROUP and not data.get("group"):
            self.add_error("group", "Choose the group to share with.")
        if data.get("scope") == SavedView.GLOBAL and not self.may_share_globally:
            self.add_error("scope", "Only admins can share a view with everyone.")
        return data


async def _own_view(request: HttpRequest, pk: int) -> SavedView:
    user = await request.auser()
    view = await SavedView.objects.filter(pk=pk, owner=user).afirst()
    if view is None:
        raise Http404("No such view of yours.")
    return view


@require_POST
@login_required
async def save_view(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    config = await config_for(request, views=True)
    access = config.access
    form = SaveViewForm(request.POST, groups=config.groups,
                        may_share_globally=access.role == "admin")
    if not form.is_valid():
        errors = "; ".join(str(e) for errs in form.errors.values() for e in errs)
        messages.error(request, f"The view was not saved: {errors}")
        return redirect(f"{reverse('cases:list')}?{form.data.get('query', '')}")
    d = form.cleaned_data
    view = await SavedView.objects.acreate(
        name=d["name"], owner=user, scope=d["scope"],
        group=form.groups[d["group"]] if d["scope"] == SavedView.GROUP else None,
        query=clean_query(QueryDict(d["query"] or "")),
    )
    messages.success(request, f"Saved the view “{view.name}”.")
    return redirect("views:open", pk=view.pk)


@require_GET
@login_required
async def open_view(request: HttpRequest, pk: int) -> HttpResponse:
    user = await request.auser()
    view = await SavedView.objects.filter(_visible(user), pk=pk).distinct().afirst()
    if view is None:
        raise Http404("No such view.")
    query = f"{view.query}&view={view.pk}" if view.query else f"view={view.pk}"
    return redirect(f"{reverse('cases:list')}?{query}")


@require_POST
@login_required
async def rename_view(request: HttpRequest, pk: int) -> HttpResponse:
    view = await _own_view(request, pk)
    name = (request.POST.get("name") or "").strip()
    if not name or len(name) > 80:
        messages.error(request, "A view's name has 1 to 80 characters.")
    else:
        view.name = name
        await view.asave(update_fields=["name", "updated"])
        messages.success(request, f"Renamed the view to “{name}”.")
    return redirect("views:open", pk=view.pk)


@require_POST
@login_required
async def delete_view(request: HttpRequest, pk: int) -> HttpResponse:
    view = await _own_view(request, pk)
    name = view.name
    await view.adelete()
    messages.success(request, f"Deleted the view “{name}”.")
    return redirect("cases:list")


@require_POST
@login_required
async def make_default(request: HttpRequest, pk: int) -> HttpResponse:
    access = await access_for(request)
    user = await request.auser()
    if not access.is_supervisor:
        raise Http404("No such view.")
    view = await SavedView.objects.filter(_visible(user), pk=pk).distinct().afirst()
    group = await Group.objects.filter(pk=request.POST.get("group") or 0).afirst()
    if view is None or group is None:
        raise Http404("No such view or group.")
    if view.scope == SavedView.PERSONAL or (view.scope == SavedView.GROUP
                                            and view.group_id != group.pk):
        messages.error(request, f"Share the view with {group.name} before making it their "
                                "default.")
    else:
        await GroupDefaultView.objects.aupdate_or_create(group=group, defaults={"view": view})
        messages.success(request, f"“{view.name}” is now the default view for {group.name}.")
    return redirect("views:open", pk=view.pk)
