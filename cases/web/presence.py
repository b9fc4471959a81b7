"""Each person's availability page (issue 17): available for cases, or away."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from cases.config import presence


class AvailabilityForm(forms.Form):
    available = forms.TypedChoiceField(
        choices=[("yes", "Available for cases"), ("no", "Away")],
        coerce=lambda v: v == "yes", widget=forms.RadioSelect, label="I am")


@require_http_methods(["GET", "POST"])
@login_required
def availability(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = AvailabilityForm(request.POST)
        if form.is_valid():
            presence.set_available(request.user, form.cleaned_data["available"])
            messages.success(request, "Saved: you are " + (
                "available." if form.cleaned_data["available"] else "away."))
            return redirect("availability")
    else:
        now = presence.is_available(request.user)
        form = AvailabilityForm(initial={"available": "yes" if now else "no"})
    return render(request, "availability.html", {"form": form})
