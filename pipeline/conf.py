"""The app's settings: each declared once (:data:`SETTINGS`, :data:`CHANNEL_SETTINGS`), read through one
object with defaults (:data:`app_settings`).

Every key of ``settings.DEFERRED_CONFIRMATION`` is optional.  Values are read on each access (so
``override_settings`` in tests works) and validated by the system check in
``deferred_confirmation.django_integration.checks``, which runs each declaration's validator.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings

from deferred_confirmation.django_integration import check_ids as ids
from deferred_confirmation.django_integration.check_ids import Check
from deferred_confirmation.pipeline import setting_validators as v
from deferred_confirmation.pipeline.setting_validators import Validator

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


@dataclass(frozen=True)
class Setting:
    """One key of DEFERRED_CONFIRMATION (or of one channel's options): its default, the validator the system
    check runs on it, the check id a wrong value is reported as, what it is for, and what kind of value it takes.
    """

    name: str
    default: Any
    validator: Validator
    check: Check
    doc: str
    kind: str


CHANNEL_SETTINGS: tuple[Setting, ...] = (
    Setting("BACKEND", None, v.backend(CHANNEL_DEFAULTS), ids.BACKEND_NOT_IMPORTABLE,
            "Dotted path of the channel class; a built-in channel's is filled in.", "dotted path"),
    Setting("QUEUE", None, v.name("a queue name"), ids.BAD_CHANNEL_QUEUE,
            "Celery queue of the channel's send tasks; None: confirmation.<channel name>.", "str"),
    Setting("EXPIRES", timedelta(days=3), v.duration(positive=True), ids.BAD_EXPIRES,
            "How long a secret sent over this channel stays valid.", "timedelta"),
    Setting("MAX_ATTEMPTS", None, v.positive_int(allow_none=True), ids.BAD_MAX_ATTEMPTS,
            "Wrong secrets before the action is locked (None: unlimited; links are unguessable).", "int | None"),
    Setting("RATE_LIMIT", None, v.celery_rate, ids.BAD_RATE_LIMIT,
            "Celery rate limit of the send task on a worker consuming this channel's queue, e.g. '10/m'.",
            "str | None"),
    Setting("SEND_LIMIT", None, v.positive_int(allow_none=True), ids.BAD_SEND_LIMIT,
            "Secrets sent to one recipient per SEND_WINDOW at the request of one requester (the signed-in user, "
            "else the client address); all requesters together get three times as many (None: unlimited).",
            "int | None"),
    Setting("SEND_WINDOW", timedelta(minutes=10), v.duration(allow_none=True), ids.BAD_CHANNEL_DURATION,
            "The window SEND_LIMIT counts in.", "timedelta"),
    Setting("RESEND_COOLDOWN", timedelta(seconds=60), v.duration(allow_none=True), ids.BAD_CHANNEL_DURATION,
            "Least time between two secrets to one recipient at the request of one requester (resends only).",
            "timedelta"),
    Setting("OPTIONS", {}, v.instance_of(dict, "a dict"), ids.OPTIONS_NOT_A_DICT,
            "The backend's own options (credentials, sender, code length...).", "dict"),
)
"""Every key of one channel's options, with the default of a channel that is not built in."""

_REDRIVE_WHY = "redrive would replace the secret of a delivery that is only waiting for its next retry."

SETTINGS: tuple[Setting, ...] = (
    Setting("CHANNELS", {"email": {}}, v.channels, ids.NO_CHANNELS,
            "Channel name -> options (CHANNEL_SETTINGS); only email is on by default.", "dict"),
    Setting("ROUTES", {}, v.routes, ids.BAD_ROUTES,
            '"app.forms.FormClass" or "app_label.model" -> channel names, or {"channels": [...], "policy": "all"}.',
            "dict"),
    Setting("DEFAULT_CHANNELS", ["email"], v.default_channels, ids.BAD_DEFAULT_CHANNELS,
            "Channels of a form that names none and has no route.", "list[str]"),
    Setting("RETENTION", timedelta(days=30), v.duration(), ids.BAD_DURATION,
            "Terminal actions (and their recipients) are purged after this.", "timedelta"),
    Setting("SITE_URL", None, v.site_url, ids.SITE_URL_INVALID,
            'Base of links in messages, e.g. "https://example.com"; never taken from a request.', "str"),
    Setting("REDRIVE_AFTER", timedelta(minutes=10),
            v.all_of(v.duration(), v.longer_than("RETRY_BACKOFF_MAX", ids.REDRIVE_WITHIN_BACKOFF, _REDRIVE_WHY)),
            ids.BAD_DURATION, "An action stuck in pending/confirmed this long is re-enqueued.", "timedelta"),
    Setting("BATCH_SIZE", 500, v.positive_int(), ids.NOT_A_POSITIVE_INT,
            "Rows per transaction in expire, purge and redrive.", "int"),
    Setting("RETRY_BACKOFF_MAX", timedelta(minutes=5), v.duration(), ids.BAD_DURATION,
            "Cap of the exponential backoff (2 s, 4 s, 8 s ..., full jitter) between retries of a transient "
            "channel error.", "timedelta"),
    Setting("SEND_LEASE", timedelta(minutes=5), v.duration(), ids.BAD_DURATION,
            "How long one send task holds a delivery: longer than any provider call, shorter than the broker's "
            "redelivery of a dead worker's task (Redis visibility timeout, 1 hour by default).", "timedelta"),
    Setting("CELERY_APP", "deferred_confirmation.workers.app", v.celery_app, ids.BAD_CELERY_APP,
            "Dotted path of the Celery app that publishes the tasks; set your project's own app here if you "
            "have one.", "dotted path"),
    Setting("APPLY_QUEUE", "confirmation.apply", v.name("a queue name"), ids.BAD_QUEUE,
            "Celery queue of the apply task.", "str"),
    Setting("MAINTENANCE_QUEUE", "confirmation.maintenance", v.name("a queue name"), ids.BAD_QUEUE,
            "Celery queue of expire, purge and redrive.", "str"),
    Setting("FROM_EMAIL", None, v.name("an address", allow_none=True), ids.BAD_FROM_EMAIL,
            "Sender of confirmation mails; None: settings.DEFAULT_FROM_EMAIL.", "str | None"),
    Setting("STATUS_REFRESH_SECONDS", 2, v.positive_int(), ids.NOT_A_POSITIVE_INT,
            "How often the status page reloads itself while the change is in flight.", "int"),
    Setting("FAILED_ATTEMPTS_LIMIT", 20, v.positive_int(), ids.NOT_A_POSITIVE_INT,
            "Failed confirmation attempts (wrong code, unknown link, wrong amounts) allowed per client and per "
            "user, across all actions, in FAILED_ATTEMPTS_WINDOW; past it every code, amounts or wrong link gets 429 "
            "(a right link never does: it cannot be guessed).", "int"),
    Setting("FAILED_ATTEMPTS_WINDOW", timedelta(minutes=15), v.duration(), ids.BAD_DURATION,
            "The window FAILED_ATTEMPTS_LIMIT counts in.", "timedelta"),
    Setting("THROTTLE_CACHE", "default", v.cache_alias, ids.UNKNOWN_THROTTLE_CACHE,
            "Django cache alias holding the failure counters (shared by all web processes).", "str"),
    # Which address is the client's (throttles, per-client send limits), as allauth decides it.
    Setting("TRUSTED_PROXY_COUNT", 0, v.count, ids.BAD_PROXY_COUNT,
            "With N trusted proxies in front of the site, the client is the Nth address from the right of "
            "X-Forwarded-For; 0: REMOTE_ADDR.  IPv6 clients count per /64.", "int"),
    Setting("TRUSTED_CLIENT_IP_HEADER", None, v.name("a header name like 'X-Real-IP',", allow_none=True),
            ids.BAD_CLIENT_IP_HEADER,
            "A header your proxy sets and clients cannot (e.g. \"X-Real-IP\") holding the client's address; "
            "None: use TRUSTED_PROXY_COUNT.", "str | None"),
    Setting("MAX_REDRIVES", 3, v.positive_int(), ids.NOT_A_POSITIVE_INT,
            "Times the outbox sweep (redrive) re-queues one action before it ends failed.", "int"),
    Setting("SEND_LIMIT_PER_CLIENT", 10, v.positive_int(allow_none=True), ids.BAD_SEND_LIMIT_PER_CLIENT,
            "Secrets one client (address) or one signed-in user may have sent, across all recipients, per "
            "SEND_WINDOW_PER_CLIENT, counted at save() and resend: SMS pumping and mail bombing.  None: "
            "unlimited.", "int | None"),
    Setting("SEND_WINDOW_PER_CLIENT", timedelta(hours=1), v.duration(positive=True), ids.BAD_SEND_WINDOW_PER_CLIENT,
            "The window SEND_LIMIT_PER_CLIENT counts in.", "timedelta"),
    Setting("PHONE_REGION", None, v.region_code, ids.BAD_PHONE_REGION,
            'Region for phone numbers typed without +country code, e.g. "US"; None: require +.', "str | None"),
)
"""Every key of DEFERRED_CONFIRMATION, declared once: the defaults, the system check and the docs read this."""

DEFAULTS: dict[str, Any] = {setting.name: setting.default for setting in SETTINGS}
# Defaults of every channel, built-in or not; BACKEND comes from CHANNEL_DEFAULTS, QUEUE from the channel's name.
CHANNEL_BASE: dict[str, Any] = {s.name: s.default for s in CHANNEL_SETTINGS if s.name not in ("BACKEND", "QUEUE")}
CHANNEL_KEYS = {setting.name for setting in CHANNEL_SETTINGS}


def channel_values(name: str, conf: dict[str, Any]) -> dict[str, Any]:
    """One channel's options as the project wrote them, with its queue and the (built-in) defaults filled in."""
    merged = {"QUEUE": f"confirmation.{name}", **CHANNEL_BASE}
    merged.update(CHANNEL_DEFAULTS.get(name, {}))
    merged.update(conf or {})
    return merged


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
            channels[name] = channel_values(name, conf)
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
