"""The one way the pipeline enqueues work: by task name, after the current transaction commits.

Enqueuing on commit means a worker never sees an action the database does not have yet, and a rolled
back save sends nothing.  If the broker is down the commit still stands (the error is logged) and the
``confirmation.redrive`` sweeper re-enqueues the action later: the database is the outbox.

Traceable, never readable: every task about an action carries its id (``apply_action``'s argument, an
``action_id`` keyword on ``generate_token`` and ``send_notification``), and every message is published with
an ``argsrepr``/``kwargsrepr`` (:func:`task_reprs`) showing ids and numbers only: the sealed secret appears as
``<sealed>`` in task events, Flower and worker logs.  (The message body still holds it, sealed: a broker
reader sees ciphertext only.)
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

from celery import Celery
from django.db import transaction

from deferred_confirmation.pipeline.conf import app_settings
from deferred_confirmation.pipeline.paths import import_path

logger = logging.getLogger("deferred_confirmation.dispatch")

# Fail fast when the broker is away: redrive recovers, a web request must not hang on it.
PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def enqueue(task_name: str, *args: Any, queue: str | None = None, countdown: float | None = None,
            action_id: Any = None) -> None:
    """Publish ``task_name(*args)`` when the current transaction commits.  ``action_id`` (the action the
    task is about) goes along as a keyword to the delivery tasks, for Flower; looked up if not given."""
    kwargs = {}
    if task_name in ACTION_KEYWORD_TASKS:
        if action_id is None and args:
            from deferred_confirmation.django_integration.models import Delivery

            action_id = Delivery.objects.filter(pk=args[0]).values_list("action_id", flat=True).first()
        if action_id is not None:
            kwargs["action_id"] = str(action_id)
    def publish_after_commit() -> None:  # a named function: Django logs a failing robust callback by __qualname__
        _publish(task_name, args, kwargs, queue, countdown)

    transaction.on_commit(publish_after_commit, robust=True)


def celery_app() -> Celery:
    """The app named by CELERY_APP.  Not ``celery.current_app``: that is per thread, and in a thread other
    than the one that created the project's app (a threaded web server's) it is Celery's unconfigured
    fallback app, which would publish to the wrong broker."""
    return import_path(app_settings.CELERY_APP)


def _publish(task_name: str, args: tuple, kwargs: dict, queue: str | None, countdown: float | None) -> None:
    argsrepr, kwargsrepr = task_reprs(args, kwargs)
    options = {"queue": queue, "countdown": countdown, "retry": True, "retry_policy": PUBLISH_RETRY_POLICY,
               "argsrepr": argsrepr, "kwargsrepr": kwargsrepr}
    try:
        app = celery_app()
        task = app.tasks.get(task_name)
        if task is not None:  # honours CELERY_TASK_ALWAYS_EAGER
            task.apply_async(args=args, kwargs=kwargs or None, **options)
        else:
            app.send_task(task_name, args=args, kwargs=kwargs or None, **options)
    except Exception:
        logger.exception("could not enqueue %s%s %s; redrive will retry", task_name, argsrepr, kwargsrepr,
                         extra={"event": "enqueue", "outcome": "failed", "task": task_name,
                                "action_id": kwargs.get("action_id")})


class _Hidden:
    def __repr__(self) -> str:
        return SEALED


SEALED = "<sealed>"
_HIDDEN = _Hidden()
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")


def _id_or_sealed(value: Any) -> Any:
    """``value`` if it is an id, number, bool, None or UUID; else what shows as ``<sealed>``."""
    if value is None or isinstance(value, bool | int | float | uuid.UUID):
        return str(value) if isinstance(value, uuid.UUID) else value
    if isinstance(value, str) and _UUID.fullmatch(value):
        return value
    return _HIDDEN  # a sealed secret, or anything else that is not an id


def task_reprs(args: Any, kwargs: Any) -> tuple[str, str]:
    """``(argsrepr, kwargsrepr)`` of a task call: ids, numbers and uuids shown, anything else ``<sealed>``.

    Celery puts these, not the arguments, in task events (Flower) and in worker logs."""
    shown_args = tuple(_id_or_sealed(value) for value in (args or ()))
    shown_kwargs = {str(key): _id_or_sealed(value) for key, value in dict(kwargs or {}).items()}
    return repr(shown_args), repr(shown_kwargs)


# Task names are part of the public contract (docs/operations.md#tasks-and-queues); workers.tasks registers them.
GENERATE_TOKEN = "confirmation.generate_token"
SEND_NOTIFICATION = "confirmation.send_notification"
APPLY_ACTION = "confirmation.apply_action"
EXPIRE_STALE = "confirmation.expire_stale"
PURGE = "confirmation.purge"
REDRIVE = "confirmation.redrive"

#: Tasks about one delivery: they get the action's id as the ``action_id`` keyword (for Flower).
ACTION_KEYWORD_TASKS = frozenset({GENERATE_TOKEN, SEND_NOTIFICATION})
