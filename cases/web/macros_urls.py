from __future__ import annotations

from django.urls import path

from cases.web import macros

app_name = "macros"

urlpatterns = [
    path("", macros.my_macros, name="mine"),
    path("<int:pk>/", macros.my_macros, name="edit"),
]
