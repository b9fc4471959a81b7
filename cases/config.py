"""The configuration a request needs (role, queues, attribute registry, saved views), read in
one database round trip.

Async views pay a thread hop for every ORM query; a list page would otherwise make about ten.
Here they run together in one synchronous function, once per request.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.contrib.auth import get_user, get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.db.models import Q
from django.http import HttpRequest

from . import dbconn
from .access import ADMIN, AGENT, NONE, SUPERVISOR, Access
from .custom_fields import Attribute
from .models import CaseAttribute, Queue, SavedView


@dataclass
class RequestConfig:
    access: Access
    queues: list[tuple[str, str]]  # queues this user may see, file into and filter by
    attributes: list[Attribute]  # registered custom attributes
    groups: list[Group] = field(default_factory=list)  # groups a view can be shared with
    views: list[SavedView] = field(default_factory=list)  # saved views this user sees
    usernames: list[str] = field(default_factory=list)  # active users (supervisors only)
    holders: list[str] = field(default_factory=list)  # people who can hold cases
    # Which optional parts were read, so an empty list is not mistaken for "not read yet".
    loaded: frozenset[str] = frozenset()


async def config_for(request: HttpRequest, *, views: bool = False, usernames: bool = False,
                     holders: bool = False) -> RequestConfig:
    wanted = {k for k, v in (("views", views), ("usernames", usernames),
                             ("holders", holders)) if v}
    cached: RequestConfig | None = getattr(request, "_tracerail_config", None)
    if cached is not None and wanted <= cached.loaded:
        return cached
    if cached is not None:
        wanted |= cached.loaded
    user = request.user if getattr(request, "_tracerail_user", False) else \
        await request.auser()
    config = await dbconn.read(lambda: load(user, views="views" in wanted,
                                            usernames="usernames" in wanted,
                                            holders="holders" in wanted))
    request._tracerail_config = config  # type: ignore[attr-defined]
    return config


def load(user: AbstractBaseUser | AnonymousUser, *, views: bool = False,
         usernames: bool = False, holders: bool = False) -> RequestConfig:
    registry = [
        Attribute(a.name, a.type, a.label or a.name, a.help_text, tuple(a.choice_list),
                  a.filterable, a.agent_editable)
        for a in CaseAttribute.objects.filter(state=CaseAttribute.REGISTERED).order_by("label")
    ]
    access = _access(user, registry)
    queues = Queue.objects.order_by("slug")
    if access.queues is not None:
        queues = queues.filter(slug__in=access.queues)
    config = RequestConfig(access, [(q.slug, q.name) for q in queues], registry)
    if views and user.is_authenticated:
        groups = Group.objects.order_by("name")
        if not access.is_supervisor:
            groups = groups.filter(user=user)
        config.groups = list(groups)
        visible = (Q(owner=user) | Q(scope=SavedView.GLOBAL)
                   | Q(scope=SavedView.GROUP, group__user=user))
        config.views = list(SavedView.objects.filter(visible).distinct()
                            .select_related("group", "owner").order_by("scope", "name"))
    users = get_user_model().objects.filter(is_active=True).order_by("username")
    if usernames and access.is_supervisor:  # only supervisors assign to others
        config.usernames = list(users.values_list("username", flat=True))
    if holders:
        # Visibility cannot group by assignee: the dashboard counts per known person.
        config.holders = list(users.filter(groups__name__in=["Agent", "Supervisor"])
                              .values_list("username", flat=True).distinct())
    config.loaded = frozenset(name for name, on in (("views", views), ("usernames", usernames),
                                                    ("holders", holders)) if on)
    if not access.is_supervisor:
        config.loaded |= {"usernames"}  # only supervisors get the list: nothing to read
    return config


def resolve(request: HttpRequest) -> None:
    """The user and, when signed in, their configuration, in one trip to a thread (the
    session, the user and the configuration would otherwise be three): every page and
    stream needs both."""
    user = get_user(request)
    request.user = user
    request._tracerail_user = True  # type: ignore[attr-defined]
    if user.is_authenticated:
        request._tracerail_config = load(user)  # type: ignore[attr-defined]
    # The rest of the request mostly waits on Temporal: not while holding a pooled connection.
    dbconn.release()


async def aresolve(request: HttpRequest) -> None:
    await sync_to_async(resolve)(request)


def _access(user: AbstractBaseUser | AnonymousUser, registry: list[Attribute]) -> Access:
    if not user.is_authenticated:
        return Access("", NONE, ())
    username = user.get_username()
    groups = set(user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]
    if user.is_superuser or "Admin" in groups:  # type: ignore[attr-defined]
        return Access(username, ADMIN, None)
    if "Supervisor" in groups:
        return Access(username, SUPERVISOR, None)
    queues = tuple(Queue.objects.filter(agents=user).values_list("slug", flat=True))
    editable = tuple(a.name for a in registry if a.agent_editable)
    return Access(username, AGENT if "Agent" in groups else NONE, queues, editable)


async def access_for(request: HttpRequest) -> Access:
    """The requesting user's access (read with the rest of the request's configuration)."""
    return (await config_for(request)).access
