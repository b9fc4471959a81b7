from __future__ import annotations

from django.urls import path

from . import bulk, export, views

app_name = "cases"

urlpatterns = [
    path("", views.case_list, name="list"),
    path("new/", views.case_new, name="new"),
    path("bulk/", bulk.bulk, name="bulk"),
    path("export.csv", export.export_csv, name="export"),
    path("<str:case_id>/", views.case_detail, name="detail"),
    path("<str:case_id>/history/", views.case_history, name="history"),
    path("<str:case_id>/<str:action>/", views.case_action, name="action"),
]
