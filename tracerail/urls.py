from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from cases.web.dashboard import dashboard
from cases.web.events import events
from cases.web.presence import availability
from cases.web.views import healthz

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="cases:list", permanent=False)),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("cases/", include("cases.web.urls")),
    path("api/", include("cases.web.api_urls")),
    path("dashboard/", dashboard, name="dashboard"),
    path("reports/", include("cases.web.reports_urls")),
    path("availability/", availability, name="availability"),
    path("events/", events, name="events"),
    path("views/", include("cases.web.saved_views_urls")),
    path("macros/", include("cases.web.macros_urls")),
    path("notifications/", include("cases.web.notifications_urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
]

handler404 = "cases.web.views.not_found"
handler403 = "cases.web.views.forbidden"
