"""Every answer under /api/ is JSON, including the ones Django itself gives (404, 405, 500)."""

from __future__ import annotations

import logging

import pytest
from django.test import Client


def _auth(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def test_deeply_nested_json_is_a_400_not_a_crash(api_token):
    body = "[" * 30_000 + "]" * 30_000  # 60,000 bytes: under the 64 KiB limit
    response = Client().post("/api/cases/", body, content_type="application/json",
                             **_auth(api_token))
    assert response.status_code == 400
    assert response.json() == {
        "error": "The body must be JSON that is not this deeply nested."}


def test_wrong_method_is_a_json_405(api_token):
    response = Client().get("/api/cases/", **_auth(api_token))
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert response.json() == {"error": "GET is not allowed here; use POST."}
    response = Client().delete("/api/cases/case-AAAAAAAA/", **_auth(api_token))
    assert response.status_code == 405
    assert response.json()["error"].startswith("DELETE is not allowed here; use GET")


def test_unknown_api_path_is_a_json_404(api_token, agent_client):
    response = Client().get("/api/nonsense/")
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json() == {"error": "Nothing here: /api/nonsense/ is not an API endpoint."}
    # The API's own JSON answers pass through as they were written ...
    response = Client().get("/api/cases/nope/", **_auth(api_token))
    assert response.status_code == 404 and response.json() == {"error": "No such case."}
    # ... and pages outside the API keep their HTML 404.
    page = agent_client.get("/nonsense/")
    assert page.status_code == 404 and page["Content-Type"].startswith("text/html")


def test_an_unexpected_error_is_a_logged_json_500(api_token, monkeypatch, caplog):
    from cases.web import api

    def broken(*args, **kwargs):
        raise RuntimeError("secret detail from deep inside")

    monkeypatch.setattr(api, "load", broken)
    with caplog.at_level(logging.ERROR, logger="django.request"):
        response = Client(raise_request_exception=False).post(
            "/api/cases/", "{}", content_type="application/json", **_auth(api_token))
    assert response.status_code == 500
    assert response.json() == {"error": "Internal server error; it has been logged."}
    assert b"secret detail" not in response.content and b"Traceback" not in response.content
    logged = [r for r in caplog.records if r.exc_info]
    assert logged and "secret detail from deep inside" in str(logged[0].exc_info[1])


@pytest.mark.parametrize("token", [None, "trl_not-a-token"])
def test_every_api_view_turns_away_a_caller_without_a_valid_token(db, token):
    # Every route, so an endpoint added without `token_required` fails here.
    from cases.web import api_urls

    headers = _auth(token) if token else {}
    for pattern in api_urls.urlpatterns:
        path = "/api/" + str(pattern.pattern).replace("<str:case_id>", "case-AAAAAAAA"
                                                      ).replace("<str:attachment_id>", "a1")
        method = Client().post if pattern.name in ("cases", "attach") else Client().get
        response = method(path, **headers)
        assert response.status_code == 401, path
        assert response["WWW-Authenticate"] == "Bearer"
        assert "API token" in response.json()["error"]


def test_a_token_of_an_inactive_user_is_refused(api_token):
    from django.contrib.auth.models import User

    User.objects.filter(username="intake-bot").update(is_active=False)
    assert Client().get("/api/cases/case-AAAAAAAA/", **_auth(api_token)).status_code == 401
