"""The Celery app, configured from Django settings (``CELERY_*``), with this project's safe defaults.

Defaults a project can override in its settings: late acks with reject-on-worker-lost and prefetch 1
(a killed worker's task goes back to the queue, and a worker holds one task it has not started at most),
one queue per channel plus apply and maintenance queues, task events on for Flower.
"""

from __future__ import annotations

import os

from celery import Celery, signals
from django.core.exceptions import ImproperlyConfigured
from kombu import Queue

if not os.environ.get("DJANGO_SETTINGS_MODULE"):
    from django.conf import settings as _settings

    if not _settings.configured:
        raise ImproperlyConfigured("workers.app reads its configuration from Django settings: set "
                                   "DJANGO_SETTINGS_MODULE (for the demo: DJANGO_SETTINGS_MODULE=example.settings).")

# Not set as Celery's current app: it must never displace a project's own app (the library publishes through
# DEFERRED_CONFIRMATION["CELERY_APP"] explicitly; `celery -A workers` makes it current in its own process).
app = Celery("workers", set_as_current=False)
app.config_from_object("django.conf:settings", namespace="CELERY")

DEFAULTS = {
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    "worker_prefetch_multiplier": 1,
    "task_ignore_result": True,
    "task_serializer": "json",
    "accept_content": ["json"],
    "worker_send_task_events": True,
    "task_send_sent_event": True,
    "broker_connection_retry_on_startup": True,
}


def _configure(conf) -> None:
    from django.conf import settings

    from pipeline.conf import app_settings

    for key, value in DEFAULTS.items():
        if not hasattr(settings, f"CELERY_{key.upper()}"):
            conf[key] = value
    if not conf.task_queues:
        names = [conf.task_default_queue or "celery", *app_settings.queues()]
        conf.task_queues = [Queue(name) for name in dict.fromkeys(names)]
    routes = {
        "confirmation.apply_action": {"queue": app_settings.APPLY_QUEUE},
        "confirmation.expire_stale": {"queue": app_settings.MAINTENANCE_QUEUE},
        "confirmation.purge": {"queue": app_settings.MAINTENANCE_QUEUE},
        "confirmation.redrive": {"queue": app_settings.MAINTENANCE_QUEUE},
    }
    conf.task_routes = [routes, *([conf.task_routes] if conf.task_routes else [])]


@app.on_after_configure.connect
def _on_after_configure(sender, **kwargs) -> None:
    _configure(sender.conf)


app.autodiscover_tasks()


@signals.celeryd_after_setup.connect
def _channel_rate_limits(sender, instance, **kwargs) -> None:
    """Apply the channels' RATE_LIMIT to the send task on a worker that consumes only their queues.

    Celery's rate limits are per task type and per worker; a per-channel limit is therefore exact on a
    worker dedicated to that channel (``-Q confirmation.sms``).  A worker consuming several channel queues
    takes the strictest of their limits."""
    from pipeline.conf import app_settings
    from pipeline.dispatch import SEND_NOTIFICATION

    consumed = set(instance.app.amqp.queues.consume_from or instance.app.amqp.queues)
    limits = [conf["RATE_LIMIT"] for conf in app_settings.CHANNELS.values()
              if conf["QUEUE"] in consumed and conf["RATE_LIMIT"]]
    if limits:
        task = instance.app.tasks[SEND_NOTIFICATION]
        task.rate_limit = min(limits, key=_per_second)


def _per_second(rate: str) -> float:
    from celery.utils.time import rate as parse_rate

    return parse_rate(rate)
