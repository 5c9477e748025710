"""The one way the pipeline enqueues work: by task name, after the current transaction commits.

Enqueuing on commit means a worker never sees an action the database does not have yet, and a rolled
back save sends nothing.  If the broker is down the commit still stands (the error is logged) and the
``confirmation.redrive`` sweeper re-enqueues the action later: the database is the outbox.
"""

from __future__ import annotations

import logging
from functools import partial
from typing import Any

from celery import Celery
from django.db import transaction
from django.utils.module_loading import import_string

from pipeline.conf import app_settings

logger = logging.getLogger("deferred_confirmation.dispatch")

# Fail fast when the broker is away: redrive recovers, a web request must not hang on it.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def enqueue(task_name: str, *args: Any, queue: str | None = None, countdown: float | None = None) -> None:
    transaction.on_commit(partial(_publish, task_name, args, queue, countdown), robust=True)


def celery_app() -> Celery:
    """The app named by CELERY_APP.  Not ``celery.current_app``: that is per thread, and in a thread other
    than the one that created the project's app (a threaded web server's) it is Celery's unconfigured
    fallback app, which would publish to the wrong broker."""
    return import_string(app_settings.CELERY_APP)


def _publish(task_name: str, args: tuple, queue: str | None, countdown: float | None) -> None:
    options = {"queue": queue, "countdown": countdown, "retry": True, "retry_policy": PUBLISH_RETRY_POLICY}
    app = celery_app()
    task = app.tasks.get(task_name)
    try:
        if task is not None:  # honours CELERY_TASK_ALWAYS_EAGER
            task.apply_async(args=args, **options)
        else:
            app.send_task(task_name, args=args, **options)
    except Exception:
        logger.exception("could not enqueue %s%s; redrive will retry", task_name, _safe_args(args))


def _safe_args(args: tuple) -> tuple:
    # Arguments are ids and sealed secrets; only the first (an id) is worth logging.
    return args[:1]


# Task names are part of the public contract (DESIGN §6); workers.tasks registers them.
GENERATE_TOKEN = "confirmation.generate_token"
SEND_NOTIFICATION = "confirmation.send_notification"
APPLY_ACTION = "confirmation.apply_action"
EXPIRE_STALE = "confirmation.expire_stale"
PURGE = "confirmation.purge"
REDRIVE = "confirmation.redrive"
