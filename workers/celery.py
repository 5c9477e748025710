"""The Celery app, configured from Django settings (``CELERY_*``), with this project's safe defaults.

Defaults a project can override in its settings: late acks with reject-on-worker-lost and prefetch 1
(a killed worker's task goes back to the queue, and a worker holds one task it has not started at most),
one queue per channel plus apply and maintenance queues, task events on for Flower.  Database connections
are closed around each task as Django closes them around a request (CONN_MAX_AGE), not before and after every
task whatever CONN_MAX_AGE says, as Celery's Django fixup does by default.
"""

from __future__ import annotations

import os

from celery import Celery, signals
from django.core.exceptions import ImproperlyConfigured
from django.db import close_old_connections, connections
from kombu import Queue

if not os.environ.get("DJANGO_SETTINGS_MODULE"):
    from django.conf import settings as _settings

    if not _settings.configured:
        raise ImproperlyConfigured("deferred_confirmation.workers.app reads its configuration from Django settings: "
                                   "set DJANGO_SETTINGS_MODULE to your project's settings module, e.g. "
                                   "DJANGO_SETTINGS_MODULE=mysite.settings celery -A deferred_confirmation.workers "
                                   "worker.")

# Not set as Celery's current app: it must never displace a project's own app (the library publishes through
# DEFERRED_CONFIRMATION["CELERY_APP"] explicitly; `celery -A deferred_confirmation.workers` makes it current in its own
# process).
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


#: CELERY_DB_REUSE_MAX that no worker reaches: Celery's Django fixup then never closes connections itself.
NEVER = 2**62


def _configure(conf) -> None:
    from django.conf import settings

    from deferred_confirmation.pipeline import dispatch
    from deferred_confirmation.pipeline.conf import app_settings

    for key, value in DEFAULTS.items():
        if not hasattr(settings, f"CELERY_{key.upper()}"):
            conf[key] = value
    if not conf.task_queues:
        names = [conf.task_default_queue or "celery", *app_settings.queues()]
        conf.task_queues = [Queue(name) for name in dict.fromkeys(names)]
    routes = {
        dispatch.APPLY_ACTION: {"queue": app_settings.APPLY_QUEUE},
        dispatch.EXPIRE_STALE: {"queue": app_settings.MAINTENANCE_QUEUE},
        dispatch.PURGE: {"queue": app_settings.MAINTENANCE_QUEUE},
        dispatch.REDRIVE: {"queue": app_settings.MAINTENANCE_QUEUE},
    }
    conf.task_routes = [routes, *([conf.task_routes] if conf.task_routes else [])]
    if conf.get("CELERY_DB_REUSE_MAX") is None:
        # Celery's Django fixup closes every database connection before and after every task unless this is
        # set: a new PostgreSQL connection (a backend forked, authenticated, set up) for each of the three
        # tasks of an action, whatever CONN_MAX_AGE says.  Set out of reach, so the fixup leaves them alone,
        # and :func:`_db_connections_like_requests` closes them as Django does around a request instead.
        conf["CELERY_DB_REUSE_MAX"] = NEVER


@app.on_after_configure.connect
def _on_after_configure(sender, **kwargs) -> None:
    _configure(sender.conf)


@signals.task_prerun.connect
@signals.task_postrun.connect
def _db_connections_like_requests(sender=None, task=None, **kwargs) -> None:
    """Around every task a worker runs, what Django does around every request: close the connections that are
    past CONN_MAX_AGE (0, Django's default: all of them, every task) or unusable after an error (a task whose
    connection was killed is retried on a new one).  A project that keeps connections (CONN_MAX_AGE > 0)
    keeps them in its workers too.  Not for a task run eagerly: it runs inside its caller's transaction."""
    if getattr(getattr(task, "request", None), "is_eager", False):
        return
    close_old_connections()


app.autodiscover_tasks()


@signals.beat_embedded_init.connect
def _beat_gets_its_own_connections(**kwargs) -> None:
    """``worker -B``: the embedded beat process must not share the connections it inherited from the worker's
    main process (the fixup would close them here, but CELERY_DB_REUSE_MAX above tells it to leave them)."""
    connections.close_all()


@signals.celeryd_after_setup.connect
def _channel_rate_limits(sender, instance, **kwargs) -> None:
    """Apply the channels' RATE_LIMIT to the send task on a worker that consumes only their queues.

    Celery's rate limits are per task type and per worker; a per-channel limit is therefore exact on a
    worker dedicated to that channel (``-Q confirmation.sms``).  A worker consuming several channel queues
    takes the strictest of their limits."""
    from deferred_confirmation.pipeline import dispatch
    from deferred_confirmation.pipeline.conf import app_settings

    consumed = set(instance.app.amqp.queues.consume_from or instance.app.amqp.queues)
    limits = [conf["RATE_LIMIT"] for conf in app_settings.CHANNELS.values()
              if conf["QUEUE"] in consumed and conf["RATE_LIMIT"]]
    if limits:
        task = instance.app.tasks[dispatch.SEND_NOTIFICATION]
        task.rate_limit = min(limits, key=_per_second)


def _per_second(rate: str) -> float:
    from celery.utils.time import rate as parse_rate

    return parse_rate(rate)
