from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracerail.settings")

from cases.web.request_threads import ReusedRequestThreads

application = ReusedRequestThreads(get_asgi_application())
