"""The system check of DEFERRED_CONFIRMATION names what is wrong."""

from __future__ import annotations

from datetime import timedelta

import django
import pytest
from django.core.checks import Error, run_checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

SITE = "https://confirm.example.org"
#: A cache web processes share, with atomic increments (never contacted: the checks only read the settings).
SHARED_CACHE = {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:6379/0"}


@pytest.fixture(autouse=True)
def shared_cache(settings):
    """The test settings use Django's per-process default cache, which the throttle check warns about."""
    settings.CACHES = {"default": SHARED_CACHE}


def problems() -> list[Error]:
    return [m for m in run_checks() if m.id.startswith("confirmation.")]


def only_problem(settings, conf: dict) -> Error:
    settings.DEFERRED_CONFIRMATION = conf
    found = problems()
    assert len(found) == 1, [m.msg for m in found]
    assert found[0].is_serious() and found[0].obj == "DEFERRED_CONFIRMATION"
    return found[0]


def test_the_test_settings_pass(settings):
    assert problems() == []
    settings.DEFERRED_CONFIRMATION = {
        "SITE_URL": SITE,
        "CHANNELS": {"email": {"EXPIRES": timedelta(hours=1), "MAX_ATTEMPTS": None, "QUEUE": "mail",
                               "RATE_LIMIT": "10/m", "OPTIONS": {}}},
        "ROUTES": {"tests.testapp.forms.ProfileEmailForm": ["email"], "testapp.profile": "email"},
        "DEFAULT_CHANNELS": ["email"],
        "RETENTION": timedelta(days=1),
        "BATCH_SIZE": 10,
        "TRUSTED_PROXY_COUNT": 1,
        "TRUSTED_CLIENT_IP_HEADER": "X-Real-IP",
        "MAX_REDRIVES": 5,
        "SEND_LIMIT_PER_CLIENT": None,
        "SEND_WINDOW_PER_CLIENT": timedelta(minutes=30),
    }
    assert problems() == []


def test_an_unknown_top_level_key_is_named(settings):
    error = only_problem(settings, {"SITE_URL": SITE, "CHANELS": {"email": {}}})
    assert "'CHANELS'" in error.msg
    assert "CHANNELS" in error.hint


def test_an_unknown_channel_in_routes_is_named(settings):
    error = only_problem(settings, {"SITE_URL": SITE, "ROUTES": {"accounts.forms.EmailChangeForm": ["pigeon"]}})
    assert "'pigeon'" in error.msg and "accounts.forms.EmailChangeForm" in error.msg
    assert "email" in error.hint


def test_an_unknown_default_channel_is_named(settings):
    error = only_problem(settings, {"SITE_URL": SITE, "DEFAULT_CHANNELS": ["email", "pigeon"]})
    assert "DEFAULT_CHANNELS" in error.msg and "'pigeon'" in error.msg


def test_an_unimportable_backend_is_named(settings):
    error = only_problem(settings, {"SITE_URL": SITE, "CHANNELS": {
        "email": {}, "fax": {"BACKEND": "nowhere.channels.FaxChannel"}}})
    assert "'fax'" in error.msg and "nowhere.channels.FaxChannel" in error.msg


def test_a_custom_channel_without_a_backend_is_named(settings):
    error = only_problem(settings, {"SITE_URL": SITE, "CHANNELS": {"email": {}, "fax": {}}})
    assert "'fax'" in error.msg and "BACKEND" in error.msg


@pytest.mark.parametrize("expires", [3, "3 days", timedelta(0), timedelta(days=-1)])
def test_a_bad_expires_is_named(settings, expires):
    error = only_problem(settings, {"SITE_URL": SITE, "CHANNELS": {"email": {"EXPIRES": expires}}})
    assert "'email'" in error.msg and "EXPIRES" in error.msg and "timedelta" in error.msg


def test_a_missing_site_url_is_named(settings):
    error = only_problem(settings, {})
    assert "SITE_URL" in error.msg
    assert "SITE_URL" in error.hint


@pytest.mark.parametrize("site_url", ["confirm.example.org", "ftp://confirm.example.org", "https://", 42])
def test_an_invalid_site_url_is_named(settings, site_url):
    error = only_problem(settings, {"SITE_URL": site_url})
    assert "SITE_URL" in error.msg and repr(site_url) in error.msg


def test_several_problems_are_all_reported(settings):
    settings.DEFERRED_CONFIRMATION = {"SITE_URL": "nope", "COLOUR": "blue", "DEFAULT_CHANNELS": ["pigeon"],
                                      "CHANNELS": {"email": {"EXPIRES": 5, "COLOR": 1}}}
    text = "\n".join(m.msg for m in problems())
    for expected in ("'COLOUR'", "'pigeon'", "EXPIRES", "'COLOR'", "'nope'"):
        assert expected in text


def test_manage_py_check_fails_naming_the_problem(settings):
    settings.DEFERRED_CONFIRMATION = {"SITE_URL": SITE, "DEFAULT_CHANNELS": ["pigeon"]}
    with pytest.raises(SystemCheckError, match="pigeon"):
        call_command("check")


GARBAGE = {
    "channel options not a dict": ({"CHANNELS": {"email": "x"}}, "must be a dict"),
    "backend not a string": ({"CHANNELS": {"email": {"BACKEND": 123}}}, "cannot be imported"),
    "bad rate limit": ({"CHANNELS": {"email": {"RATE_LIMIT": "fast"}}}, "RATE_LIMIT"),
    "empty queue": ({"CHANNELS": {"email": {"QUEUE": ""}}}, "QUEUE"),
    "send limit zero": ({"CHANNELS": {"email": {"SEND_LIMIT": 0}}}, "SEND_LIMIT"),
    "cooldown not a duration": ({"CHANNELS": {"email": {"RESEND_COOLDOWN": 60}}}, "RESEND_COOLDOWN"),
    "route policy": ({"ROUTES": {"x.Form": {"channels": ["email"], "policy": "most"}}}, "policy"),
    "route key": ({"ROUTES": {"x.Form": {"channels": ["email"], "via": 1}}}, "unknown key"),
    "status refresh": ({"STATUS_REFRESH_SECONDS": "2"}, "STATUS_REFRESH_SECONDS"),
    "apply queue": ({"APPLY_QUEUE": None}, "APPLY_QUEUE"),
    "throttle cache": ({"THROTTLE_CACHE": "nope"}, "THROTTLE_CACHE"),
    "phone region": ({"PHONE_REGION": "USA"}, "PHONE_REGION"),
    "redrive shorter than backoff": ({"REDRIVE_AFTER": timedelta(minutes=1)}, "REDRIVE_AFTER"),
    "celery app not an app": ({"CELERY_APP": "deferred_confirmation.pipeline.conf.app_settings"}, "not a Celery app"),
    "negative proxy count": ({"TRUSTED_PROXY_COUNT": -1}, "TRUSTED_PROXY_COUNT"),
    "proxy count not a number": ({"TRUSTED_PROXY_COUNT": "1"}, "TRUSTED_PROXY_COUNT"),
    "proxy count a bool": ({"TRUSTED_PROXY_COUNT": True}, "TRUSTED_PROXY_COUNT"),
    "empty client ip header": ({"TRUSTED_CLIENT_IP_HEADER": " "}, "TRUSTED_CLIENT_IP_HEADER"),
    "client ip header not a string": ({"TRUSTED_CLIENT_IP_HEADER": ["X-Real-IP"]}, "TRUSTED_CLIENT_IP_HEADER"),
    "no redrives": ({"MAX_REDRIVES": 0}, "MAX_REDRIVES"),
    "send limit per client zero": ({"SEND_LIMIT_PER_CLIENT": 0}, "SEND_LIMIT_PER_CLIENT"),
    "send limit per client text": ({"SEND_LIMIT_PER_CLIENT": "10"}, "SEND_LIMIT_PER_CLIENT"),
    "send window per client zero": ({"SEND_WINDOW_PER_CLIENT": timedelta(0)}, "SEND_WINDOW_PER_CLIENT"),
    "send window per client seconds": ({"SEND_WINDOW_PER_CLIENT": 3600}, "SEND_WINDOW_PER_CLIENT"),
}


@pytest.mark.parametrize(("conf", "named"), GARBAGE.values(), ids=GARBAGE.keys())
def test_values_of_the_wrong_type_are_named_never_crash_the_check(settings, conf, named):
    found = only_problem(settings, {"SITE_URL": SITE, **conf})
    assert named in found.msg


UNSHARED = {
    "locmem": ("django.core.cache.backends.locmem.LocMemCache", "every web process counts"),
    "dummy": ("django.core.cache.backends.dummy.DummyCache", "the throttle is off"),
    "database": ("django.core.cache.backends.db.DatabaseCache", "can be lost"),
}


@pytest.mark.parametrize(("backend", "named"), UNSHARED.values(), ids=UNSHARED.keys())
def test_a_throttle_cache_without_shared_atomic_counters_is_warned_about(settings, backend, named):
    settings.DEFERRED_CONFIRMATION = {"SITE_URL": SITE, "THROTTLE_CACHE": "throttle"}
    settings.CACHES = {"default": SHARED_CACHE, "throttle": {"BACKEND": backend, "LOCATION": "throttle"}}
    [warning] = problems()
    assert warning.id == "confirmation.W002" and not warning.is_serious()
    assert "'throttle'" in warning.msg and named in warning.msg and "Redis" in warning.hint
    call_command("check")  # a warning: manage.py check (and runserver, and the tests) still run


def test_a_shared_throttle_cache_is_not_warned_about(settings):
    settings.DEFERRED_CONFIRMATION = {"SITE_URL": SITE, "THROTTLE_CACHE": "throttle"}
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
                       "throttle": SHARED_CACHE}
    assert problems() == []  # only the throttle's cache matters


# --- check --deploy -----------------------------------------------------------------------------------------
def deploy_problems() -> list[str]:
    return sorted(m.id for m in run_checks(include_deployment_checks=True) if m.id.startswith("confirmation."))


def test_deploy_checks_pass_a_production_configuration(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.DEFERRED_CONFIRMATION = {"SITE_URL": SITE}
    assert deploy_problems() == []
    assert problems() == []  # and the plain check never reports deployment matters


def test_deploy_checks_name_what_development_settings_leave_behind(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.console.EmailBackend"
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.DEFERRED_CONFIRMATION = {"SITE_URL": "http://confirm.example.org"}
    assert deploy_problems() == ["confirmation.W005", "confirmation.W006", "confirmation.W007"]
    assert problems() == []


def test_an_email_channel_with_its_own_delivering_backend_is_not_warned_about(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # the project's tests' default
    settings.DEFERRED_CONFIRMATION = {"SITE_URL": SITE, "CHANNELS": {
        "email": {"OPTIONS": {"EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend"}}}}
    # Django 6.1 deprecates a backend chosen by path (confirmation.W004), which is not a deployment matter.
    assert deploy_problems() == (["confirmation.W004"] if django.VERSION >= (6, 1) else [])


def test_manage_py_check_deploy_fails_on_an_http_site_url_at_warning_level(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.DEFERRED_CONFIRMATION = {"SITE_URL": "http://confirm.example.org"}
    with pytest.raises(SystemCheckError, match=r"confirmation\.W005"):
        call_command("check", "--deploy", "--fail-level", "WARNING", "--tag", "security")
