"""A global throttle of failed confirmation attempts per client IP and per signed-in user.

Threat answered: per-action attempt limits stop guessing one action's 6-digit code, but an attacker with
many actions (or many stolen action ids) could spread guesses across them.  Every failed attempt (wrong
code or amounts, unknown link) counts against the client across all actions; past FAILED_ATTEMPTS_LIMIT in
FAILED_ATTEMPTS_WINDOW every confirmation attempt from it gets 429 until the window passes.  Counters live
in the THROTTLE_CACHE Django cache, so all web processes share them when it is Redis or Memcached.
"""

from __future__ import annotations

from django.core.cache import caches
from django.http import HttpRequest

from pipeline.conf import app_settings

PREFIX = "deferred_confirmation:failures:"


def client_keys(request: HttpRequest) -> list[str]:
    # REMOTE_ADDR, not X-Forwarded-For: a client can forge that header (behind a proxy, set REMOTE_ADDR from it
    # in a middleware you trust).
    keys = [f"{PREFIX}ip:{request.META.get('REMOTE_ADDR', '')}"]
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        keys.append(f"{PREFIX}user:{user.pk}")
    return keys


def is_blocked(request: HttpRequest) -> bool:
    cache = caches[app_settings.THROTTLE_CACHE]
    counts = cache.get_many(client_keys(request))
    return any(count >= app_settings.FAILED_ATTEMPTS_LIMIT for count in counts.values())


def record_failure(request: HttpRequest) -> None:
    cache = caches[app_settings.THROTTLE_CACHE]
    window = int(app_settings.FAILED_ATTEMPTS_WINDOW.total_seconds())
    for key in client_keys(request):
        cache.add(key, 0, timeout=window)  # the window starts with the first failure
        try:
            cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.set(key, 1, timeout=window)
