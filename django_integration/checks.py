"""System checks of DEFERRED_CONFIRMATION: names every bad key, unknown channel and unimportable backend,
and never crashes on a value of the wrong type.

Each setting's validator is declared beside it in ``pipeline.conf``; this module runs them and reports their
problems under the ids of ``check_ids``, at the level declared there."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, register
from django.core.checks import Warning as CheckWarning

from deferred_confirmation.django_integration import check_ids as ids
from deferred_confirmation.django_integration.check_ids import Check
from deferred_confirmation.pipeline.channels.base import BaseChannel
from deferred_confirmation.pipeline.conf import CHANNEL_KEYS, CHANNEL_SETTINGS, DEFAULTS, SETTINGS, channel_values
from deferred_confirmation.pipeline.paths import current_path
from deferred_confirmation.pipeline.setting_validators import Field, Problem, import_object

LEVELS = {"error": Error, "warning": CheckWarning}
BY_ID = {check.id: check for check in ids.CHECKS}


def _message(check: Check, msg: str, hint: str | None = None, obj: str = "DEFERRED_CONFIRMATION") -> CheckMessage:
    return LEVELS[check.level](msg, hint=hint, obj=obj, id=check.id)


def _reported(problems: list[Problem]) -> list[CheckMessage]:
    return [_message(BY_ID[p.check_id], p.message, p.hint) for p in problems]


@register(Tags.compatibility)
def check_settings(app_configs=None, **kwargs) -> list[CheckMessage]:
    raw = getattr(settings, "DEFERRED_CONFIRMATION", {})
    if not isinstance(raw, dict):
        return [_message(ids.SETTINGS_NOT_A_DICT, "DEFERRED_CONFIRMATION must be a dict.")]
    values = {**DEFAULTS, **raw}
    errors = [_message(ids.UNKNOWN_SETTING, f"Unknown key {key!r}.", f"Known keys: {', '.join(sorted(DEFAULTS))}.")
              for key in raw if key not in DEFAULTS]
    for setting in SETTINGS:
        problems = setting.validator(values[setting.name], Field(setting.name, setting.check, values))
        errors += _reported(problems)
        if setting.name == "CHANNELS":
            if problems:
                return errors  # every other check names channels
            for name, conf in values["CHANNELS"].items():
                errors += _check_channel(name, conf)
    return errors


def _check_channel(name: str, conf: object) -> list[CheckMessage]:
    where = f"CHANNELS[{name!r}]"
    if not isinstance(conf, dict):
        return [_message(ids.CHANNEL_NOT_A_DICT, f"{where} must be a dict.")]
    errors = [_message(ids.UNKNOWN_CHANNEL_KEY, f"{where} has unknown key {key!r}.",
                       f"Known: {', '.join(sorted(CHANNEL_KEYS))}.")
              for key in conf if key not in CHANNEL_KEYS]
    values = channel_values(name, conf)
    for setting in CHANNEL_SETTINGS:
        field = Field(f"{where} {setting.name}", setting.check, values, channel=name)
        errors += _reported(setting.validator(values.get(setting.name), field))
    return errors


@register(Tags.compatibility)
def check_sqlite_transaction_mode(app_configs=None, **kwargs) -> list[CheckMessage]:
    """SQLite in its default transaction mode refuses (instead of waiting for) a second simultaneous writer."""
    warnings = []
    for alias, conf in settings.DATABASES.items():
        if conf.get("ENGINE", "").endswith("sqlite3") and (conf.get("OPTIONS") or {}).get(
                "transaction_mode") != "IMMEDIATE":
            warnings.append(_message(
                ids.SQLITE_NOT_IMMEDIATE,
                f"DATABASES[{alias!r}] is SQLite without transaction_mode IMMEDIATE: a web process and a worker "
                "writing at the same moment get 'database is locked' instead of waiting.",
                hint='Set "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20} (Django 5.1+).',
                obj="DATABASES"))
    return warnings


@register(Tags.caches)
def check_throttle_cache(app_configs=None, **kwargs) -> list[CheckMessage]:
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
    backend, why = import_object(conf.get("BACKEND") if isinstance(conf, dict) else None)
    if why or not isinstance(backend, type):
        return []  # an unknown alias is UNKNOWN_THROTTLE_CACHE; a bad BACKEND, Django's own check
    if issubclass(backend, DummyCache):
        problem = "stores nothing: failed confirmation attempts are never counted, the throttle is off"
    elif issubclass(backend, LocMemCache):
        problem = ("lives in each process: every web process counts failed attempts on its own, so a client "
                   "gets FAILED_ATTEMPTS_LIMIT attempts per process, and a restart forgets them")
    elif issubclass(backend, DatabaseCache | FileBasedCache):
        problem = "increments by reading, then writing: parallel failed attempts can be lost from the count"
    else:
        return []
    return [_message(
        ids.THROTTLE_CACHE_NOT_SHARED, f"THROTTLE_CACHE {alias!r} ({backend.__name__}) {problem}.",
        hint="Point THROTTLE_CACHE at a cache every web process shares, with atomic increments: Redis "
             "(django.core.cache.backends.redis.RedisCache) or Memcached.")]


@register(Tags.compatibility)
def check_legacy_paths(app_configs=None, **kwargs) -> list[CheckMessage]:
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
    return [_message(ids.LEGACY_PATH, f"{where} {path!r} names the library's old top-level package.",
                     hint=f"Use {current_path(path)!r}: the library installs under deferred_confirmation.")
            for where, path in named.items() if isinstance(path, str) and current_path(path) != path]


@register(Tags.compatibility)
def check_channel_option_warnings(app_configs=None, **kwargs) -> list[CheckMessage]:
    """OPTIONS that still work but are deprecated, as each channel backend's ``warn_options`` says (the email
    channel's EMAIL_BACKEND on Django 6.1 without MAILERS); ones that cannot work are BAD_BACKEND_OPTIONS."""
    raw = getattr(settings, "DEFERRED_CONFIRMATION", {})
    channels = raw.get("CHANNELS", DEFAULTS["CHANNELS"]) if isinstance(raw, dict) else None
    found = []
    for name, conf in (channels.items() if isinstance(channels, dict) else ()):
        values = channel_values(name, conf) if isinstance(conf, dict) else {}
        backend, why = import_object(values.get("BACKEND"))
        options = values.get("OPTIONS", {})
        if not why and isinstance(options, dict) and isinstance(backend, type) and issubclass(backend, BaseChannel):
            found += [_message(ids.DEPRECATED_CHANNEL_OPTION, f"CHANNELS[{name!r}] OPTIONS: {problem}")
                      for problem in backend.warn_options(options)]
    return found


#: Django mail backends that deliver nothing: fine in development, a silent failure on a real site.
UNDELIVERING_MAIL_BACKENDS = ("django.core.mail.backends.console.EmailBackend",
                              "django.core.mail.backends.locmem.EmailBackend",
                              "django.core.mail.backends.dummy.EmailBackend",
                              "django.core.mail.backends.filebased.EmailBackend")


@register(Tags.security, deploy=True)
def check_deployment(app_configs=None, **kwargs) -> list[CheckMessage]:
    """``check --deploy``: what development settings leave that a site people use must not have."""
    from deferred_confirmation.pipeline.channels import mailconn
    from deferred_confirmation.pipeline.channels.email import EmailChannel

    raw = getattr(settings, "DEFERRED_CONFIRMATION", {})
    if not isinstance(raw, dict):
        return []  # SETTINGS_NOT_A_DICT says so
    found = []
    site_url = raw.get("SITE_URL")
    if isinstance(site_url, str) and site_url.lower().startswith("http://"):
        found.append(_message(ids.SITE_URL_NOT_HTTPS, f"SITE_URL {site_url!r} is not https: the links in mails "
                              "carry secrets, and the pages they open set session cookies.",
                              hint="Serve the site over TLS and set SITE_URL to its https:// address."))
    channels = raw.get("CHANNELS", DEFAULTS["CHANNELS"])
    for name, conf in (channels.items() if isinstance(channels, dict) else ()):
        values = channel_values(name, conf) if isinstance(conf, dict) else {}
        backend, _why = import_object(values.get("BACKEND"))
        if not (isinstance(backend, type) and issubclass(backend, EmailChannel)):
            continue
        options = values.get("OPTIONS") if isinstance(values.get("OPTIONS"), dict) else {}
        mail_backend = mailconn.backend_path(options.get("MAILER"), options.get("EMAIL_BACKEND"))
        if mail_backend in UNDELIVERING_MAIL_BACKENDS:
            found.append(_message(ids.MAIL_GOES_NOWHERE, f"CHANNELS[{name!r}] sends through {mail_backend}, which "
                                  "delivers no mail: nobody receives a link, every change waits until it expires.",
                                  hint="Set EMAIL_BACKEND (or the channel's OPTIONS) to your SMTP server or "
                                       "provider (django.core.mail.backends.smtp.EmailBackend, django-anymail)."))
    if getattr(settings, "CELERY_TASK_ALWAYS_EAGER", False):
        found.append(_message(ids.TASKS_RUN_EAGERLY, "CELERY_TASK_ALWAYS_EAGER is on: mails, texts, letters and "
                              "applies run inside the web request, their retries block it, and nothing is redriven "
                              "after a crash.", hint="Leave it off outside tests; run a worker "
                              "(celery -A deferred_confirmation.workers worker).", obj="CELERY_TASK_ALWAYS_EAGER"))
    return found
