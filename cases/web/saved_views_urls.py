from __future__ import annotations

from django.urls import path

from cases.web import saved_views

app_name = "views"

urlpatterns = [
    path("", saved_views.save_view, name="save"),
    path("<int:pk>/", saved_views.open_view, name="open"),
    path("<int:pk>/rename/", saved_views.rename_view, name="rename"),
    path("<int:pk>/delete/", saved_views.delete_view, name="delete"),
    path("<int:pk>/default/", saved_views.make_default, name="default"),
]
