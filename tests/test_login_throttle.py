"""Login throttling (django-axes): per username and client address, unlocked by an admin."""

from __future__ import annotations

from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.test import AsyncClient, Client, RequestFactory

from cases.web.throttle import client_ip

from .conftest import PASSWORD, logged_in

LOCKED = b"Too many failed logins"


def _login(password: str, username: str = "alice", ip: str = "198.51.100.7"):
    return Client(REMOTE_ADDR=ip).post("/login/", {"username": username, "password": password})


def _lock_out(username: str = "alice", ip: str = "198.51.100.7") -> None:
    answers = [_login("wrong", username, ip).status_code for _ in range(6)]
    # Four plain "wrong password" answers, then the fifth failure locks.
    assert answers == [200, 200, 200, 200, 429, 429]


def test_the_right_password_is_refused_once_locked(agent):
    _lock_out()
    response = _login(PASSWORD)
    assert response.status_code == 429
    words = " ".join(response.content.decode().split())
    assert "Too many failed logins for alice." in words
    assert "try again in 15 minutes." in words and "Ask an admin to unlock it" in words
    assert "_auth_user_id" not in response.client.session


def test_other_users_and_other_addresses_are_not_locked(agent, other_agent):
    _lock_out("alice", ip="198.51.100.7")
    # bob behind the same address (one contact centre, one NAT) still logs in ...
    assert _login(PASSWORD, "bob", ip="198.51.100.7").status_code == 302
    # ... and alice from her own desk is not locked out by someone guessing elsewhere.
    assert _login(PASSWORD, "alice", ip="203.0.113.9").status_code == 302


def test_an_admin_unlocks_from_the_admin(agent, admin_user):
    from axes.models import AccessAttempt

    _lock_out()
    admin = logged_in(admin_user)  # force_login still works with axes' backend first
    listing = admin.get("/admin/axes/accessattempt/")
    assert listing.status_code == 200 and b"alice" in listing.content
    attempt = AccessAttempt.objects.get(username="alice")
    response = admin.post("/admin/axes/accessattempt/", {
        "action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"})
    assert response.status_code == 302
    assert _login(PASSWORD).status_code == 302


def test_the_reset_command_unlocks(agent):
    _lock_out()
    call_command("axes_reset_username", "alice")
    assert _login(PASSWORD).status_code == 302


def test_a_right_password_clears_earlier_failures(agent):
    for _ in range(4):
        _login("wrong")
    assert _login(PASSWORD).status_code == 302
    # Had the four counted on, this fifth failure would lock.
    assert _login("wrong").status_code == 200


def test_lockout_page_on_the_async_handler(agent):
    # uvicorn runs the middleware chain async, where axes takes a different code path.
    async def attempt(password: str):
        return await AsyncClient(REMOTE_ADDR="198.51.100.7").post(
            "/login/", {"username": "alice", "password": password})

    statuses = [async_to_sync(attempt)("wrong").status_code for _ in range(5)]
    assert statuses == [200, 200, 200, 200, 429]
    response = async_to_sync(attempt)(PASSWORD)
    assert response.status_code == 429 and LOCKED in response.content


def test_client_address_behind_a_proxy(settings):
    factory = RequestFactory()
    # The client put a made-up address first; the load balancer appended the real one.
    request = factory.get("/", REMOTE_ADDR="10.0.0.2",
                          HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.5")
    settings.TRUSTED_PROXY_COUNT = 0
    assert client_ip(request) == "10.0.0.2"
    settings.TRUSTED_PROXY_COUNT = 1
    assert client_ip(request) == "203.0.113.5"
    settings.TRUSTED_PROXY_COUNT = 2
    assert client_ip(request) == "6.6.6.6"
    # Fewer entries than proxies: the header is not what the proxies would write.
    settings.TRUSTED_PROXY_COUNT = 3
    assert client_ip(request) == "10.0.0.2"
