"""The intake API on the real server: token auth, form-equal validation, idempotency."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from cases import temporal as gateway


def _post(payload: object, token: str | None, **headers: str):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    extra.update({f"HTTP_{k.upper().replace('-', '_')}": v for k, v in headers.items()})
    return Client(enforce_csrf_checks=True).post(
        "/api/cases/", json.dumps(payload), content_type="application/json", **extra)


GOOD = {"title": "Invoice 1042 is wrong", "queue": "billing", "priority": 2,
        "description": "VAT doubled", "requester": {"name": "Ada", "email": "ada@example.com"},
        "tags": ["vip"]}


def test_create_then_read_back(api_token, temporal):
    response = _post(GOOD, api_token)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["created"] is True and body["url"] == f"/api/cases/{body['id']}/"
    read = Client().get(body["url"], HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert read.status_code == 200
    case = read.json()
    assert (case["title"], case["queue"], case["priority"], case["status"]) == (
        "Invoice 1042 is wrong", "billing", 2, "new")
    assert case["requester"] == {"name": "Ada", "email": "ada@example.com"}
    assert case["tags"] == ["vip"] and case["created_by"] == "intake-bot"
    assert case["version"] == 1 and case["updated_by"] == "intake-bot"


def test_same_idempotency_key_opens_one_case(api_token, temporal):
    first = _post(GOOD, api_token, **{"Idempotency-Key": "order-1042"})
    second = _post(GOOD, api_token, **{"Idempotency-Key": "order-1042"})
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]
    assert second.json()["created"] is False
    third = _post(GOOD | {"idempotency_key": "order-1043"}, api_token)
    assert third.status_code == 201 and third.json()["id"] != first.json()["id"]


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        (GOOD | {"title": ""}, "title", "This field is required."),
        (GOOD | {"title": "x" * 201}, "title", "at most 200"),
        (GOOD | {"queue": "technical"}, "queue", "Select a valid choice"),
        (GOOD | {"priority": 9}, "priority", "Select a valid choice"),
        (GOOD | {"priority": "1"}, "priority", "Must be an integer"),
        (GOOD | {"requester": {"email": "nope"}}, "requester_email", "valid email"),
        (GOOD | {"tags": "vip"}, "tags", "list of strings"),
        (GOOD | {"tags": ["bad tag"]}, "tags", "A tag uses"),
    ],
)
def test_validation_errors_are_json_field_messages(api_token, temporal, payload, field, message):
    response = _post(payload, api_token)
    assert response.status_code == 400
    body = response.json()
    assert field in body["fields"], body
    assert any(message in m for m in body["fields"][field]), body


def test_bad_json_and_auth(api_token, temporal):
    assert _post(GOOD, None).status_code == 401
    assert _post(GOOD, "trl_wrong").status_code == 401
    bad = Client().post("/api/cases/", "{not json", content_type="application/json",
                        HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert bad.status_code == 400 and bad.json()["error"] == "The body must be JSON."
    assert _post([1, 2], api_token).status_code == 400


def test_read_respects_the_access_rule(api_token, open_case, temporal):
    hidden = open_case(queue="technical")
    response = Client().get(f"/api/cases/{hidden}/", HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert response.status_code == 404 and response.json() == {"error": "No such case."}
    assert Client().get("/api/cases/nope/", HTTP_AUTHORIZATION=f"Bearer {api_token}").status_code \
        == 404


def test_api_says_503_in_json_when_temporal_is_down(api_token, settings, temporal):
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"
    gateway.reset_client()
    try:
        response = _post(GOOD, api_token)
        assert response.status_code == 503
        assert "Cannot reach Temporal" in response.json()["error"]
    finally:
        settings.TEMPORAL_ADDRESS = temporal.address
        gateway.reset_client()
    # Nothing was opened while it was down, and the same request works once it is back.
    assert _post(GOOD, api_token).status_code == 201


def test_an_ended_case_reads_back_from_its_history(api_token, temporal):
    from cases import temporal as gateway
    from workers.model import Close

    from .conftest import run

    body = _post(GOOD, api_token).json()
    run(gateway.act(body["id"], Close(actor="sam")))
    read = Client().get(body["url"], HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert read.status_code == 200
    case = read.json()
    assert (case["status"], case["updated_by"], case["version"]) == ("closed", "sam", 2)


def test_history_reads_back_the_timeline_with_the_same_access_rule(api_token, temporal):
    from cases import temporal as gateway
    from workers.model import Claim

    from .conftest import run

    body = _post(GOOD, api_token).json()
    run(gateway.act(body["id"], Claim(actor="sam")))
    auth = {"HTTP_AUTHORIZATION": f"Bearer {api_token}"}
    history = Client().get(f"{body['url']}history/", **auth)
    assert history.status_code == 200
    events = history.json()["events"]
    assert [(e["actor"], e["text"], e["version"]) for e in events] == [
        ("intake-bot", "intake-bot opened the case", 1), ("sam", "sam claimed the case", 2)]
    from cases.temporal.ids import new_case_id
    from workers.model import NewCase

    hidden = new_case_id()  # technical: not one of intake-bot's queues
    run(gateway.start_case(hidden, NewCase(title="Not yours", queue="technical"), "x"))
    assert Client().get(f"/api/cases/{hidden}/history/", **auth).status_code == 404
    assert Client().get(f"{body['url']}history/").status_code == 401
    assert Client().get("/api/cases/case-00000000/history/", **auth).status_code == 404
