"""The client address that login throttling counts failures against."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    """The address the outermost trusted proxy saw, or the socket's own address.

    Each proxy appends the address it received from, so only the last TRUSTED_PROXY_COUNT
    entries of X-Forwarded-For are trustworthy; anything to their left is whatever the
    client chose to send, and counting that would let an attacker pick a fresh address
    for every guess.
    """
    remote = request.META.get("REMOTE_ADDR", "")
    count = settings.TRUSTED_PROXY_COUNT
    if count <= 0:
        return remote
    hops = [h.strip() for h in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    hops = [h for h in hops if h]
    return hops[-count] if len(hops) >= count else remote
