"""A global throttle of failed confirmation attempts per client and per signed-in user.

Threats answered:
- Guessing across actions: per-action attempt limits stop guessing one action's 6-digit code, but an
  attacker with many actions could spread guesses across them.  Every failed attempt (a POST of a wrong code,
  wrong amounts or an unknown link) counts against the client and the signed-in user across all actions; past
  FAILED_ATTEMPTS_LIMIT in FAILED_ATTEMPTS_WINDOW every confirmation attempt from them gets 429.
- Lockout of other people: the client is the one :mod:`deferred_confirmation.django_integration.clients` names (the
  address the site's own proxies saw, an IPv6 /64), never the proxy's address all clients share, and only a POST that
  could have confirmed something counts: a GET of any link never does.
- Parallel guesses: an attempt is counted (an atomic ``incr`` in THROTTLE_CACHE) before the secret is checked,
  and refused if that count is past the limit; an attempt that did not fail is un-counted afterwards.  However
  many requests run at once, no more than the limit are ever checked per window.

Counters live in the THROTTLE_CACHE Django cache: all web processes share them when it is Redis or Memcached
(the system check warns about a per-process cache).
"""

from __future__ import annotations

from django.core.cache import caches
from django.http import HttpRequest

from deferred_confirmation.django_integration.clients import client_address, signed_in_user
from deferred_confirmation.pipeline.conf import app_settings

PREFIX = "deferred_confirmation:failures:"


def client_keys(request: HttpRequest) -> list[str]:
    keys = [f"{PREFIX}ip:{client_address(request)}"]
    user = signed_in_user(request)
    if user is not None:
        keys.append(f"{PREFIX}user:{user.pk}")
    return keys


def _count(cache, key: str, window: int) -> int:
    """One more attempt on ``key``; the count now.  The window starts with the first attempt."""
    for _ in range(3):
        if cache.add(key, 1, timeout=window):
            return 1
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr: start a new window
            continue
        if count == 1:
            # Redis re-creates a key that expired between Django's EXISTS and INCR, without an expiry: a
            # counter that would never end.  Whoever gets 1 gives it the window again.
            cache.touch(key, timeout=window)
        return count
    return 1


def _uncount(cache, key: str) -> None:
    try:
        if cache.decr(key) < 0:
            cache.delete(key)
    except ValueError:  # the window ended meanwhile: nothing left to take back
        pass


def reserve(request: HttpRequest) -> bool:
    """Count one confirmation attempt now; False (and nothing counted) if the client or user is past the limit.

    Call before checking the secret, and :func:`release` afterwards unless the attempt failed."""
    cache = caches[app_settings.THROTTLE_CACHE]
    window = int(app_settings.FAILED_ATTEMPTS_WINDOW.total_seconds())
    keys = client_keys(request)
    counts = [_count(cache, key, window) for key in keys]
    if any(count > app_settings.FAILED_ATTEMPTS_LIMIT for count in counts):
        for key in keys:
            _uncount(cache, key)
        return False
    return True


def release(request: HttpRequest) -> None:
    """Un-count an attempt :func:`reserve` counted that did not fail (the right secret, or malformed input)."""
    cache = caches[app_settings.THROTTLE_CACHE]
    for key in client_keys(request):
        _uncount(cache, key)

