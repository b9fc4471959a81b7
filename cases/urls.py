from __future__ import annotations

from django.urls import path

from . import views

app_name = "cases"

urlpatterns = [
    path("", views.case_list, name="list"),
    path("new/", views.case_new, name="new"),
    path("<str:case_id>/", views.case_detail, name="detail"),
    path("<str:case_id>/<str:action>/", views.case_action, name="action"),
]
