"""The app's settings, read through one object with defaults.

Every key of ``settings.DEFERRED_CONFIRMATION`` is optional.  Values are read on each access (so
``override_settings`` in tests works) and validated by the system check in
``deferred_confirmation.django_integration.checks``, which reuses :func:`problems` from here.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings

# Built-in channels: a project names one of these with no BACKEND and gets these values.
CHANNEL_DEFAULTS: dict[str, dict[str, Any]] = {
    "email": {"BACKEND": "deferred_confirmation.pipeline.channels.email.EmailChannel", "EXPIRES": timedelta(days=3),
              "MAX_ATTEMPTS": None, "SEND_LIMIT": 10, "SEND_WINDOW": timedelta(hours=1)},
    # Twilio Verify's limits: 5 sends per recipient per 10 minutes, 60 s between resends.
    "sms": {"BACKEND": "deferred_confirmation.pipeline.channels.sms.TwilioSMSChannel", "EXPIRES": timedelta(minutes=10),
            "MAX_ATTEMPTS": 5, "SEND_LIMIT": 5, "SEND_WINDOW": timedelta(minutes=10)},
    "letter": {"BACKEND": "deferred_confirmation.pipeline.channels.letter.PDFLetterChannel",
               "EXPIRES": timedelta(days=30),
               "MAX_ATTEMPTS": 5, "SEND_LIMIT": 3, "SEND_WINDOW": timedelta(days=30),
               "RESEND_COOLDOWN": timedelta(days=1)},
    "microdeposit": {"BACKEND": "deferred_confirmation.pipeline.channels.microdeposit.MicroDepositChannel",
                     "EXPIRES": timedelta(days=10), "MAX_ATTEMPTS": 3, "SEND_LIMIT": 2,
                     "SEND_WINDOW": timedelta(days=10), "RESEND_COOLDOWN": timedelta(days=3)},
}
# Defaults of every channel, built-in or not.
CHANNEL_BASE: dict[str, Any] = {
    "EXPIRES": timedelta(days=3),
    "MAX_ATTEMPTS": None,  # wrong secrets before the action is locked (None: unlimited; links are unguessable)
    "RATE_LIMIT": None,  # Celery rate limit of the send task on a worker consuming this channel's queue
    "SEND_LIMIT": None,  # secrets sent to one recipient per SEND_WINDOW (None: unlimited)
    "SEND_WINDOW": timedelta(minutes=10),
    "RESEND_COOLDOWN": timedelta(seconds=60),  # least time between two secrets to one recipient
    "OPTIONS": {},  # the backend's own options
}
CHANNEL_KEYS = {"BACKEND", "QUEUE", *CHANNEL_BASE}

DEFAULTS: dict[str, Any] = {
    # channel name -> {BACKEND, EXPIRES, MAX_ATTEMPTS, QUEUE, RATE_LIMIT, OPTIONS}; only email is on by default
    "CHANNELS": {"email": {}},
    # "app.forms.FormClass" or "app_label.model" -> [channel names], or {"channels": [...], "policy": "all"}
    "ROUTES": {},
    "DEFAULT_CHANNELS": ["email"],
    "RETENTION": timedelta(days=30),  # terminal actions (and their recipients) are purged after this
    "SITE_URL": None,  # base of links in messages, e.g. "https://example.com"; never taken from a request
    "REDRIVE_AFTER": timedelta(minutes=10),  # an action stuck in pending/confirmed this long is re-enqueued
    "BATCH_SIZE": 500,  # rows per transaction in expire/purge/redrive
    # cap of the exponential backoff (2 s, 4 s, 8 s ..., full jitter) between retries of a transient channel error
    "RETRY_BACKOFF_MAX": timedelta(minutes=5),
    # how long one send task holds a delivery (a lease): longer than any provider call, shorter than the
    # broker's redelivery of a dead worker's task (Redis visibility timeout, 1 hour by default)
    "SEND_LEASE": timedelta(minutes=5),
    # dotted path of the Celery app that publishes the tasks; set your project's own app here if you have one
    "CELERY_APP": "deferred_confirmation.workers.app",
    "APPLY_QUEUE": "confirmation.apply",
    "MAINTENANCE_QUEUE": "confirmation.maintenance",
    "FROM_EMAIL": None,  # None: settings.DEFAULT_FROM_EMAIL
    "STATUS_REFRESH_SECONDS": 2,  # how often the status page reloads itself while the change is in flight
    # Failed confirmation attempts (wrong code, unknown link, wrong amounts) allowed per client IP and per
    # user, across all actions, in FAILED_ATTEMPTS_WINDOW; past it every attempt gets 429.
    "FAILED_ATTEMPTS_LIMIT": 20,
    "FAILED_ATTEMPTS_WINDOW": timedelta(minutes=15),
    "THROTTLE_CACHE": "default",  # Django cache alias holding those counters (shared by all web processes)
    # Which address is the client's (throttles, per-client send limits), as allauth decides it: with N trusted
    # proxies in front of the site, the Nth address from the right of X-Forwarded-For; or the value of one header
    # your proxy sets and clients cannot (e.g. "X-Real-IP").  Default: REMOTE_ADDR.  IPv6 clients count per /64.
    "TRUSTED_PROXY_COUNT": 0,
    "TRUSTED_CLIENT_IP_HEADER": None,
    # Times the outbox sweep (redrive) re-queues one action before it ends failed.
    "MAX_REDRIVES": 3,
    # Secrets one client (address) or one signed-in user may have sent, across all recipients, per
    # SEND_WINDOW_PER_CLIENT, counted at save() and resend: SMS pumping and mail bombing.  None: unlimited.
    "SEND_LIMIT_PER_CLIENT": 10,
    "SEND_WINDOW_PER_CLIENT": timedelta(hours=1),
    "PHONE_REGION": None,  # region for phone numbers typed without +country code, e.g. "US"; None: require +
}


class AppSettings:
    """``app_settings.SITE_URL`` etc.: the project's value, or the default."""

    def _user(self) -> dict[str, Any]:
        value = getattr(settings, "DEFERRED_CONFIRMATION", {})
        return value if isinstance(value, dict) else {}

    def __getattr__(self, name: str) -> Any:
        if name not in DEFAULTS:
            raise AttributeError(name)
        return self._user().get(name, DEFAULTS[name])

    @property
    def CHANNELS(self) -> dict[str, dict[str, Any]]:
        """Each configured channel with the built-in defaults and its queue filled in."""
        configured = self._user().get("CHANNELS", DEFAULTS["CHANNELS"])
        channels = {}
        for name, conf in (configured if isinstance(configured, dict) else {}).items():
            if not isinstance(conf, dict):
                continue  # reported by the system check
            merged = {"QUEUE": f"confirmation.{name}", **CHANNEL_BASE}
            merged.update(CHANNEL_DEFAULTS.get(name, {}))
            merged.update(conf or {})
            channels[name] = merged
        return channels

    def channel(self, name: str) -> dict[str, Any]:
        try:
            return self.CHANNELS[name]
        except KeyError:
            raise KeyError(f"Unknown confirmation channel {name!r}; configured: {sorted(self.CHANNELS)}") from None

    @property
    def from_email(self) -> str:
        return self.FROM_EMAIL or settings.DEFAULT_FROM_EMAIL

    def queues(self) -> list[str]:
        """Every queue this app's tasks are sent to (a worker without -Q should consume them all)."""
        names = [conf["QUEUE"] for conf in self.CHANNELS.values()]
        names += [self.APPLY_QUEUE, self.MAINTENANCE_QUEUE]
        return list(dict.fromkeys(names))


app_settings = AppSettings()
