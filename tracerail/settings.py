"""Tracerail settings: everything comes from environment variables, with working dev defaults."""

from __future__ import annotations

import math
import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.getenv("TRACERAIL_VAR_DIR", BASE_DIR / "var"))


# Every variable is parsed strictly: a typo in production ("ture", "1o") must stop the
# process at start-up with the variable's name, not silently become a default.
# Unset or empty counts as "use the default", so `X=` in an env file is harmless.
_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


def _raw(name: str) -> str | None:
    value = os.getenv(name)
    return None if value is None or not value.strip() else value.strip()


def envbool(name: str, default: bool | str) -> bool:
    value = _raw(name)
    if value is None:
        # A string default (the older call style) is held to the same spelling rules.
        return default if isinstance(default, bool) else _parse_bool(name, default)
    return _parse_bool(name, value)


def _parse_bool(name: str, value: str) -> bool:
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(
        f"{name} must be one of true/false, 1/0, yes/no, on/off, got {value!r}")


def envint(name: str, default: int | None = None) -> int:
    value = _raw(name)
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"{name} must be set to a whole number")
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, got {value!r}") from None


def envfloat(name: str, default: float | None = None) -> float:
    value = _raw(name)
    if value is None:
        if default is None:
            raise ImproperlyConfigured(f"{name} must be set to a number")
        return default
    try:
        number = float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        # float() accepts "nan" and "inf", which no timeout or rate means.
        raise ImproperlyConfigured(f"{name} must be a finite number, got {value!r}")
    return number


def envlist(name: str, default: str) -> list[str]:
    return [v.strip() for v in (_raw(name) or default).split(",") if v.strip()]


def envurl(name: str, schemes: tuple[str, ...]) -> str | None:
    """A URL (or several, comma-separated: Django's Redis cache takes a primary and then its
    replicas) whose scheme is one of `schemes`; None when unset."""
    value = _raw(name)
    if value is None:
        return None
    for url in (u.strip() for u in value.split(",")):
        parts = urlsplit(url)
        try:
            valid = (parts.scheme in schemes and bool(parts.hostname or parts.path.strip("/"))
                     and (parts.port is None or parts.port > 0))
        except ValueError:  # a port that is not a number
            valid = False
        if not valid:
            # Start-up errors end up in logs: never repeat a password.
            shown = url.replace(f":{parts.password}@", ":***@") if parts.password else url
            raise ImproperlyConfigured(
                f"{name} must be a URL starting with "
                f"{' or '.join(s + '://' for s in schemes)}, got {shown!r}")
    return value


def envints(name: str, default: str) -> list[int]:
    values = envlist(name, default)
    try:
        return [int(v) for v in values]
    except ValueError:
        raise ImproperlyConfigured(
            f"{name} must be whole numbers separated by commas, got {','.join(values)!r}"
        ) from None


DEBUG = envbool("DEBUG", False)
# Public in this repository: good for nothing but a local DEBUG run.
DEV_SECRET_KEY = "dev-only-insecure-key-change-me"
# `make setup` writes a random per-checkout key here, so `make run` and manage.py in a
# set-up checkout work without any environment; production sets SECRET_KEY instead.
SECRET_KEY_FILE = VAR_DIR / "secret-key"


def _secret_key() -> str:
    key = _raw("SECRET_KEY")
    if key is None and SECRET_KEY_FILE.is_file():
        key = SECRET_KEY_FILE.read_text().strip() or None
    if DEBUG:
        return key or DEV_SECRET_KEY
    if key is None or key == DEV_SECRET_KEY:
        # Sessions, CSRF tokens and password-reset links are all signed with it: a known
        # key lets anyone forge a logged-in session.
        raise ImproperlyConfigured(
            "SECRET_KEY must be set to a long random value when DEBUG is off, e.g. "
            "SECRET_KEY=$(python -c 'import secrets; print(secrets.token_urlsafe(50))'). "
            "For a local run use `make run` (it writes var/secret-key) or DEBUG=true.")
    if len(key) < 50:
        raise ImproperlyConfigured(
            f"SECRET_KEY must be at least 50 characters when DEBUG is off, got {len(key)}")
    return key


SECRET_KEY = _secret_key()
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "axes",
    "cases",
]

MIDDLEWARE = [
    "cases.web.middleware.server_timing",  # first: its `app` is the whole of Django's part
    # cases.web.middleware.{Session,Common,Authentication,Message}Middleware are Django's own,
    # run on the event loop instead of a thread hop per hook. The security three keep
    # Django's names: `check --deploy` looks for exactly those.
    "django.middleware.security.SecurityMiddleware",
    "cases.web.middleware.StaticFiles",  # WhiteNoise, async-capable
    # Outside everything that can answer an error, so every /api/ error reaches it.
    "cases.web.middleware.api_json_errors",
    "cases.web.middleware.SessionMiddleware",
    "cases.web.middleware.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "cases.web.middleware.AuthenticationMiddleware",
    "cases.web.middleware.resolve_user",
    "cases.web.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "cases.web.middleware.Outages",
    # Last, as axes asks: it turns a login refused for lockout into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# Axes first: it refuses a locked-out login before any password is checked. It has no
# get_user, so the test client's force_login and existing sessions use ModelBackend.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]

ROOT_URLCONF = "tracerail.urls"
WSGI_APPLICATION = "tracerail.wsgi.application"
ASGI_APPLICATION = "tracerail.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "cases.web.context_processors.tracerail",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.getenv("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"), conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several threads write at once (the SMTP door's hand-overs, the worker's activities): a
    # deferred transaction that reads and then writes deadlocks with another ("database is
    # locked" at once, whatever the timeout). IMMEDIATE takes the write lock at BEGIN, so a
    # writer waits its turn, up to `timeout` seconds.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"transaction_mode": "IMMEDIATE", "timeout": 20})
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # Under ASGI every request has a thread of its own, and a persistent connection per
    # thread grew to 89 connections for two web processes at 500 agents (PostgreSQL allows
    # 100 in all). A pool per process bounds them; a request holds a connection only while it
    # reads (cases.config.dbconn.release), not while it waits on Temporal.
    DB_POOL_SIZE = envint("DB_POOL_SIZE", 10)
    DB_POOL_TIMEOUT = envfloat("DB_POOL_TIMEOUT", 10.0)
    if DB_POOL_SIZE < 1 or DB_POOL_TIMEOUT <= 0:
        raise ImproperlyConfigured(
            "DB_POOL_SIZE must be at least 1 and DB_POOL_TIMEOUT more than 0 seconds, got "
            f"{DB_POOL_SIZE} and {DB_POOL_TIMEOUT}")
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # the pool keeps them; Django must not as well
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": min(2, DB_POOL_SIZE), "max_size": DB_POOL_SIZE, "timeout": DB_POOL_TIMEOUT,
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Threads --------------------------------------------------------------------------------
# Per web process (cases/web/request_threads.py): an ordinary request leases one of at most
# REQUEST_THREADS threads for its synchronous parts (more wait on the event loop for one); push
# streams lease none and share EVENTS_THREADS threads for their few synchronous steps.
REQUEST_THREADS = envint("REQUEST_THREADS", 64)
EVENTS_THREADS = envint("EVENTS_THREADS", 2)
if REQUEST_THREADS < 1 or EVENTS_THREADS < 1:
    raise ImproperlyConfigured(
        f"REQUEST_THREADS and EVENTS_THREADS must be 1 or more, got {REQUEST_THREADS} and "
        f"{EVENTS_THREADS}")

# --- Cache --------------------------------------------------------------------------------
# The shared store (cases/store/): Redis in production, where every web process shares the
# Visibility answers, the change feed, the Visibility budget, sessions and cached users.
# Without REDIS_URL it is a local-memory cache, right for `make run` (one web process, no
# extra service) and wrong for several: each would keep its own budget and feed.
REDIS_URL = envurl("REDIS_URL", ("redis", "rediss", "unix"))
# Seconds one Redis connect or command may take (0: no limit). A Redis that stops answering
# must cost a page a moment, never hang it; cache calls take well under a millisecond.
REDIS_TIMEOUT = envfloat("REDIS_TIMEOUT", 2.0)
if REDIS_TIMEOUT < 0:
    raise ImproperlyConfigured(f"REDIS_TIMEOUT must be 0 or more seconds, got {REDIS_TIMEOUT}")
# A web process holds at most one Redis connection per thread that can reach the store at
# once: its request threads, the streams' threads, asyncio's default executor (the change
# feed's reads and lease) and the few watchers' threads. The pool is that big, so a request
# never finds it empty; past it a request waits up to REDIS_TIMEOUT, then the page says the
# store is busy (a 503), never redis-py's "Too many connections".
REDIS_POOL_SIZE = envint(
    "REDIS_POOL_SIZE", REQUEST_THREADS + EVENTS_THREADS + min(32, (os.cpu_count() or 1) + 4) + 8)
if REDIS_POOL_SIZE < 1:
    raise ImproperlyConfigured(f"REDIS_POOL_SIZE must be 1 or more, got {REDIS_POOL_SIZE}")


def cache_settings(redis_url: str | None, timeout: float,
                   pool_size: int = 100) -> dict[str, dict[str, object]]:
    # One prefix for every key ("tracerail:1:<key>"), so a Redis shared with other apps (or
    # a raw-client SCAN) can tell ours apart; the raw client needs cache.make_key(key).
    # Values are JSON in both (cases/store/wire.py): Django's Redis backend would unpickle what it
    # reads, and anyone able to write to the store would run code in every web process.
    if redis_url is None:
        return {"default": {
            "BACKEND": "cases.store.wire.JSONLocMemCache",
            "LOCATION": "tracerail",
            "KEY_PREFIX": "tracerail",
            # Local memory culls a third of its keys past MAX_ENTRIES (300 by default):
            # the change feed's entries would go with them, and every screen resync. Keys
            # expire on their own (the feed's in ten minutes); this only bounds memory.
            "OPTIONS": {"MAX_ENTRIES": 200_000},
        }}
    limit = timeout if timeout > 0 else None
    return {"default": {
        # Django's RedisCache, one connection pool per process (cases/store/wire.py).
        "BACKEND": "cases.store.wire.SharedRedisCache",
        "LOCATION": redis_url,
        "KEY_PREFIX": "tracerail",
        "OPTIONS": {"socket_connect_timeout": limit, "socket_timeout": limit,
                    "serializer": "cases.store.wire.JSONSerializer",
                    # Waits for a free connection (up to the timeout) where redis-py's
                    # default pool raises at once when all are out.
                    "pool_class": "redis.BlockingConnectionPool",
                    "max_connections": pool_size, "timeout": timeout if timeout > 0 else None},
    }}


CACHES = cache_settings(REDIS_URL, REDIS_TIMEOUT, REDIS_POOL_SIZE)
# Sessions are written to the database and read from the shared store first (cached_db): a
# request reads no table before it starts (cases/config/reading.py caches the user and configuration
# too), and a Redis restart, which keeps nothing, still logs nobody out.
SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# --- Login throttling (django-axes) --------------------------------------------------------
# Locked per username *and* client IP together: one IP-wide lock would shut out a whole
# contact centre behind one NAT address, and a username-wide lock would let anyone on the
# internet lock any agent out by guessing at their name. An attacker gets a few guesses per
# account from each address; admins unlock in Admin → Axes → Access attempts.
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_FAILURE_LIMIT = envint("AXES_FAILURE_LIMIT", 5)
# 0 means "until an admin unlocks it".
_cooloff_minutes = envint("AXES_COOLOFF_MINUTES", 15)
AXES_COOLOFF_TIME = timedelta(minutes=_cooloff_minutes) if _cooloff_minutes > 0 else None
# A right password clears the count, so a week of occasional typos never adds up to a lock.
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "cases.web.throttle.client_ip"
# Proxies in front of the app that append the client address to X-Forwarded-For (a load
# balancer: 1). 0 trusts only the socket's address; behind a proxy that would make every
# client one address, and the lock per username alone.
TRUSTED_PROXY_COUNT = envint("TRUSTED_PROXY_COUNT", 0)

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "cases:list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = os.getenv("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.getenv("STATIC_ROOT", VAR_DIR / "staticfiles"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}
WHITENOISE_USE_FINDERS = DEBUG

# --- The case export (issue 24) -------------------------------------------------------------
# Parquet files of every case's facts (cases/analytics/): a folder, or any URI pyarrow's file
# systems open (s3://bucket/prefix?endpoint_override=...; docs/analytics.md).
ANALYTICS_URI = _raw("ANALYTICS_URI") or str(VAR_DIR / "analytics")
# Seconds between the exporter's looks at Visibility for changed cases.
ANALYTICS_EXPORT_SECONDS = envfloat("ANALYTICS_EXPORT_SECONDS", 60.0)
if ANALYTICS_EXPORT_SECONDS < 1:
    raise ImproperlyConfigured(
        f"ANALYTICS_EXPORT_SECONDS must be at least 1, got {ANALYTICS_EXPORT_SECONDS}")
# `export_cases --follow` folds the store's segments into one per table once there are this
# many (each round that exported something adds two; every read opens them all).
ANALYTICS_COMPACT_SEGMENTS = envint("ANALYTICS_COMPACT_SEGMENTS", 200)
if ANALYTICS_COMPACT_SEGMENTS < 3:
    raise ImproperlyConfigured(
        f"ANALYTICS_COMPACT_SEGMENTS must be at least 3, got {ANALYTICS_COMPACT_SEGMENTS}")

# --- Files on cases (issue 23) --------------------------------------------------------------
# The bytes live in STORAGES["attachments"] (cases/files/store.py), never in a workflow: the
# file system under var/attachments/ by default, or any S3-compatible store through
# django-storages (ATTACHMENT_STORAGE=s3 and the AWS_* settings in docs/deployment.md).
ATTACHMENT_STORAGE = (_raw("ATTACHMENT_STORAGE") or "filesystem").lower()
if ATTACHMENT_STORAGE == "filesystem":
    STORAGES["attachments"] = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(Path(os.getenv("ATTACHMENT_ROOT",
                                                   VAR_DIR / "attachments"))),
                    "base_url": None},
    }
elif ATTACHMENT_STORAGE == "s3":
    # Credentials and the endpoint come from django-storages' own AWS_* variables (read
    # below), so nothing secret is spelled here.
    STORAGES["attachments"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": _raw("AWS_STORAGE_BUCKET_NAME") or "",
            "endpoint_url": _raw("AWS_S3_ENDPOINT_URL"),
            "region_name": _raw("AWS_S3_REGION_NAME"),
            "access_key": _raw("AWS_ACCESS_KEY_ID"),
            "secret_key": _raw("AWS_SECRET_ACCESS_KEY"),
            "location": _raw("AWS_LOCATION") or "attachments",
            "default_acl": "private",
            "querystring_auth": True,
            "file_overwrite": True,  # a key is a hash: the same key is the same bytes
        },
    }
    if not STORAGES["attachments"]["OPTIONS"]["bucket_name"]:
        raise ImproperlyConfigured("ATTACHMENT_STORAGE=s3 needs AWS_STORAGE_BUCKET_NAME")
else:
    raise ImproperlyConfigured(
        f"ATTACHMENT_STORAGE is filesystem or s3, got {ATTACHMENT_STORAGE!r}")
ATTACHMENT_MAX_BYTES = envint("ATTACHMENT_MAX_BYTES", 25 * 1024 * 1024)
if ATTACHMENT_MAX_BYTES < 1:
    raise ImproperlyConfigured(
        f"ATTACHMENT_MAX_BYTES must be at least 1 byte, got {ATTACHMENT_MAX_BYTES}")
# Types (sniffed from the bytes, never the sender's word) a person may upload. SVG and HTML
# can carry script and are never on it: downloads are attachments with nosniff, and only
# raster images are shown inline.
ATTACHMENT_TYPES = envlist("ATTACHMENT_TYPES", ",".join((
    "image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf", "text/plain",
    "text/csv", "application/zip", "application/msword", "application/vnd.ms-excel",
    "application/vnd.ms-powerpoint",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    "application/vnd.oasis.opendocument.text", "application/vnd.oasis.opendocument.spreadsheet",
    "application/vnd.oasis.opendocument.presentation", "application/rtf")))
_scripted = [t for t in ATTACHMENT_TYPES if "svg" in t or "html" in t]
if _scripted:
    raise ImproperlyConfigured(f"ATTACHMENT_TYPES cannot allow {', '.join(_scripted)}: "
                               "they can carry script")
# An upload over the limit is stopped as it arrives, never spooled whole to disk.
FILE_UPLOAD_HANDLERS = [
    "cases.files.uploads.LimitedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
# Attachments of a public comment travel with its mail up to this many bytes in all; past
# it the mail links to them instead (docs/decisions.md).
ATTACHMENT_MAIL_MAX_BYTES = envint("ATTACHMENT_MAIL_MAX_BYTES", 10 * 1024 * 1024)
if ATTACHMENT_MAIL_MAX_BYTES < 0:
    raise ImproperlyConfigured(
        f"ATTACHMENT_MAIL_MAX_BYTES cannot be negative, got {ATTACHMENT_MAIL_MAX_BYTES}")

# --- HTTPS ------------------------------------------------------------------------------
# All off by default so plain-HTTP local runs work; docs/deployment.md lists the production
# values, and a test runs `check --deploy` with exactly those.
# SECURE_COOKIES is the older switch: it still turns on both secure cookies and trusting the
# proxy's X-Forwarded-Proto, and each can be set on its own.
SECURE_COOKIES = envbool("SECURE_COOKIES", False)
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", SECURE_COOKIES)
CSRF_COOKIE_SECURE = envbool("CSRF_COOKIE_SECURE", SECURE_COOKIES)
# The header a TLS-terminating proxy sets to "https" (e.g. X-Forwarded-Proto); only set it
# when the proxy always overwrites it, or clients could claim HTTPS themselves.
_proxy_header = _raw("SECURE_PROXY_SSL_HEADER") or ("X-Forwarded-Proto" if SECURE_COOKIES else "")
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https") if _proxy_header else None
)
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", False)
# Load balancers probe over plain HTTP; a redirect would read as "down".
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = envint("SECURE_HSTS_SECONDS", 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
# e.g. "security.W005,security.W021" where subdomains must stay reachable over HTTP.
SILENCED_SYSTEM_CHECKS = envlist("SILENCED_SYSTEM_CHECKS", "")

# --- Temporal -----------------------------------------------------------------------------
# Address, namespace, TLS and API key also follow Temporal's own envconfig (TEMPORAL_ADDRESS,
# TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS*, TEMPORAL_PROFILE, temporal.toml);
# these are the defaults for the embedded dev server.
TEMPORAL_ADDRESS = os.getenv("TEMPORAL_ADDRESS", "127.0.0.1:7233")
TEMPORAL_NAMESPACE = os.getenv("TEMPORAL_NAMESPACE", "default")
TEMPORAL_TASK_QUEUE = os.getenv("TEMPORAL_TASK_QUEUE", "tracerail-cases")
TEMPORAL_UI_URL = os.getenv("TEMPORAL_UI_URL", "http://127.0.0.1:8233")
# Seconds a page waits on Temporal before it says so instead of hanging.
TEMPORAL_RPC_TIMEOUT = envfloat("TEMPORAL_RPC_TIMEOUT", 1.5)
TEMPORAL_QUERY_TIMEOUT = envfloat("TEMPORAL_QUERY_TIMEOUT", 1.5)
TEMPORAL_UPDATE_TIMEOUT = envfloat("TEMPORAL_UPDATE_TIMEOUT", 10.0)
TEMPORAL_RETENTION_DAYS = envint("TEMPORAL_RETENTION_DAYS", 30)
WORKER_MAX_CONCURRENT_WORKFLOW_TASKS = envint("WORKER_MAX_CONCURRENT_WORKFLOW_TASKS", 100)
WORKER_MAX_CONCURRENT_ACTIVITIES = envint("WORKER_MAX_CONCURRENT_ACTIVITIES", 20)
# Updates one web process lets into one case at a time (the rest wait their turn); Temporal
# admits 10 in flight per case, so two processes fit. 0 disables the wait (retries remain).
TEMPORAL_UPDATES_PER_CASE = envint("TEMPORAL_UPDATES_PER_CASE", 4)

# --- Cases --------------------------------------------------------------------------------
# Seconds to due per priority 1 (urgent) .. 4 (low).
CASE_SLA_SECONDS = envints("CASE_SLA_SECONDS", "14400,28800,86400,259200")
# Per priority, the share of the time to due after which a case is at risk (flagged CaseAtRisk
# and its holder and supervisors told); 1 never warns.
try:
    CASE_SLA_AT_RISK = [float(v) for v in envlist("CASE_SLA_AT_RISK", "0.75,0.75,0.75,0.75")]
except ValueError:
    CASE_SLA_AT_RISK = []
if len(CASE_SLA_AT_RISK) != 4 or not all(0 < v <= 1 for v in CASE_SLA_AT_RISK):
    raise ImproperlyConfigured("CASE_SLA_AT_RISK is four shares in (0, 1], one per priority")
CASE_AUTO_CLOSE_SECONDS = envint("CASE_AUTO_CLOSE_SECONDS", 7 * 24 * 3600)
CASE_PAGE_SIZE = envint("CASE_PAGE_SIZE", 50)
# Seconds identical Visibility List/Count answers are shared across users and web processes
# (in the shared store) when the change feed cannot vouch for them; 0 turns sharing off.
VISIBILITY_CACHE_SECONDS = envfloat("VISIBILITY_CACHE_SECONDS", 3.0)
# Visibility calls per second for the whole deployment: one budget in the shared store, which
# every web process draws from (clusters default to 10 per frontend per namespace; Temporal
# Cloud allows 30); 0 disables the limiter.
VISIBILITY_RPS = envfloat("VISIBILITY_RPS", 8.0)
# A page waits at most this long for a slot in the Visibility budget, then says Temporal is
# busy (a 503) instead of hanging; the change feed's own poll goes first in every window.
VISIBILITY_WAIT_SECONDS = envfloat("VISIBILITY_WAIT_SECONDS", 5.0)
if VISIBILITY_WAIT_SECONDS <= 0:
    raise ImproperlyConfigured(
        f"VISIBILITY_WAIT_SECONDS must be more than 0 seconds, got {VISIBILITY_WAIT_SECONDS}")
# --- The change feed (cases/live/feed.py): one Visibility reader per deployment, by lease.
FEED_CACHE = os.getenv("FEED_CACHE", "default")
FEED_INTERVAL_SECONDS = envfloat("FEED_INTERVAL_SECONDS", 1.0)
# Rows changed this long before the watermark are asked for again: Visibility's indexing lag
# (seconds on a loaded cluster) must be shorter, or a late row would be missed.
FEED_OVERLAP_SECONDS = envfloat("FEED_OVERLAP_SECONDS", 30.0)
FEED_LEASE_SECONDS = envint("FEED_LEASE_SECONDS", 5)
# The longest a process's follower of the change log waits in one read (it wakes at once
# when a change is written): how soon it notices a lost store, and how soon it stops.
FEED_LISTEN_SECONDS = envfloat("FEED_LISTEN_SECONDS", 1.0)
# Changes the log keeps (a Redis Stream trimmed to about this many entries); a tab away for
# longer than these changes take re-reads its page instead of resuming.
FEED_LOG_LENGTH = envint("FEED_LOG_LENGTH", 20000)
# How long the log remembers a case's last published row (to tell a change from a repeat,
# and what the case looked like before it), in Redis; `make run`'s log keeps this many cases.
FEED_KNOWN_SECONDS = envint("FEED_KNOWN_SECONDS", 86400)
FEED_KNOWN_CASES = envint("FEED_KNOWN_CASES", 100_000)
# Changes each process keeps in memory to check cached answers and resume streams against.
FEED_RECENT = envint("FEED_RECENT", 5000)
# A feed not read for this long is not trusted to keep cached answers fresh.
FEED_STALE_SECONDS = envfloat("FEED_STALE_SECONDS", 5.0)
# Cached List/Count answers the feed keeps fresh are re-asked at least this often anyway.
VISIBILITY_FEED_TTL_SECONDS = envfloat("VISIBILITY_FEED_TTL_SECONDS", 300.0)
# Seconds between live refreshes of the list and the case page while they are visible.
LIST_REFRESH_SECONDS = envint("LIST_REFRESH_SECONDS", 10)
BULK_CONCURRENCY = envint("BULK_CONCURRENCY", 8)
BULK_MAX_CASES = envint("BULK_MAX_CASES", 1000)
DASHBOARD_REFRESH_SECONDS = envint("DASHBOARD_REFRESH_SECONDS", 30)
# Dashboard counts are shared this long: a dashboard is ~20 Count calls.
DASHBOARD_CACHE_SECONDS = envfloat("DASHBOARD_CACHE_SECONDS", 15.0)
DASHBOARD_AT_RISK_HOURS = envint("DASHBOARD_AT_RISK_HOURS", 4)
DASHBOARD_AGING_DAYS = envints("DASHBOARD_AGING_DAYS", "1,3,7")
DASHBOARD_TOP_ASSIGNEES = envint("DASHBOARD_TOP_ASSIGNEES", 8)
CASE_REFRESH_SECONDS = envint("CASE_REFRESH_SECONDS", 5)
# Server push (cases/live/): a comment line this often keeps idle streams open through
# proxies; a list is told to re-fetch at most once per debounce period.
EVENTS_KEEPALIVE_SECONDS = envfloat("EVENTS_KEEPALIVE_SECONDS", 15.0)
EVENTS_LIST_DEBOUNCE_SECONDS = envfloat("EVENTS_LIST_DEBOUNCE_SECONDS", 0.5)
# An open stream is a request that never ends: its user's access version and notices'
# version (cases/live/wakeups.py) are read this often for all streams of a process at once; a
# stream re-checks its session and access when the first moves (and every
# EVENTS_RECHECK_SECONDS anyway: a change the store lost, a session deleted behind Django's
# back), and its badge is counted again when the second does.
STREAM_WATCH_SECONDS = envfloat("STREAM_WATCH_SECONDS", 1.0)
EVENTS_RECHECK_SECONDS = envfloat("EVENTS_RECHECK_SECONDS", 60.0)
# Streams one session / one user may hold open in a web process; a new one closes the oldest.
EVENTS_MAX_PER_SESSION = envint("EVENTS_MAX_PER_SESSION", 8)
EVENTS_MAX_PER_USER = envint("EVENTS_MAX_PER_USER", 16)
# A stream ends after this long (plus up to a tenth more, so a deploy's streams do not all
# come back at once) and the page reconnects as a fresh request.
EVENTS_MAX_AGE_SECONDS = envfloat("EVENTS_MAX_AGE_SECONDS", 3600.0)
for _name in ("STREAM_WATCH_SECONDS", "EVENTS_RECHECK_SECONDS", "EVENTS_MAX_AGE_SECONDS"):
    if globals()[_name] <= 0:
        raise ImproperlyConfigured(f"{_name} must be more than 0 seconds, got {globals()[_name]}")
for _name in ("EVENTS_MAX_PER_SESSION", "EVENTS_MAX_PER_USER"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1, got {globals()[_name]}")

# --- Notifications (issue 16) ---------------------------------------------------------------
# Seconds a case waits without a new notice before its notices go out as one batch (one email
# per person), so a burst of comments is one email.
NOTIFY_QUIET_SECONDS = envfloat("NOTIFY_QUIET_SECONDS", 30.0)
if NOTIFY_QUIET_SECONDS < 0:
    raise ImproperlyConfigured(
        f"NOTIFY_QUIET_SECONDS cannot be negative, got {NOTIFY_QUIET_SECONDS}")
# Where the links in emails point: this site as people reach it.
SITE_URL = os.getenv("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
# Django's own email settings. Without EMAIL_HOST mail is written to files under
# var/mail/ (one file per message) instead of being sent.
EMAIL_HOST = os.getenv("EMAIL_HOST", "")
EMAIL_PORT = envint("EMAIL_PORT", 25)
EMAIL_HOST_USER = os.getenv("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.getenv("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = envbool("EMAIL_USE_TLS", False)
EMAIL_TIMEOUT = 20
DEFAULT_FROM_EMAIL = os.getenv("DEFAULT_FROM_EMAIL", "Tracerail <tracerail@example.com>")
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")
# --- Mail in (issue 23): the SMTP door and the IMAP poller ---------------------------------
# Where `run_mail_intake` listens: a mail server on this host hands mail to it (Postfix
# transport or relay, docs/deployment.md). Loopback by default: the door does no TLS and no
# sender authentication, so it must not face the internet.
MAIL_INTAKE_HOST = os.getenv("MAIL_INTAKE_HOST", "127.0.0.1").strip()
MAIL_INTAKE_PORT = envint("MAIL_INTAKE_PORT", 2525)
MAIL_MAX_BYTES = envint("MAIL_MAX_BYTES", 26214400)
# Hand-overs (each a few Temporal calls in a thread) one listener runs at once; more senders
# wait in DATA, which SMTP allows for minutes.
MAIL_INTAKE_CONCURRENCY = envint("MAIL_INTAKE_CONCURRENCY", 8)
MAIL_POLL_SECONDS = envfloat("MAIL_POLL_SECONDS", 60.0)
# Encrypts the admin's IMAP passwords (Fernet); empty: a key derived from SECRET_KEY, so
# rotating SECRET_KEY then means entering the mailbox passwords again.
MAIL_SECRET_KEY = os.getenv("MAIL_SECRET_KEY", "")
if not 1 <= MAIL_INTAKE_PORT <= 65535:
    raise ImproperlyConfigured(f"MAIL_INTAKE_PORT must be a port number (1-65535), "
                               f"got {MAIL_INTAKE_PORT}")
if not MAIL_INTAKE_HOST or any(c.isspace() for c in MAIL_INTAKE_HOST) or "/" in MAIL_INTAKE_HOST:
    raise ImproperlyConfigured(
        f"MAIL_INTAKE_HOST must be a host name or IP address, got {MAIL_INTAKE_HOST!r}")
for _name in ("MAIL_MAX_BYTES", "MAIL_INTAKE_CONCURRENCY"):
    if globals()[_name] < 1:
        raise ImproperlyConfigured(f"{_name} must be at least 1, got {globals()[_name]}")
if MAIL_POLL_SECONDS <= 0:
    raise ImproperlyConfigured(
        f"MAIL_POLL_SECONDS must be more than 0 seconds, got {MAIL_POLL_SECONDS}")
# Tests only: "exit-after-hand-over" ends `poll_mailboxes` right after a message's hand-over,
# before it is marked in the mailbox (the restart-mid-fetch test).
MAIL_POLL_FAULT = os.getenv("MAIL_POLL_FAULT", "")

# Fault injection for tests only: "exit-after-send" ends the worker process right after an
# email is sent, before the ledger marks it sent; "exit-after-record" right after the mark,
# before the activity completes (the exactly-once tests).
NOTIFY_FAULT = os.getenv("NOTIFY_FAULT", "")
# Mail in (issue 23): a sender whose mail opens more cases than this in a minute is held.
MAIL_SENDER_CASES_PER_MINUTE = envint("MAIL_SENDER_CASES_PER_MINUTE", 5)
# How many ignored or held mails the admin lists (the newest; older rows are pruned).
MAIL_IGNORED_KEEP = envint("MAIL_IGNORED_KEEP", 1000)
# Where mail to our reply mailbox goes when its token names no case we can append to (forged,
# or its case gone): it opens a new case there.
MAIL_REPLY_QUEUE = "general"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # Its start-up banner in every process (and before run_worker's first line) says
        # nothing the settings do not; lockouts and failures are still logged.
        "axes.apps": {"level": "WARNING"},
        # aiosmtpd logs every SMTP command and connection at INFO (five lines a mail); the
        # door logs each mail's outcome itself (tracerail.mail.smtp).
        "mail.log": {"level": "WARNING"},
    },
}
