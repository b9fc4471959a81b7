from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from .conftest import PASSWORD


@pytest.mark.parametrize("url", ["/cases/", "/cases/new/", "/cases/case-AAAAAAAA/"])
def test_pages_require_login(db, url):
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_action_requires_login(db):
    response = Client().post("/cases/case-AAAAAAAA/claim/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_login_with_password_lands_on_case_list(agent, temporal):
    c = Client()
    response = c.post("/login/", {"username": "alice", "password": PASSWORD}, follow=True)
    assert response.status_code == 200
    assert response.redirect_chain[-1][0] == reverse("cases:list")
    assert b"alice" in response.content


def test_wrong_password_is_an_inline_error(agent):
    response = Client().post("/login/", {"username": "alice", "password": "nope"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_posts_need_csrf(agent, temporal):
    c = Client(enforce_csrf_checks=True)
    c.force_login(agent)
    response = c.post("/cases/case-AAAAAAAA/claim/", {"claim-version": "1"})
    assert response.status_code == 403
