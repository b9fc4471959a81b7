from django.urls import path

from cases.web import notifications

app_name = "notifications"

urlpatterns = [
    path("", notifications.inbox, name="inbox"),
    path("badge.json", notifications.badge, name="badge"),
    path("read/", notifications.mark_all_read, name="read_all"),
    path("<int:pk>/read/", notifications.mark_read, name="read"),
    path("settings/", notifications.preferences, name="settings"),
]
