"""Who is asking: the client address that throttles and per-client send limits count by.

Threats answered: behind a TLS proxy every request has the proxy's ``REMOTE_ADDR``, so counting by it lets one
client lock every user out; a client may also forge ``X-Forwarded-For``, so it is read only as far as the
site's own proxies wrote it.  As allauth decides it: ``TRUSTED_CLIENT_IP_HEADER`` (a header your proxy sets
and overwrites, e.g. ``X-Real-IP``) wins; else with ``TRUSTED_PROXY_COUNT`` = N the Nth address from the
right of ``X-Forwarded-For``; else (or when that header is missing) ``REMOTE_ADDR``.  An IPv6 client
counts per /64 (one subscriber's network), since anyone with a /64 has 2**64 addresses to rotate through.
"""

from __future__ import annotations

import ipaddress

from django.http import HttpRequest

from pipeline.conf import app_settings

UNKNOWN = "unknown"


def _header(request: HttpRequest, name: str) -> str:
    return request.META.get("HTTP_" + name.upper().replace("-", "_"), "")


def raw_address(request: HttpRequest) -> str:
    """The client's address as the trusted proxies report it (not yet normalised)."""
    header = app_settings.TRUSTED_CLIENT_IP_HEADER
    if header and _header(request, header).strip():
        return _header(request, header).strip()
    proxies = app_settings.TRUSTED_PROXY_COUNT or 0
    if proxies > 0:
        hops = [hop.strip() for hop in _header(request, "X-Forwarded-For").split(",") if hop.strip()]
        # Each trusted proxy appended the address it saw: the client's is the Nth from the right.  Fewer
        # entries than proxies means the request did not come through them all: the nearest hop decides.
        return hops[-proxies] if len(hops) >= proxies else request.META.get("REMOTE_ADDR", "")
    return request.META.get("REMOTE_ADDR", "")


def client_address(request: HttpRequest) -> str:
    """A stable key for the client: its IPv4 address, its IPv6 /64 network, or ``"unknown"``."""
    text = raw_address(request)
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return UNKNOWN
    if address.version == 6:
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)
