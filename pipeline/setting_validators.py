"""Validators of the values in ``settings.DEFERRED_CONFIRMATION``, named by the declarations in
:mod:`deferred_confirmation.pipeline.conf`.

A validator takes the value and a :class:`Field` (where the value stands, what stands beside it, the check id a
wrong value is reported under) and returns :class:`Problem` objects; it never raises, whatever the type of the
value.  The system check in ``deferred_confirmation.django_integration.checks`` turns problems into Django check
messages, so nothing here imports ``django.core.checks``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from deferred_confirmation.django_integration import check_ids as ids
from deferred_confirmation.django_integration.check_ids import Check
from deferred_confirmation.pipeline.paths import import_path


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a setting: a check id of :mod:`check_ids`, a message naming the setting, a hint."""

    check_id: str
    message: str
    hint: str | None = None


@dataclass(frozen=True)
class Field:
    """Where a value stands: ``label`` names it in messages (``"RETENTION"``, ``"CHANNELS['sms'] EXPIRES"``),
    ``check`` is what a wrong value is reported as, ``values`` everything beside it with defaults filled in (the
    top-level settings, or the channel's options) and ``channel`` the channel's name, if any."""

    label: str
    check: Check
    values: Mapping[str, Any]
    channel: str | None = None

    def problem(self, message: str, hint: str | None = None, check: Check | None = None) -> Problem:
        return Problem((check or self.check).id, f"{self.label} {message}", hint)

    @property
    def channel_label(self) -> str:
        return f"CHANNELS[{self.channel!r}]"


Validator = Callable[[Any, Field], list[Problem]]


def import_object(path: object) -> tuple[object | None, str | None]:
    """(object, None) or (None, why not); a path of the old layout imports without its warning (W003 says so)."""
    if not isinstance(path, str) or not path:
        return None, "it is not a dotted path"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return import_path(path), None
    except (ImportError, ValueError, TypeError, AttributeError) as exc:
        return None, str(exc)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_name(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def positive_int(*, allow_none: bool = False) -> Validator:
    what = "a positive integer or None" if allow_none else "a positive integer"

    def validate(value: Any, field: Field) -> list[Problem]:
        if (value is None and allow_none) or (_is_int(value) and value > 0):
            return []
        return [field.problem(f"must be {what}.")]
    return validate


def count(value: Any, field: Field) -> list[Problem]:
    """A whole number, 0 or more."""
    return [] if _is_int(value) and value >= 0 else [field.problem("must be a whole number, 0 or more.")]


def duration(*, positive: bool = False, allow_none: bool = False) -> Validator:
    what = ("a positive datetime.timedelta" if positive else "a datetime.timedelta") + (" or None" if allow_none
                                                                                        else "")

    def validate(value: Any, field: Field) -> list[Problem]:
        if value is None and allow_none:
            return []
        if not isinstance(value, timedelta):
            return [field.problem(f"must be {what}.")]
        if positive and value <= timedelta(0):
            return [field.problem(f"must be {what}.")]
        return [field.problem("must not be negative.")] if value < timedelta(0) else []
    return validate


def longer_than(other: str, check: Check, why: str) -> Validator:
    """Longer than the setting ``other`` (when both are durations)."""

    def validate(value: Any, field: Field) -> list[Problem]:
        limit = field.values.get(other)
        if isinstance(value, timedelta) and isinstance(limit, timedelta) and value <= limit:
            return [field.problem(f"must be longer than {other}, or {why}", check=check)]
        return []
    return validate


def name(what: str, *, allow_none: bool = False) -> Validator:
    """A non-blank string (a queue name, an address, a header name)."""

    def validate(value: Any, field: Field) -> list[Problem]:
        if (value is None and allow_none) or _is_name(value):
            return []
        return [field.problem(f"must be {what}{' or None' if allow_none else ''}.")]
    return validate


def all_of(*validators: Validator) -> Validator:
    """Each validator in turn, stopping at the first that finds a problem."""

    def validate(value: Any, field: Field) -> list[Problem]:
        for validator in validators:
            if found := validator(value, field):
                return found
        return []
    return validate


def instance_of(kind: type, what: str) -> Validator:
    def validate(value: Any, field: Field) -> list[Problem]:
        return [] if isinstance(value, kind) else [field.problem(f"must be {what}.")]
    return validate


def channels(value: Any, field: Field) -> list[Problem]:
    """CHANNELS itself; each channel's options are validated by the channel settings."""
    if isinstance(value, dict) and value:
        return []
    return [field.problem("must be a non-empty dict of channel name -> options.")]


def _channel_names(label: str, names: object, configured: object) -> list[Problem]:
    configured = configured if isinstance(configured, dict) else {}
    if not isinstance(names, list | tuple) or not names:
        return [Problem(ids.NO_CHANNEL_NAMES.id, f"{label} must be a non-empty list of channel names.")]
    return [Problem(ids.UNKNOWN_CHANNEL_NAME.id, f"{label} names unknown channel {n!r}.",
                    f"Configured: {', '.join(sorted(configured))}.")
            for n in names if not isinstance(n, str) or n not in configured]


def default_channels(value: Any, field: Field) -> list[Problem]:
    if not isinstance(value, list | tuple):
        return [field.problem("must be a list of channel names.")]
    return _channel_names(field.label, value, field.values.get("CHANNELS"))


def routes(value: Any, field: Field) -> list[Problem]:
    if not isinstance(value, dict):
        return [field.problem("must be a dict of form path or model label -> channel names.")]
    found = []
    for target, route in value.items():
        label = f"{field.label}[{target!r}]"
        if isinstance(route, dict):
            found += [Problem(ids.UNKNOWN_ROUTE_KEY.id, f"{label} has unknown key {key!r}; use 'channels' and "
                                                        "'policy'.")
                      for key in route if key not in ("channels", "policy")]
            if route.get("policy", "any") not in ("any", "all"):
                found.append(Problem(ids.BAD_ROUTE_POLICY.id, f"{label} policy must be 'any' or 'all'."))
            found += _channel_names(label, route.get("channels"), field.values.get("CHANNELS"))
        else:
            found += _channel_names(label, [route] if isinstance(route, str) else route, field.values.get("CHANNELS"))
    return found


def site_url(value: Any, field: Field) -> list[Problem]:
    if value is None:
        # Every channel's message carries a URL: the link itself, or the page where a code is typed in.
        return [field.problem("is not set; the URLs in messages are built from it, never from a request.",
                              'Set DEFERRED_CONFIRMATION["SITE_URL"] = "https://your.site".', ids.SITE_URL_MISSING)]
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        return [field.problem(f"{value!r} must be an absolute http(s) URL.")]
    return []


def celery_app(value: Any, field: Field) -> list[Problem]:
    from celery import Celery

    app, why = import_object(value)
    if why:
        return [field.problem(f"{value!r} cannot be imported: {why}")]
    if not isinstance(app, Celery):
        return [field.problem(f"{value!r} is not a Celery app.", 'e.g. "proj.celery.app"')]
    return []


def cache_alias(value: Any, field: Field) -> list[Problem]:
    from django.conf import settings

    caches = getattr(settings, "CACHES", {"default": {}})
    if isinstance(value, str) and value in caches:
        return []
    return [field.problem(f"{value!r} is not in settings.CACHES.")]


def region_code(value: Any, field: Field) -> list[Problem]:
    if value is None or (isinstance(value, str) and len(value) == 2 and value.isascii() and value.isalpha()):
        return []
    return [field.problem("must be a two-letter region code like 'US', or None.")]


def backend(builtins: Mapping[str, Mapping[str, Any]]) -> Validator:
    """A channel's BACKEND (or the built-in channel's), importable, and content with the channel's OPTIONS."""

    def validate(value: Any, field: Field) -> list[Problem]:
        path = value or builtins.get(field.channel or "", {}).get("BACKEND")
        if not path:
            return [field.problem(f"is missing: {field.channel!r} is not a built-in channel.",
                                  f"Built-in channels: {', '.join(builtins)}.", ids.CHANNEL_WITHOUT_BACKEND)]
        found, why = import_object(path)
        if why:
            return [field.problem(f"{path!r} cannot be imported: {why}",
                                  "Is the channel's extra installed (pip install deferred-confirmation[sms])?")]
        options = field.values.get("OPTIONS", {})
        from deferred_confirmation.pipeline.channels.base import BaseChannel  # here: channels import the settings

        if isinstance(found, type) and issubclass(found, BaseChannel) and isinstance(options, dict):
            # The backend's own OPTIONS (credentials, code length, payout backend...), checked at start-up
            # rather than discovered by the first send.
            return [Problem(ids.BAD_BACKEND_OPTIONS.id, f"{field.channel_label} OPTIONS: {problem}")
                    for problem in found.check_options(options)]
        return []
    return validate


def celery_rate(value: Any, field: Field) -> list[Problem]:
    """None, a number of tasks per second, or a Celery rate string like ``"10/m"``."""
    from celery.utils.time import rate

    if value is None or (isinstance(value, int | float) and not isinstance(value, bool) and value >= 0):
        return []
    ok = isinstance(value, str) and "/" in value and value.split("/", 1)[1] in ("s", "m", "h")
    if ok:
        try:
            rate(value)
        except (ValueError, KeyError, TypeError):
            ok = False
    return [] if ok else [field.problem(f"{value!r} is not a Celery rate like '10/m'.")]
