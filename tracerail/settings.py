"""Tracerail settings: everything comes from environment variables, with working dev defaults."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.getenv("TRACERAIL_VAR_DIR", BASE_DIR / "var"))


def envbool(name: str, default: str) -> bool:
    return os.getenv(name, default).strip().lower() in ("1", "true", "yes", "on")


def envint(name: str, default: int) -> int:
    return int(os.getenv(name, str(default)))


def envfloat(name: str, default: float) -> float:
    return float(os.getenv(name, str(default)))


def envlist(name: str, default: str) -> list[str]:
    return [v.strip() for v in os.getenv(name, default).split(",") if v.strip()]


DEBUG = envbool("DEBUG", "false")
SECRET_KEY = os.getenv("SECRET_KEY", "dev-only-insecure-key-change-me")
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
    "cases",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "cases.middleware.resolve_user",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "cases.middleware.TemporalErrors",
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
                "cases.context_processors.tracerail",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.parse(
        os.getenv("DATABASE_URL", f"sqlite:///{VAR_DIR / 'db.sqlite3'}"), conn_max_age=60
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
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

SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", "false")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if SESSION_COOKIE_SECURE else None

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
CASE_SLA_SECONDS = [int(v) for v in envlist("CASE_SLA_SECONDS", "14400,28800,86400,259200")]
CASE_AUTO_CLOSE_SECONDS = envint("CASE_AUTO_CLOSE_SECONDS", 7 * 24 * 3600)
CASE_PAGE_SIZE = envint("CASE_PAGE_SIZE", 50)
# Seconds identical Visibility List/Count answers are shared across users (per process).
VISIBILITY_CACHE_SECONDS = envfloat("VISIBILITY_CACHE_SECONDS", 3.0)
# Visibility calls per second this process allows itself (clusters default to 10 per frontend
# per namespace); 0 disables the limiter.
VISIBILITY_RPS = envfloat("VISIBILITY_RPS", 8.0)
# Seconds between live refreshes of the list and the case page while they are visible.
LIST_REFRESH_SECONDS = envint("LIST_REFRESH_SECONDS", 10)
BULK_CONCURRENCY = envint("BULK_CONCURRENCY", 8)
BULK_MAX_CASES = envint("BULK_MAX_CASES", 1000)
DASHBOARD_REFRESH_SECONDS = envint("DASHBOARD_REFRESH_SECONDS", 30)
# Dashboard counts are shared this long: a dashboard is ~20 Count calls.
DASHBOARD_CACHE_SECONDS = envfloat("DASHBOARD_CACHE_SECONDS", 15.0)
DASHBOARD_AT_RISK_HOURS = envint("DASHBOARD_AT_RISK_HOURS", 4)
DASHBOARD_AGING_DAYS = [int(v) for v in envlist("DASHBOARD_AGING_DAYS", "1,3,7")]
DASHBOARD_TOP_ASSIGNEES = envint("DASHBOARD_TOP_ASSIGNEES", 8)
CASE_REFRESH_SECONDS = envint("CASE_REFRESH_SECONDS", 5)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.getenv("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
