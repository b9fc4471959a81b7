from __future__ import annotations

from django.urls import path

from cases.web import api

app_name = "api"

urlpatterns = [
    path("cases/", api.create_case, name="cases"),
    path("cases/<str:case_id>/", api.get_case, name="case"),
    path("cases/<str:case_id>/history/", api.case_history, name="history"),
    path("cases/<str:case_id>/attachments/", api.attach, name="attach"),
    path("cases/<str:case_id>/attachments/<str:attachment_id>/", api.attachment,
         name="attachment"),
]
