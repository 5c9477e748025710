"""Settings of the demo project.  Embedded defaults (SQLite, an embedded Redis); override by environment:
DATABASE_URL, CELERY_BROKER_URL, CACHE_URL, SITE_URL, SECRET_KEY, DEBUG, ALLOWED_HOSTS, EMAIL_BACKEND, and for the SMS
channel TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_FROM, TWILIO_BASE_URL; for shutdown and redelivery
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT and REDIS_VISIBILITY_TIMEOUT (docs/operations.md#the-example-stack-procfile)."""

import os
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import dj_database_url

from example import embedded_redis
from example.fakes import twilio as fake_twilio

BASE_DIR = Path(__file__).resolve().parent
VAR_DIR = Path(os.environ.get("EXAMPLE_VAR_DIR", BASE_DIR / "var"))

SECRET_KEY = os.environ.get("SECRET_KEY", "demo-only-insecure-key-set-SECRET_KEY-in-production")
DEBUG = os.environ.get("DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_celery_beat",
    "deferred_confirmation.django_integration",
    "example.accounts",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "example.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
WSGI_APPLICATION = "example.wsgi.application"

VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {"default": dj_database_url.config(default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}", conn_max_age=60)}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # web, worker and beat share the file: wait for locks, take the write lock up front, and use WAL.
    DATABASES["default"]["OPTIONS"] = {"timeout": 20, "transaction_mode": "IMMEDIATE",
                                       "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"}
    DATABASES["default"]["CONN_MAX_AGE"] = 0

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL") or embedded_redis.ensure(VAR_DIR)


def _cache_url(broker: str) -> str | None:
    """The broker's Redis server, in the next database number (the broker's keys stay apart from the cache's)."""
    parts = urlsplit(broker)
    if parts.scheme == "redis+socket":  # the embedded Redis: redis-py spells a socket unix://...?db=
        return f"unix://{parts.path}?db=1"
    if parts.scheme in ("redis", "rediss"):
        db = int(parts.path.strip("/") or 0)
        return urlunsplit(parts._replace(path=f"/{(db + 1) % 16}"))
    return None


# The failure throttle (THROTTLE_CACHE, the default cache) counts attempts per client: every web process must
# see the same counters, so a shared Redis, never the per-process default.  CACHE_URL (a redis:// URL) wins;
# else the broker's Redis, another database.  A broker that is not Redis needs CACHE_URL (the check warns).
# CACHE_KEY_PREFIX keeps the keys of several sites that share one Redis apart.
CACHE_URL = os.environ.get("CACHE_URL") or _cache_url(CELERY_BROKER_URL)
if CACHE_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL,
                          "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", "")}}
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = os.environ.get("CELERY_TASK_ALWAYS_EAGER") == "1"
# Shutdown and redelivery (docs/operations.md#the-example-stack-procfile).  Tasks are acknowledged late, so a message
# stays in Redis's "unacked" set while a worker holds it: a task waiting for its retry countdown (at most
# RETRY_BACKOFF_MAX, 5 min) or running.  A worker that is stopped puts its messages back at once; one killed outright
# (SIGKILL, OOM, power) cannot, and Redis hands them to another worker after the visibility timeout.  15 minutes: longer
# than the longest countdown plus the longest task (a few provider timeouts), or Redis would hand a waiting retry to a
# second worker; and no later than the outbox sweep (REDRIVE_AFTER 10 min, run every 5 min) would find the action
# anyway.  The result backend (if you configure a Redis one) gets the same value.
REDIS_VISIBILITY_TIMEOUT = int(os.environ.get("REDIS_VISIBILITY_TIMEOUT", 15 * 60))
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT}
CELERY_RESULT_BACKEND_TRANSPORT_OPTIONS = {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT}
# With REMAP_SIGTERM=SIGQUIT in the worker's environment (.env, docker/compose.yaml), SIGTERM lets running tasks
# finish for this many seconds, then cancels the rest, whose messages go back to their queue.  2 s fits inside
# honcho's 5 s before SIGKILL; the containers set more (and a longer stop_grace_period).
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = float(os.environ.get("CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT", 2))

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.filebased.EmailBackend")
EMAIL_FILE_PATH = VAR_DIR / "mail"
DEFAULT_FROM_EMAIL = "Example <no-reply@example.com>"

# Letters are PDFs with a live code in them: a storage of their own, outside anything a web server publishes.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    "letters": {"BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": VAR_DIR / "letters", "base_url": "/unpublished-letters/",
                            "file_permissions_mode": 0o600, "directory_permissions_mode": 0o700}},
}
MEDIA_ROOT = VAR_DIR / "media"

# Twilio.  Without TWILIO_* in the environment these are the credentials of the fake Twilio in
# example/fakes/twilio.py (`python -m example.fakes.twilio 8001`, then TWILIO_BASE_URL=http://127.0.0.1:8001):
# real Twilio refuses them, and the SMS action then fails with Twilio's "Authenticate" error.  The demo
# starts the fake itself and sets TWILIO_BASE_URL.  With real credentials, leave TWILIO_BASE_URL unset.
TWILIO_OPTIONS = {
    "ACCOUNT_SID": os.environ.get("TWILIO_ACCOUNT_SID", fake_twilio.DEFAULT_ACCOUNT_SID),
    "AUTH_TOKEN": os.environ.get("TWILIO_AUTH_TOKEN", fake_twilio.DEFAULT_AUTH_TOKEN),
    "FROM": os.environ.get("TWILIO_FROM", "+15005550006"),
}
if os.environ.get("TWILIO_BASE_URL"):
    TWILIO_OPTIONS["BASE_URL"] = os.environ["TWILIO_BASE_URL"]

# The return address printed on the letters.
LETTER_SENDER = {"name": "Example Inc.", "line1": "185 Berry St", "line2": "Suite 6100", "city": "San Francisco",
                 "state": "CA", "postal_code": "94107", "country": "US"}

DEFERRED_CONFIRMATION = {
    "SITE_URL": os.environ.get("SITE_URL", "http://127.0.0.1:8000"),
    "CHANNELS": {
        "email": {},  # a link by mail, with Django's EMAIL_BACKEND (files in var/mail/ here)
        "sms": {"BACKEND": "deferred_confirmation.pipeline.channels.sms.TwilioSMSChannel", "OPTIONS": TWILIO_OPTIONS},
        "letter": {"BACKEND": "deferred_confirmation.pipeline.channels.letter.PDFLetterChannel",
                   "OPTIONS": {"STORAGE": "letters", "FROM": LETTER_SENDER, "PAGE_SIZE": "letter"}},
        # The default payout backend: a ledger row per deposit pair, paid by whoever runs
        # `manage.py export_payouts` (the demo reads the amounts from there).
        "microdeposit": {"BACKEND": "deferred_confirmation.pipeline.channels.microdeposit.MicroDepositChannel",
                         "OPTIONS": {"CURRENCY": "USD"}},
    },
    # Which channel confirms which form (a form's own confirmation_channels would win over these).
    "ROUTES": {
        "example.accounts.forms.EmailChangeForm": ["email"],
        "example.accounts.forms.PhoneChangeForm": ["sms"],
        "example.accounts.forms.AddressChangeForm": ["letter"],
        # The dict form: {"channels": [...], "policy": "any" | "all"} ("all": every channel must be confirmed).
        "example.accounts.forms.BankAccountForm": {"channels": ["microdeposit"], "policy": "all"},
    },
    "DEFAULT_CHANNELS": ["email"],  # the sign-up form
    "PHONE_REGION": "US",  # numbers typed without +country code are American
    "RETENTION": timedelta(days=30),
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
                   # One JSON object per line, the lifecycle's extra fields as keys: LOG_FORMAT=json.
                   "json": {"()": "deferred_confirmation.pipeline.logformat.JsonFormatter"}},
    "handlers": {"console": {"class": "logging.StreamHandler",
                             "formatter": "json" if os.environ.get("LOG_FORMAT") == "json" else "plain"}},
    "loggers": {"deferred_confirmation": {"handlers": ["console"], "level": "INFO"}},
}
