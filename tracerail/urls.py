from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView

from cases.dashboard import dashboard
from cases.events import events
from cases.views import healthz

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="cases:list", permanent=False)),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("cases/", include("cases.urls")),
    path("api/", include("cases.api_urls")),
    path("dashboard/", dashboard, name="dashboard"),
    path("events/", events, name="events"),
    path("views/", include("cases.saved_views_urls")),
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
]

handler404 = "cases.views.not_found"
handler403 = "cases.views.forbidden"
