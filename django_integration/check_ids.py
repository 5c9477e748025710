"""Every system check id the library reports, named once with what it means.

``manage.py check`` prints these ids; projects silence them by id (``SILENCED_SYSTEM_CHECKS``), so an id never
changes meaning.  This module imports nothing: the setting validators of ``deferred_confirmation.pipeline`` name
their ids from here without loading the Django app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Check:
    """One system check id: ``confirmation.E004``, its level, and what it means in one sentence."""

    id: str
    level: Literal["error", "warning"]
    meaning: str


def _error(number: int, meaning: str) -> Check:
    return Check(f"confirmation.E{number:03d}", "error", meaning)


def _warning(number: int, meaning: str) -> Check:
    return Check(f"confirmation.W{number:03d}", "warning", meaning)


# DEFERRED_CONFIRMATION as a whole
SETTINGS_NOT_A_DICT = _error(1, "DEFERRED_CONFIRMATION is not a dict.")
UNKNOWN_SETTING = _error(2, "DEFERRED_CONFIRMATION has a key the library does not know (a typo?).")
NO_CHANNELS = _error(3, "CHANNELS is not a non-empty dict of channel name -> options.")
BAD_DURATION = _error(4, "A duration setting is not a datetime.timedelta, or is negative.")
BAD_DEFAULT_CHANNELS = _error(5, "DEFAULT_CHANNELS is not a list of channel names.")
BAD_ROUTES = _error(6, "ROUTES is not a dict of form path or model label -> channel names.")
NOT_A_POSITIVE_INT = _error(7, "A count setting is not a positive integer.")
BAD_CELERY_APP = _error(8, "CELERY_APP cannot be imported or is not a Celery app.")
REDRIVE_WITHIN_BACKOFF = _error(9, "REDRIVE_AFTER is not longer than RETRY_BACKOFF_MAX: redrive would replace the "
                                   "secret of a delivery only waiting for its next retry.")
# One channel of CHANNELS
CHANNEL_NOT_A_DICT = _error(10, "A channel's options are not a dict.")
UNKNOWN_CHANNEL_KEY = _error(11, "A channel has an option the library does not know.")
CHANNEL_WITHOUT_BACKEND = _error(12, "A channel that is not built in has no BACKEND.")
BACKEND_NOT_IMPORTABLE = _error(13, "A channel's BACKEND cannot be imported (is the channel's extra installed?).")
BAD_EXPIRES = _error(14, "A channel's EXPIRES is not a positive datetime.timedelta.")
BAD_MAX_ATTEMPTS = _error(15, "A channel's MAX_ATTEMPTS is not a positive integer or None.")
OPTIONS_NOT_A_DICT = _error(16, "A channel's OPTIONS is not a dict.")
BAD_CHANNEL_QUEUE = _error(17, "A channel's QUEUE is not a queue name.")
BAD_RATE_LIMIT = _error(18, "A channel's RATE_LIMIT is not a Celery rate like '10/m'.")
BAD_SEND_LIMIT = _error(19, "A channel's SEND_LIMIT is not a positive integer or None.")
# Channel names in ROUTES and DEFAULT_CHANNELS
NO_CHANNEL_NAMES = _error(20, "A route or DEFAULT_CHANNELS is not a non-empty list of channel names.")
UNKNOWN_CHANNEL_NAME = _error(21, "A route or DEFAULT_CHANNELS names a channel that is not in CHANNELS.")
BAD_CHANNEL_DURATION = _error(22, "A channel's SEND_WINDOW or RESEND_COOLDOWN is not a datetime.timedelta or None.")
UNKNOWN_ROUTE_KEY = _error(23, "A route given as a dict has a key other than 'channels' and 'policy'.")
BAD_ROUTE_POLICY = _error(24, "A route's policy is not 'any' or 'all'.")
BAD_BACKEND_OPTIONS = _error(25, "The channel backend refuses its OPTIONS (credentials, code length, payout backend).")
# Links in messages
SITE_URL_MISSING = _error(30, "SITE_URL is not set; every message's URL is built from it, never from a request.")
SITE_URL_INVALID = _error(31, "SITE_URL is not an absolute http(s) URL.")
# Queues, mail, throttles, client identity, send limits
BAD_QUEUE = _error(40, "APPLY_QUEUE or MAINTENANCE_QUEUE is not a queue name.")
BAD_FROM_EMAIL = _error(41, "FROM_EMAIL is neither an address nor None.")
UNKNOWN_THROTTLE_CACHE = _error(42, "THROTTLE_CACHE names no cache in settings.CACHES.")
BAD_PHONE_REGION = _error(43, "PHONE_REGION is neither a two-letter region code nor None.")
BAD_PROXY_COUNT = _error(44, "TRUSTED_PROXY_COUNT is not a whole number, 0 or more.")
BAD_CLIENT_IP_HEADER = _error(45, "TRUSTED_CLIENT_IP_HEADER is neither a header name nor None.")
BAD_SEND_LIMIT_PER_CLIENT = _error(46, "SEND_LIMIT_PER_CLIENT is neither a positive integer nor None.")
BAD_SEND_WINDOW_PER_CLIENT = _error(47, "SEND_WINDOW_PER_CLIENT is not a positive datetime.timedelta.")
# Warnings: the project runs, but not as safely as it should
SQLITE_NOT_IMMEDIATE = _warning(1, "SQLite without transaction_mode IMMEDIATE: a web process and a worker writing "
                                   "at once get 'database is locked' instead of waiting.")
THROTTLE_CACHE_NOT_SHARED = _warning(2, "THROTTLE_CACHE is per process, stores nothing, or cannot increment "
                                        "atomically, so failed attempts are miscounted.")
LEGACY_PATH = _warning(3, "A setting names the library's old top-level package; it still loads, with a warning.")
DEPRECATED_CHANNEL_OPTION = _warning(4, "A channel option works on the running Django but Django deprecates it (the "
                                        "email channel's EMAIL_BACKEND on Django 6.1 without MAILERS).")

CHECKS: tuple[Check, ...] = tuple(value for value in list(globals().values()) if isinstance(value, Check))
"""Every check id, in the order above (errors by number, then warnings)."""
