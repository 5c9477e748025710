"""System check of DEFERRED_CONFIRMATION: names every bad key, unknown channel and unimportable backend,
and never crashes on a value of the wrong type."""

from __future__ import annotations

import warnings
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.core.checks import Warning as CheckWarning

from deferred_confirmation.pipeline.conf import CHANNEL_DEFAULTS, CHANNEL_KEYS, DEFAULTS
from deferred_confirmation.pipeline.paths import current_path, import_path

E = "confirmation.E{:03d}"


def _error(msg: str, n: int, hint: str | None = None) -> Error:
    return Error(msg, hint=hint, obj="DEFERRED_CONFIRMATION", id=E.format(n))


def _import(path: object) -> tuple[object | None, str | None]:
    """(object, None) or (None, why not)."""
    if not isinstance(path, str) or not path:
        return None, "it is not a dotted path"
    try:
        with warnings.catch_warnings():  # an old-layout path: confirmation.W003 says so
            warnings.simplefilter("ignore", DeprecationWarning)
            return import_path(path), None
    except (ImportError, ValueError, TypeError, AttributeError) as exc:
        return None, str(exc)


def _positive_int(value: object, allow_none: bool = False) -> bool:
    if value is None:
        return allow_none
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _duration(value: object, allow_none: bool = False, positive: bool = False) -> bool:
    if value is None:
        return allow_none
    return isinstance(value, timedelta) and (value > timedelta(0) if positive else value >= timedelta(0))


def _name(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


@register(Tags.compatibility)
def check_settings(app_configs=None, **kwargs) -> list[Error]:
    raw = getattr(settings, "DEFERRED_CONFIRMATION", {})
    if not isinstance(raw, dict):
        return [_error("DEFERRED_CONFIRMATION must be a dict.", 1)]
    value = {key: raw.get(key, default) for key, default in DEFAULTS.items()}
    errors = [_error(f"Unknown key {key!r}.", 2, f"Known keys: {', '.join(sorted(DEFAULTS))}.")
              for key in raw if key not in DEFAULTS]
    channels = value["CHANNELS"]
    if not isinstance(channels, dict) or not channels:
        return [*errors, _error("CHANNELS must be a non-empty dict of channel name -> options.", 3)]
    for name, conf in channels.items():
        errors += _check_channel(name, conf)
    for key in ("RETENTION", "REDRIVE_AFTER", "RETRY_BACKOFF_MAX", "FAILED_ATTEMPTS_WINDOW", "SEND_LEASE"):
        if not isinstance(value[key], timedelta):
            errors.append(_error(f"{key} must be a datetime.timedelta.", 4))
        elif value[key] < timedelta(0):
            errors.append(_error(f"{key} must not be negative.", 4))
    if _duration(value["REDRIVE_AFTER"]) and _duration(value["RETRY_BACKOFF_MAX"]) and (
            value["REDRIVE_AFTER"] <= value["RETRY_BACKOFF_MAX"]):
        errors.append(_error("REDRIVE_AFTER must be longer than RETRY_BACKOFF_MAX, or redrive would replace "
                             "the secret of a delivery that is only waiting for its next retry.", 9))
    if not isinstance(value["DEFAULT_CHANNELS"], list | tuple):
        errors.append(_error("DEFAULT_CHANNELS must be a list of channel names.", 5))
    else:
        errors += _check_names("DEFAULT_CHANNELS", value["DEFAULT_CHANNELS"], channels)
    if not isinstance(value["ROUTES"], dict):
        errors.append(_error("ROUTES must be a dict of form path or model label -> channel names.", 6))
    else:
        for target, route in value["ROUTES"].items():
            errors += _check_route(target, route, channels)
    errors += _check_site_url(value["SITE_URL"], channels)
    errors += _check_celery_app(value["CELERY_APP"])
    for key in ("BATCH_SIZE", "STATUS_REFRESH_SECONDS", "FAILED_ATTEMPTS_LIMIT", "MAX_REDRIVES"):
        if not _positive_int(value[key]):
            errors.append(_error(f"{key} must be a positive integer.", 7))
    for key in ("APPLY_QUEUE", "MAINTENANCE_QUEUE"):
        if not _name(value[key]):
            errors.append(_error(f"{key} must be a queue name.", 40))
    if value["FROM_EMAIL"] is not None and not _name(value["FROM_EMAIL"]):
        errors.append(_error("FROM_EMAIL must be an address or None.", 41))
    if value["THROTTLE_CACHE"] not in getattr(settings, "CACHES", {"default": {}}):
        errors.append(_error(f"THROTTLE_CACHE {value['THROTTLE_CACHE']!r} is not in settings.CACHES.", 42))
    proxies = value["TRUSTED_PROXY_COUNT"]
    if not (isinstance(proxies, int) and not isinstance(proxies, bool) and proxies >= 0):
        errors.append(_error("TRUSTED_PROXY_COUNT must be the number of proxies in front of the site (0 or more).",
                             44))
    if value["TRUSTED_CLIENT_IP_HEADER"] is not None and not _name(value["TRUSTED_CLIENT_IP_HEADER"]):
        errors.append(_error("TRUSTED_CLIENT_IP_HEADER must be a header name like 'X-Real-IP', or None.", 45))
    if not _positive_int(value["SEND_LIMIT_PER_CLIENT"], allow_none=True):
        errors.append(_error("SEND_LIMIT_PER_CLIENT must be a positive integer or None.", 46))
    if not _duration(value["SEND_WINDOW_PER_CLIENT"], positive=True):
        errors.append(_error("SEND_WINDOW_PER_CLIENT must be a positive datetime.timedelta.", 47))
    region = value["PHONE_REGION"]
    if region is not None and not (isinstance(region, str) and len(region) == 2 and region.isascii()
                                   and region.isalpha()):
        errors.append(_error("PHONE_REGION must be a two-letter region code like 'US', or None.", 43))
    return errors


def _check_channel(name: str, conf: object) -> list[Error]:
    where = f"CHANNELS[{name!r}]"
    if not isinstance(conf, dict):
        return [_error(f"{where} must be a dict.", 10)]
    errors = [_error(f"{where} has unknown key {key!r}.", 11, f"Known: {', '.join(sorted(CHANNEL_KEYS))}.")
              for key in conf if key not in CHANNEL_KEYS]
    backend = conf.get("BACKEND") or CHANNEL_DEFAULTS.get(name, {}).get("BACKEND")
    if not backend:
        errors.append(_error(f"{where} is not a built-in channel and has no BACKEND.", 12,
                             f"Built-in channels: {', '.join(CHANNEL_DEFAULTS)}."))
    else:
        found, why = _import(backend)
        if why:
            errors.append(_error(f"{where} BACKEND {backend!r} cannot be imported: {why}", 13,
                                 "Is the channel's extra installed (pip install deferred-confirmation[sms])?"))
        elif hasattr(found, "check_options") and isinstance(conf.get("OPTIONS", {}), dict):
            # The backend's own OPTIONS (credentials, code length, payout backend...), checked at start-up
            # rather than discovered by the first send.
            errors += [_error(f"{where} OPTIONS: {problem}", 25) for problem in found.check_options(
                conf.get("OPTIONS", {}))]
    if "EXPIRES" in conf and not _duration(conf["EXPIRES"], positive=True):
        errors.append(_error(f"{where} EXPIRES must be a positive datetime.timedelta.", 14))
    if not _positive_int(conf.get("MAX_ATTEMPTS"), allow_none=True):
        errors.append(_error(f"{where} MAX_ATTEMPTS must be a positive integer or None.", 15))
    if "OPTIONS" in conf and not isinstance(conf["OPTIONS"], dict):
        errors.append(_error(f"{where} OPTIONS must be a dict.", 16))
    if "QUEUE" in conf and not _name(conf["QUEUE"]):
        errors.append(_error(f"{where} QUEUE must be a queue name.", 17))
    if conf.get("RATE_LIMIT") is not None and not _rate(conf["RATE_LIMIT"]):
        errors.append(_error(f"{where} RATE_LIMIT {conf['RATE_LIMIT']!r} is not a Celery rate like '10/m'.", 18))
    if not _positive_int(conf.get("SEND_LIMIT"), allow_none=True):
        errors.append(_error(f"{where} SEND_LIMIT must be a positive integer or None.", 19))
    for key in ("SEND_WINDOW", "RESEND_COOLDOWN"):
        if key in conf and not _duration(conf[key], allow_none=True):
            errors.append(_error(f"{where} {key} must be a datetime.timedelta or None.", 22))
    return errors


def _rate(value: object) -> bool:
    from celery.utils.time import rate

    if isinstance(value, int | float) and not isinstance(value, bool):
        return value >= 0
    if not isinstance(value, str) or "/" not in value:
        return False
    try:
        rate(value)
    except (ValueError, KeyError, TypeError):
        return False
    return value.split("/", 1)[1] in ("s", "m", "h")


def _check_route(target: str, route: object, channels: dict) -> list[Error]:
    where = f"ROUTES[{target!r}]"
    if isinstance(route, dict):
        errors = [_error(f"{where} has unknown key {key!r}; use 'channels' and 'policy'.", 23)
                  for key in route if key not in ("channels", "policy")]
        if route.get("policy", "any") not in ("any", "all"):
            errors.append(_error(f"{where} policy must be 'any' or 'all'.", 24))
        return errors + _check_names(where, route.get("channels"), channels)
    return _check_names(where, [route] if isinstance(route, str) else route, channels)


def _check_celery_app(path: object) -> list[Error]:
    from celery import Celery

    app, why = _import(path)
    if why:
        return [_error(f"CELERY_APP {path!r} cannot be imported: {why}", 8)]
    if not isinstance(app, Celery):
        return [_error(f"CELERY_APP {path!r} is not a Celery app.", 8, 'e.g. "proj.celery.app"')]
    return []


def _check_names(where: str, names: object, channels: dict) -> list[Error]:
    if not isinstance(names, list | tuple) or not names:
        return [_error(f"{where} must be a non-empty list of channel names.", 20)]
    return [_error(f"{where} names unknown channel {n!r}.", 21, f"Configured: {', '.join(sorted(channels))}.")
            for n in names if not isinstance(n, str) or n not in channels]


def _check_site_url(site_url: object, channels: dict) -> list[Error]:
    if site_url is None:
        # Every channel's message carries a URL: the link itself, or the page where a code is typed in.
        return [_error("SITE_URL is not set; the URLs in messages are built from it, never from a request.",
                       30, 'Set DEFERRED_CONFIRMATION["SITE_URL"] = "https://your.site".')]
    parts = urlsplit(site_url) if isinstance(site_url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        return [_error(f"SITE_URL {site_url!r} must be an absolute http(s) URL.", 31)]
    return []


@register(Tags.compatibility)
def check_sqlite_transaction_mode(app_configs=None, **kwargs) -> list[CheckWarning]:
    """SQLite in its default transaction mode refuses (instead of waiting for) a second simultaneous writer."""
    warnings = []
    for alias, conf in settings.DATABASES.items():
        if conf.get("ENGINE", "").endswith("sqlite3") and (conf.get("OPTIONS") or {}).get(
                "transaction_mode") != "IMMEDIATE":
            warnings.append(CheckWarning(
                f"DATABASES[{alias!r}] is SQLite without transaction_mode IMMEDIATE: a web process and a worker "
                "writing at the same moment get 'database is locked' instead of waiting.",
                hint='Set "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20} (Django 5.1+).',
                obj="DATABASES", id="confirmation.W001"))
    return warnings


@register(Tags.caches)
def check_throttle_cache(app_configs=None, **kwargs) -> list[CheckWarning]:
    """The failure throttle needs counters every web process shares, incremented atomically.

    A warning, not an error, even for DummyCache (which turns the throttle off): development and test settings
    often use a per-process or dummy default cache, and must still run."""
    from django.core.cache.backends.db import DatabaseCache
    from django.core.cache.backends.dummy import DummyCache
    from django.core.cache.backends.filebased import FileBasedCache
    from django.core.cache.backends.locmem import LocMemCache

    raw = getattr(settings, "DEFERRED_CONFIRMATION", {})
    alias = raw.get("THROTTLE_CACHE", DEFAULTS["THROTTLE_CACHE"]) if isinstance(raw, dict) else None
    conf = getattr(settings, "CACHES", {}).get(alias) if isinstance(alias, str) else None
    backend, why = _import(conf.get("BACKEND") if isinstance(conf, dict) else None)
    if why or not isinstance(backend, type):
        return []  # an unknown alias is confirmation.E042; a bad BACKEND, Django's own check
    if issubclass(backend, DummyCache):
        problem = "stores nothing: failed confirmation attempts are never counted, the throttle is off"
    elif issubclass(backend, LocMemCache):
        problem = ("lives in each process: every web process counts failed attempts on its own, so a client "
                   "gets FAILED_ATTEMPTS_LIMIT attempts per process, and a restart forgets them")
    elif issubclass(backend, DatabaseCache | FileBasedCache):
        problem = "increments by reading, then writing: parallel failed attempts can be lost from the count"
    else:
        return []
    return [CheckWarning(
        f"THROTTLE_CACHE {alias!r} ({backend.__name__}) {problem}.",
        hint="Point THROTTLE_CACHE at a cache every web process shares, with atomic increments: Redis "
             "(django.core.cache.backends.redis.RedisCache) or Memcached.",
        obj="DEFERRED_CONFIRMATION", id="confirmation.W002")]


@register(Tags.compatibility)
def check_legacy_paths(app_configs=None, **kwargs) -> list[CheckWarning]:
    """Backends and the Celery app named by the old top-level package names still load, with this warning."""
    raw = getattr(settings, "DEFERRED_CONFIRMATION", {})
    if not isinstance(raw, dict):
        return []
    named = {"CELERY_APP": raw.get("CELERY_APP")}
    channels = raw.get("CHANNELS")
    for name, conf in (channels.items() if isinstance(channels, dict) else ()):
        if isinstance(conf, dict):
            named[f"CHANNELS[{name!r}] BACKEND"] = conf.get("BACKEND")
            options = conf.get("OPTIONS")
            if isinstance(options, dict):
                named[f"CHANNELS[{name!r}] OPTIONS PAYOUT_BACKEND"] = options.get("PAYOUT_BACKEND")
    return [CheckWarning(f"{where} {path!r} names the library's old top-level package.",
                         hint=f"Use {current_path(path)!r}: the library installs under deferred_confirmation.",
                         obj="DEFERRED_CONFIRMATION", id="confirmation.W003")
            for where, path in named.items() if isinstance(path, str) and current_path(path) != path]


@register(Tags.compatibility)
def check_channel_option_warnings(app_configs=None, **kwargs) -> list[CheckWarning]:
    """OPTIONS that still work but are deprecated, as each channel backend's ``warn_options`` says (the email
    channel's EMAIL_BACKEND on Django 6.1 without MAILERS); ones that cannot work are errors (E025)."""
    raw = getattr(settings, "DEFERRED_CONFIRMATION", {})
    channels = raw.get("CHANNELS", DEFAULTS["CHANNELS"]) if isinstance(raw, dict) else None
    found = []
    for name, conf in (channels.items() if isinstance(channels, dict) else ()):
        options = conf.get("OPTIONS", {}) if isinstance(conf, dict) else None
        backend, why = _import(conf.get("BACKEND") or CHANNEL_DEFAULTS.get(name, {}).get("BACKEND")
                               if isinstance(conf, dict) else None)
        if isinstance(options, dict) and not why and hasattr(backend, "warn_options"):
            found += [CheckWarning(f"CHANNELS[{name!r}] OPTIONS: {problem}", obj="DEFERRED_CONFIRMATION",
                                   id="confirmation.W004") for problem in backend.warn_options(options)]
    return found
