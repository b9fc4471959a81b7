from __future__ import annotations

from django.urls import path

from cases.web import reports

app_name = "reports"

urlpatterns = [
    path("", reports.report_page, name="page"),
    path("cases/", reports.drilldown, name="cases"),
]
