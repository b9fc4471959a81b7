from __future__ import annotations

from django.urls import path

from cases.web import api

app_name = "api"

urlpatterns = [
    path("cases/", api.create_case, name="cases"),
    path("cases/<str:case_id>/", api.get_case, name="case"),
    path("cases/<str:case_id>/history/", api.case_history, name="history"),
]
