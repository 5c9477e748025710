"""System check of DEFERRED_CONFIRMATION: names every bad key, unknown channel and unimportable backend."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, register
from django.utils.module_loading import import_string

from pipeline.conf import CHANNEL_DEFAULTS, CHANNEL_KEYS, DEFAULTS, app_settings


def _error(msg: str, n: int, hint: str | None = None) -> Error:
    return Error(msg, hint=hint, obj="DEFERRED_CONFIRMATION", id=f"confirmation.E{n:03d}")


@register(Tags.compatibility)
def check_settings(app_configs=None, **kwargs) -> list[Error]:
    raw = getattr(settings, "DEFERRED_CONFIRMATION", {})
    if not isinstance(raw, dict):
        return [_error("DEFERRED_CONFIRMATION must be a dict.", 1)]
    errors = [_error(f"Unknown key {key!r}.", 2, f"Known keys: {', '.join(sorted(DEFAULTS))}.")
              for key in raw if key not in DEFAULTS]
    channels = raw.get("CHANNELS", DEFAULTS["CHANNELS"])
    if not isinstance(channels, dict) or not channels:
        return [*errors, _error("CHANNELS must be a non-empty dict of channel name -> options.", 3)]
    for name, conf in channels.items():
        errors += _check_channel(name, conf)
    for key in ("RETENTION", "REDRIVE_AFTER", "RETRY_BACKOFF_MAX"):
        value = raw.get(key, DEFAULTS[key])
        if not isinstance(value, timedelta):
            errors.append(_error(f"{key} must be a datetime.timedelta.", 4))
        elif value < timedelta(0):
            errors.append(_error(f"{key} must not be negative.", 4))
    default_channels = raw.get("DEFAULT_CHANNELS", DEFAULTS["DEFAULT_CHANNELS"])
    if not isinstance(default_channels, list | tuple):
        errors.append(_error("DEFAULT_CHANNELS must be a list of channel names.", 5))
    else:
        errors += _check_names("DEFAULT_CHANNELS", default_channels, channels)
    routes = raw.get("ROUTES", {})
    if not isinstance(routes, dict):
        errors.append(_error("ROUTES must be a dict of form path or model label -> channel names.", 6))
    else:
        for target, names in routes.items():
            errors += _check_names(f"ROUTES[{target!r}]", [names] if isinstance(names, str) else names, channels)
    errors += _check_site_url(raw.get("SITE_URL"), channels)
    errors += _check_celery_app(raw.get("CELERY_APP", DEFAULTS["CELERY_APP"]))
    batch = raw.get("BATCH_SIZE", DEFAULTS["BATCH_SIZE"])
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        errors.append(_error("BATCH_SIZE must be a positive integer.", 7))
    return errors


def _check_channel(name: str, conf: object) -> list[Error]:
    if not isinstance(conf, dict):
        return [_error(f"CHANNELS[{name!r}] must be a dict.", 10)]
    errors = [_error(f"CHANNELS[{name!r}] has unknown key {key!r}.", 11, f"Known: {', '.join(sorted(CHANNEL_KEYS))}.")
              for key in conf if key not in CHANNEL_KEYS]
    backend = conf.get("BACKEND") or CHANNEL_DEFAULTS.get(name, {}).get("BACKEND")
    if not backend:
        errors.append(_error(f"CHANNELS[{name!r}] is not a built-in channel and has no BACKEND.", 12,
                             f"Built-in channels: {', '.join(CHANNEL_DEFAULTS)}."))
    else:
        try:
            import_string(backend)
        except ImportError as exc:
            errors.append(_error(f"CHANNELS[{name!r}] BACKEND {backend!r} cannot be imported: {exc}", 13,
                                 "Is the channel's extra installed (pip install deferred-confirmation[sms])?"))
    if "EXPIRES" in conf and not (isinstance(conf["EXPIRES"], timedelta) and conf["EXPIRES"] > timedelta(0)):
        errors.append(_error(f"CHANNELS[{name!r}] EXPIRES must be a positive datetime.timedelta.", 14))
    attempts = conf.get("MAX_ATTEMPTS")
    if attempts is not None and (not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 1):
        errors.append(_error(f"CHANNELS[{name!r}] MAX_ATTEMPTS must be a positive integer or None.", 15))
    if "OPTIONS" in conf and not isinstance(conf["OPTIONS"], dict):
        errors.append(_error(f"CHANNELS[{name!r}] OPTIONS must be a dict.", 16))
    return errors


def _check_celery_app(path: object) -> list[Error]:
    from celery import Celery

    try:
        app = import_string(path) if isinstance(path, str) else None
    except ImportError as exc:
        return [_error(f"CELERY_APP {path!r} cannot be imported: {exc}", 8)]
    if not isinstance(app, Celery):
        return [_error(f"CELERY_APP {path!r} is not a Celery app.", 8, 'e.g. "proj.celery.app"')]
    return []


def _check_names(where: str, names: object, channels: dict) -> list[Error]:
    if not isinstance(names, list | tuple):
        return [_error(f"{where} must be a list of channel names.", 20)]
    return [_error(f"{where} names unknown channel {n!r}.", 21, f"Configured: {', '.join(sorted(channels))}.")
            for n in names if n not in channels]


def _sends_links(conf: dict) -> bool:
    try:
        return getattr(import_string(conf["BACKEND"]), "secret_kind", None) == "link"
    except ImportError:
        return False  # reported by the channel check


def _check_site_url(site_url: object, channels: dict) -> list[Error]:
    if site_url is None:
        if any(_sends_links(conf) for conf in app_settings.CHANNELS.values()):
            return [_error("SITE_URL is not set; confirmation links are built from it, never from a request.",
                           30, 'Set DEFERRED_CONFIRMATION["SITE_URL"] = "https://your.site".')]
        return []
    parts = urlsplit(site_url) if isinstance(site_url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        return [_error(f"SITE_URL {site_url!r} must be an absolute http(s) URL.", 31)]
    return []
