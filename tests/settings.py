"""Settings for the test run: the product's settings with test-only conveniences."""

from __future__ import annotations

import os

# The product refuses to start without a real key outside DEBUG; the tests run with DEBUG
# off (as production does), so they bring their own.
os.environ.setdefault("SECRET_KEY", "tests-only-" + "k" * 50)

from tracerail.settings import *  # noqa: F403
from tracerail.settings import STORAGES, cache_settings

# Tests do not run collectstatic: serve static files from the finders.
STORAGES = {**STORAGES, "staticfiles": {
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = True
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tests poll Visibility for fresh writes; the sharing cache has its own test.
VISIBILITY_CACHE_SECONDS = 0.0
VISIBILITY_RPS = 0.0
DASHBOARD_CACHE_SECONDS = 0.0
# Never a developer's Redis from the shell's REDIS_URL: a test's cache.clear() would flush it.
# Tests that need Redis build their cache on the `redis_server` fixture.
CACHES = cache_settings(None, 0)
# Cases tell nobody unless a test turns it on (tests/test_notifications.py sets a short
# quiet period): a delivery reads users, and most tests have none in a database the worker's
# threads can read.
NOTIFY_QUIET_SECONDS = -1.0
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
# Files kept by tests go to a directory of the run's own, never the developer's var/: one per
# run, shared with the processes it starts (they inherit the variable and so read the same
# files), and removed when the run ends (before, every process that loaded these settings
# made one and left it: 490 in /tmp after a day's runs).
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

_FILES = os.environ.get("TRACERAIL_TEST_ATTACHMENTS", "")
if not _FILES:
    _FILES = os.environ["TRACERAIL_TEST_ATTACHMENTS"] = tempfile.mkdtemp(prefix="attachments-")
    atexit.register(shutil.rmtree, _FILES, True)
STORAGES["attachments"] = {"BACKEND": "django.core.files.storage.FileSystemStorage",
                           "OPTIONS": {"location": _FILES, "base_url": None}}
