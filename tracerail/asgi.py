from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tracerail.settings")

from cases.web.request_threads import RequestThreads

# Ordinary requests lease a thread for their synchronous parts; push streams (/events/) never
# do (cases/web/request_threads.py).
application = RequestThreads(get_asgi_application())
