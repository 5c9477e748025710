"""Test settings: PostgreSQL when TEST_DATABASE=postgres (the default in CI), SQLite otherwise.

The broker is the machine's real Redis (TEST_REDIS_URL, default redis://127.0.0.1:6379/15)."""

import json
import os
import tempfile
from datetime import timedelta

SECRET_KEY = "tests-secret-key-0123456789abcdefghijklmnopqrstuvwxyz"
SECRET_KEY_FALLBACKS = ["tests-old-secret-key-abcdefghijklmnopqrstuvwxyz0123456789"]
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_celery_beat",
    "deferred_confirmation.django_integration",
    "tests.testapp",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",  # pages in the request's language (docs/concepts.md#languages)
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "tests.urls"
# The server's own language is English; a change saved in another is still mailed, texted and printed in it.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch"), ("es", "Español"), ("fr", "Français")]
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]

if os.environ.get("TEST_DATABASE", "sqlite") == "postgres":
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ.get("PGDATABASE", "test"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "TEST": {"NAME": os.environ.get("TEST_PG_NAME", "test_deferred_confirmation")},
    }}
else:
    # A file, as in the embedded default, so worker subprocesses share the test database; WAL and a busy
    # timeout as example/settings.py uses for web + worker + beat on one file.
    DATABASES = {"default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.path.join(tempfile.gettempdir(), "deferred-confirmation.sqlite3"),
        "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE",
                    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"},
        "TEST": {"NAME": os.environ.get("TEST_SQLITE_NAME",
                                        os.path.join(tempfile.gettempdir(), "test-deferred-confirmation.sqlite3"))},
    }}

CELERY_BROKER_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
CELERY_TASK_ALWAYS_EAGER = False

EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
DEFAULT_FROM_EMAIL = "noreply@testserver"

DEFERRED_CONFIRMATION = {
    "SITE_URL": "https://confirm.example.org",
    "RETENTION": timedelta(days=30),
}

# Knobs for processes the tests start (tests/workers): a `celery -A deferred_confirmation.workers worker` subprocess
# that shares the test run's database (the test database's name, or the SQLite file) and writes its mail to files.
if os.environ.get("DC_TEST_SHARED_DB_NAME"):
    DATABASES["default"]["NAME"] = os.environ["DC_TEST_SHARED_DB_NAME"]
if os.environ.get("DC_TEST_EMAIL_FILE_PATH"):
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = os.environ["DC_TEST_EMAIL_FILE_PATH"]
if os.environ.get("DC_TEST_EMAIL_RATE_LIMIT"):  # a worker subprocess dedicated to the email queue
    DEFERRED_CONFIRMATION["CHANNELS"] = {"email": {"RATE_LIMIT": os.environ["DC_TEST_EMAIL_RATE_LIMIT"]}}
# Worker-killed tests (tests/faults/test_worker_killed.py): a short Redis visibility timeout, so the broker hands
# a dead worker's unacknowledged tasks to the next worker within seconds (scanned every second), and a send
# lease shorter than it.
if os.environ.get("DC_TEST_VISIBILITY_TIMEOUT"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ["DC_TEST_VISIBILITY_TIMEOUT"]),
                                       "unacked_restore_interval": 1, "unacked_restore_throttle": 1}
    CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": int(os.environ["DC_TEST_VISIBILITY_TIMEOUT"])}
if os.environ.get("DC_TEST_CHANNELS"):  # a worker subprocess sending SMS and letters too (JSON of CHANNELS)
    DEFERRED_CONFIRMATION["CHANNELS"] = json.loads(os.environ["DC_TEST_CHANNELS"])
if os.environ.get("DC_TEST_MEDIA_ROOT"):  # where that worker's PDF letters are stored
    MEDIA_ROOT = os.environ["DC_TEST_MEDIA_ROOT"]
if os.environ.get("DC_TEST_SEND_LEASE"):
    DEFERRED_CONFIRMATION["SEND_LEASE"] = timedelta(seconds=float(os.environ["DC_TEST_SEND_LEASE"]))
