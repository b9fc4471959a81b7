from __future__ import annotations

from django.urls import path

from cases.web import attachments, bulk, export, history, macros, views

app_name = "cases"

urlpatterns = [
    path("", views.case_list, name="list"),
    path("new/", views.case_new, name="new"),
    path("bulk/", bulk.bulk, name="bulk"),
    path("export.csv", export.export_csv, name="export"),
    path("archived/", history.archived, name="archived"),
    path("<str:case_id>/", views.case_detail, name="detail"),
    path("<str:case_id>/history/", history.case_history, name="history"),
    path("<str:case_id>/history.json", history.case_history_json, name="history_json"),
    path("<str:case_id>/history.csv", history.case_history_csv, name="history_csv"),
    path("<str:case_id>/attachments/<str:attachment_id>/", attachments.download,
         name="attachment"),
    path("<str:case_id>/attachments/<str:attachment_id>/preview/", attachments.preview,
         name="attachment_preview"),
    path("<str:case_id>/macros/<int:pk>/preview/", macros.preview, name="macro_preview"),
    path("<str:case_id>/macros/apply/", macros.apply, name="macro_apply"),
    path("<str:case_id>/<str:action>/", views.case_action, name="action"),
]
