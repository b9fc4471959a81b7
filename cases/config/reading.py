"""The configuration a request needs (role, queues, attribute registry, saved views), read in
one database round trip.

Async views pay a thread hop for every ORM query; a list page would otherwise make about ten.
Here they run together in one synchronous function, once per request.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asgiref.sync import sync_to_async
from cachetools import TLRUCache
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user,
    get_user_model,
)
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, Group
from django.contrib.sessions.backends.base import SessionBase
from django.core.exceptions import ValidationError
from django.db.models import Q
from django.http import HttpRequest
from django.utils.crypto import constant_time_compare

from cases import store
from cases.config import access_version, dbconn
from cases.config.access import (
    ADMIN,
    AGENT,
    AGENT_GROUP,
    NONE,
    SUPERVISOR,
    SUPERVISOR_GROUP,
    Access,
    role_of,
    who_can_see,
)
from cases.config.custom_fields import Attribute
from cases.models import CaseAttribute, Queue, SavedView
from cases.store import wire

logger = logging.getLogger(__name__)


@dataclass
class RequestConfig:
    access: Access
    queues: list[tuple[str, str]]  # queues this user may see, file into and filter by
    attributes: list[Attribute]  # registered custom attributes
    groups: list[Group] = field(default_factory=list)  # groups a view can be shared with
    views: list[SavedView] = field(default_factory=list)  # saved views this user sees
    usernames: list[str] = field(default_factory=list)  # active users (supervisors only)
    holders: list[str] = field(default_factory=list)  # people who can hold cases
    # Queues (of `queues`) whose comment box starts as an internal note (Queue.reply_default).
    internal_first: frozenset[str] = frozenset()
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
    base = cached

    def read() -> RequestConfig:
        return _extras(base if base is not None else _base(user), user,
                       views="views" in wanted, usernames="usernames" in wanted,
                       holders="holders" in wanted)

    config = await dbconn.read(read)
    request._tracerail_config = config  # type: ignore[attr-defined]
    return config


def load(user: AbstractBaseUser | AnonymousUser, *, views: bool = False,
         usernames: bool = False, holders: bool = False) -> RequestConfig:
    """The configuration, read from the database (API tokens and tests; pages go through
    `resolve`, which caches the part every request needs)."""
    return _extras(_base(user), user, views=views, usernames=usernames, holders=holders)


@dataclass(frozen=True)
class Basics:
    """What every request needs (cached under the access versions): the access rule's inputs,
    the queues this user may see, the attribute registry."""

    access: Access
    queues: tuple[tuple[str, str], ...]
    attributes: tuple[Attribute, ...]
    internal_first: tuple[str, ...] = ()

    def config(self) -> RequestConfig:
        # Only supervisors get the user list: for anyone else it is read, and empty.
        loaded = frozenset() if self.access.is_supervisor else frozenset({"usernames"})
        return RequestConfig(self.access, list(self.queues), list(self.attributes),
                             internal_first=frozenset(self.internal_first), loaded=loaded)


def _basics(user: AbstractBaseUser | AnonymousUser) -> Basics:
    registry = tuple(
        Attribute(a.name, a.type, a.label or a.name, a.help_text, tuple(a.choice_list),
                  a.filterable, a.agent_editable)
        for a in CaseAttribute.objects.filter(state=CaseAttribute.REGISTERED).order_by("label")
    )
    access = _access(user, list(registry))
    queues = Queue.objects.order_by("slug")
    if access.queues is not None:
        queues = queues.filter(slug__in=access.queues)
    rows = list(queues.values_list("slug", "name", "reply_default"))
    return Basics(access, tuple((slug, name) for slug, name, _ in rows), registry,
                  tuple(slug for slug, _, mode in rows if mode == Queue.INTERNAL))


def _base(user: AbstractBaseUser | AnonymousUser) -> RequestConfig:
    """What every request needs, read from the database."""
    return _basics(user).config()


def _extras(config: RequestConfig, user: AbstractBaseUser | AnonymousUser, *,
            views: bool = False, usernames: bool = False, holders: bool = False
            ) -> RequestConfig:
    """The parts only some pages show, read on top of `config`."""
    access = config.access
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
        config.holders = list(users.filter(groups__name__in=[AGENT_GROUP, SUPERVISOR_GROUP])
                              .values_list("username", flat=True).distinct())
    config.loaded = config.loaded | {
        name for name, on in (("views", views), ("usernames", usernames),
                              ("holders", holders)) if on}
    return config


# --- the request path, cached under the access versions ----------------------------------------
# A request would otherwise read the session, the user, their groups, their queues and the
# attribute registry before it starts: five round trips to the database. The user and that
# configuration are kept in the shared store under the user's access version and the shared
# configuration's (cases/config/access_version.py), which every change to them replaces: a cached
# entry is never read after the change it predates. The session is the cached_db engine's.

# Every process writing users and queues bumps versions in a shared store (Redis), so an
# entry there lives long. A process-local store (`make run`) never hears of a change made in
# another process (`manage.py shell`, a management command): its entries live seconds.
_CACHE_SECONDS = 3600
LOCAL_CACHE_SECONDS = 5.0
# Read from the database when the user is saved, never kept in the store (the password hash
# would otherwise sit in Redis); a cached user that is saved writes only the other fields.
_DEFERRED = frozenset({"password", "last_login"})


def _user_key(user_id: Any, version: str) -> str:
    return f"auth:user:{user_id}:{version}"


def _config_key(user_id: Any, version: str, shared: str) -> str:
    return f"auth:config:{user_id}:{version}:{shared}"


@dataclass(frozen=True)
class SignedIn:
    """A user as the store keeps them (cases/store/wire.py SIGNED_IN)."""

    id: int
    username: str
    first_name: str
    last_name: str
    email: str
    is_staff: bool
    is_active: bool
    is_superuser: bool
    date_joined: datetime
    auth_hash: str  # the session auth hash the sign-in check compares

    @classmethod
    def of(cls, user: Any) -> SignedIn:
        return cls(user.pk, user.username, user.first_name, user.last_name, user.email,
                   user.is_staff, user.is_active, user.is_superuser, user.date_joined,
                   user.get_session_auth_hash())

    def user(self) -> AbstractBaseUser:
        model = get_user_model()
        names = [f.attname for f in model._meta.concrete_fields if f.attname not in _DEFERRED]
        return model.from_db("default", names, [getattr(self, n) for n in names])


# Never the password hash: the session's auth hash (an HMAC of it, already in the session)
# is all the sign-in check needs; the user's password and last login are left deferred.
SIGNED_IN = wire.record("signed-in", lambda: SignedIn, {
    "id": wire.INT,
    "username": wire.STR,
    "first_name": wire.STR,
    "last_name": wire.STR,
    "email": wire.STR,
    "is_staff": wire.BOOL,
    "is_active": wire.BOOL,
    "is_superuser": wire.BOOL,
    "date_joined": wire.TIME,
    "auth_hash": wire.STR,
})


BASICS = wire.record("basics", lambda: Basics, {
    "access": wire.record("access", lambda: Access, {
        "username": wire.STR,
        "role": wire.STR,
        "queues": wire.optional(wire.tuple_of(wire.STR)),
        "attributes": wire.optional(wire.tuple_of(wire.STR)),
    }),
    "queues": wire.tuple_of(wire.tuple_of(wire.STR)),
    "attributes": wire.tuple_of(wire.record("attribute", lambda: Attribute, {
        "name": wire.STR, "type": wire.STR, "label": wire.STR, "help_text": wire.STR,
        "choices": wire.tuple_of(wire.STR), "filterable": wire.BOOL, "agent_editable": wire.BOOL,
    })),
    "internal_first": wire.tuple_of(wire.STR),
})


@dataclass
class Resolved:
    """Who a session belongs to now, and what they may see."""

    user: AbstractBaseUser | None  # None: signed out (no session, logged out, hash changed)
    config: RequestConfig | None
    version: str = ""  # the user's access version it was read at


def resolve_session(session: SessionBase) -> Resolved:
    """The session's user and configuration, from the shared store when they are there.
    Synchronous (it may read the database). Shared by every request and every open stream's
    re-check, so both apply the same rule."""
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend = session[BACKEND_SESSION_KEY]
    except (KeyError, ValidationError):
        return Resolved(None, None)
    if backend not in settings.AUTHENTICATION_BACKENDS:
        return Resolved(None, None)
    try:
        versions = access_version.current(user_id, access_version.CONFIG)
    except Exception as err:  # the store away: the database alone decides, uncached
        logger.warning("config: the shared store is not answering: %s", err)
        versions = None
    shared = store.shared()
    signed_in = basics = None
    if versions is not None:
        mine, everyone = versions[user_id], versions[access_version.CONFIG]
        keys = (_user_key(user_id, mine), _config_key(user_id, mine, everyone))
        try:
            found = shared.get_many(list(keys))
        except Exception as err:
            logger.warning("config: the shared store is not answering: %s", err)
            found = {}
        signed_in = wire.load(SIGNED_IN, found.get(keys[0]))
        basics = wire.load(BASICS, found.get(keys[1]))
    if signed_in is None:
        user = get_user_model()._default_manager.filter(pk=user_id).first()
        if user is None:
            return Resolved(None, None)
        signed_in = SignedIn.of(user)
        if versions is not None:
            _put(shared, keys[0], wire.dump(SIGNED_IN, signed_in))
    if not signed_in.is_active:
        return Resolved(None, None)
    session_hash = session.get(HASH_SESSION_KEY)
    if not session_hash or not constant_time_compare(session_hash, signed_in.auth_hash):
        return Resolved(None, None)  # a changed password signs every other session out
    user = signed_in.user()
    if basics is None:
        basics = _basics(user)
        if versions is not None:
            _put(shared, keys[1], wire.dump(BASICS, basics))
    return Resolved(user, basics.config(), versions[user_id] if versions is not None else "")


class _Seeing:
    """`access.who_can_see` per queue, kept in this process under the PEOPLE version: every
    case page, pushed ones included, lists whom a comment may @mention, and that query joins
    users, groups and queues (py-spy at 500 agents: 6 % of the web's samples, more than
    every other query together). One store read instead; an access change anywhere moves
    the version (at once and at commit, cases/config/signals.py), so a list made before it
    is never read after. An entry lives as long as a cached configuration; with a
    process-local store, which hears only this process's changes, LOCAL_CACHE_SECONDS."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # cachetools' caches are not thread-safe
        self.found: TLRUCache[tuple[str, str], list[str]] = TLRUCache(
            maxsize=512, ttu=self._until, timer=time.monotonic)

    @staticmethod
    def _until(key: Any, names: Any, now: float) -> float:
        # As long as a cached configuration lives: a change that sends no signal (an
        # `update()` in a shell) is read within the hour even if nothing else moves it.
        return now + (_CACHE_SECONDS if store.spans_processes() else LOCAL_CACHE_SECONDS)

    def __call__(self, queue: str) -> list[str]:
        try:
            version = access_version.current(access_version.PEOPLE)[access_version.PEOPLE]
        except Exception as err:  # the store away: the database alone answers, uncached
            logger.warning("config: the shared store is not answering: %s", err)
            return who_can_see(queue)
        with self.lock:
            names = self.found.get((queue, version))
        if names is None:
            names = who_can_see(queue)
            with self.lock:
                self.found[(queue, version)] = names
        return list(names)


# The active users who can see `queue`'s cases (the access rule), for the mention list and
# for telling a writer whom a mention did not reach. Synchronous (it may read the database).
seeing_queue = _Seeing()


def _put(shared: Any, key: str, value: Any) -> None:
    try:
        shared.set(key, value, timeout=_CACHE_SECONDS if store.spans_processes()
                   else LOCAL_CACHE_SECONDS)
    except Exception as err:
        logger.warning("config: could not cache %s: %s", key, err)


def resolve(request: HttpRequest) -> None:
    """The user and, when signed in, their configuration, in one trip to a thread (the
    session, the user and the configuration would otherwise be three): every page and
    stream needs both."""
    found = resolve_session(request.session)
    if found.user is None and SESSION_KEY in request.session:
        # Not signed in by our rule, but a session says so: Django's own check decides
        # (its fallback secret keys), and flushes a session it does not accept.
        user = get_user(request)
        found = Resolved(user, load(user), "") if user.is_authenticated else found
    user = request.user = found.user or AnonymousUser()

    async def auser() -> AbstractBaseUser | AnonymousUser:
        return user  # what async decorators (login_required) ask: not Django's second read

    request.auser = auser  # type: ignore[attr-defined]
    request._tracerail_user = True  # type: ignore[attr-defined]
    request._tracerail_access_version = found.version  # type: ignore[attr-defined]
    if found.config is not None:
        request._tracerail_config = found.config  # type: ignore[attr-defined]
    # The rest of the request mostly waits on Temporal: not while holding a pooled connection.
    dbconn.release()


async def aresolve(request: HttpRequest) -> None:
    await sync_to_async(resolve)(request)


def _access(user: AbstractBaseUser | AnonymousUser, registry: list[Attribute]) -> Access:
    if not user.is_authenticated:
        return Access("", NONE, ())
    username = user.get_username()
    role = role_of(user.is_superuser,  # type: ignore[attr-defined]
                   user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]
    if role in (ADMIN, SUPERVISOR):
        return Access(username, role, None)
    if role == NONE:
        # Listed as a queue's agent but in no role's group: sees nothing, as who_can_see says.
        return Access(username, NONE, ())
    queues = tuple(Queue.objects.filter(agents=user).values_list("slug", flat=True))
    editable = tuple(a.name for a in registry if a.agent_editable)
    return Access(username, AGENT, queues, editable)


def access_of(user: AbstractBaseUser) -> Access:
    """A user's access by the one rule, outside any request (the worker's deliveries); which
    attributes they may set is not asked there."""
    return _access(user, [])


async def access_for(request: HttpRequest) -> Access:
    """The requesting user's access (read with the rest of the request's configuration)."""
    return (await config_for(request)).access
