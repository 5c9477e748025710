"""Who is asking: the client address that throttles and per-client send limits count by.

Threats answered: behind a TLS proxy every request has the proxy's ``REMOTE_ADDR``, so counting by it lets one
client lock every user out; a client may also forge ``X-Forwarded-For``, so it is read only as far as the
site's own proxies wrote it.  As allauth decides it: ``TRUSTED_CLIENT_IP_HEADER`` (a header your proxy sets
and overwrites, e.g. ``X-Real-IP``) wins; else with ``TRUSTED_PROXY_COUNT`` = N the Nth address from the
right of ``X-Forwarded-For``; else (or when that header is missing) ``REMOTE_ADDR``.  An IPv6 client
counts per /64 (one subscriber's network), since anyone with a /64 has 2**64 addresses to rotate through.
Some proxies write a port (``203.0.113.5:4711``, ``[2001:db8::1]:443``): it is dropped, or every client would
be one unreadable ``"unknown"`` and share its counters.  A request whose address still cannot be read counts
as that one client ``"unknown"``: an unreadable address never escapes a limit.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from django.http import HttpRequest

from deferred_confirmation.pipeline.conf import app_settings

UNKNOWN = "unknown"
_BRACKETED = re.compile(r"\[([^\]]+)\](?::\d+)?")


def signed_in_user(request: HttpRequest | None) -> Any:
    """The request's signed-in user, or None (anonymous, or no authentication middleware)."""
    user = getattr(request, "user", None)
    return user if user is not None and user.is_authenticated else None


def _header(request: HttpRequest, name: str) -> str:
    return request.META.get("HTTP_" + name.upper().replace("-", "_"), "")


def raw_address(request: HttpRequest) -> str:
    """The client's address as the trusted proxies report it (not yet normalised)."""
    header = app_settings.TRUSTED_CLIENT_IP_HEADER
    if header and _header(request, header).strip():
        # One value, set by the proxy.  Should the proxy append instead (a list), the last entry is the one it
        # wrote itself; earlier ones came from the client.
        return _header(request, header).split(",")[-1].strip()
    proxies = app_settings.TRUSTED_PROXY_COUNT or 0
    if proxies > 0:
        hops = [hop.strip() for hop in _header(request, "X-Forwarded-For").split(",") if hop.strip()]
        # Each trusted proxy appended the address it saw: the client's is the Nth from the right.  Fewer
        # entries than proxies means the request did not come through them all: the nearest hop decides.
        return hops[-proxies] if len(hops) >= proxies else request.META.get("REMOTE_ADDR", "")
    return request.META.get("REMOTE_ADDR", "")


def _without_port(text: str) -> str:
    """``"[2001:db8::1]:443"`` -> ``"2001:db8::1"``, ``"203.0.113.5:4711"`` -> ``"203.0.113.5"``."""
    bracketed = _BRACKETED.fullmatch(text)
    if bracketed:
        return bracketed.group(1)
    if text.count(":") == 1:  # IPv4 with a port (a bare IPv6 address has at least two colons)
        return text.split(":", 1)[0]
    return text


def client_address(request: HttpRequest) -> str:
    """A stable key for the client: its IPv4 address, its IPv6 /64 network, or ``"unknown"``."""
    try:
        address = ipaddress.ip_address(_without_port(raw_address(request)).split("%", 1)[0])
    except ValueError:
        return UNKNOWN
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
