"""The six tasks (docs/operations.md#tasks-and-queues), each a thin caller of one lifecycle function.

All are idempotent (running one twice has the effect of once), acknowledged late and rejected back to
the queue if their worker dies.  Arguments are ids, generations and a sealed secret: nothing readable in
the broker, and not even the sealed secret in task events or Flower: every publish of these tasks, a
retry's too, carries an ``argsrepr``/``kwargsrepr`` that shows ids only
(:func:`deferred_confirmation.pipeline.dispatch.task_reprs`). The delivery tasks take the action's id as an optional
``action_id`` keyword, so Flower shows which action a task is for; calls without it (messages published by an earlier
version) still work.  Results are ignored; the task-succeeded event's result is a bool or a count.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.db import InterfaceError, OperationalError

from deferred_confirmation.pipeline import dispatch, lifecycle
from deferred_confirmation.pipeline.channels import TransientChannelError
from deferred_confirmation.pipeline.conf import DEFAULTS, app_settings

logger = logging.getLogger("deferred_confirmation.tasks")

#: Database errors worth another try: lost connection, lock timeout, deadlock, serialization failure.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)


def backoff_cap() -> int:
    """RETRY_BACKOFF_MAX in seconds, as it is set now (a value of the wrong type, which the system check
    reports, counts as the default: a worker does not run the checks)."""
    value = app_settings.RETRY_BACKOFF_MAX
    if not isinstance(value, timedelta) or value < timedelta(0):
        value = DEFAULTS["RETRY_BACKOFF_MAX"]
    return int(value.total_seconds())


def backoff(retries: int) -> int:
    """Exponential backoff with full jitter: 2 s, 4 s, 8 s … capped at RETRY_BACKOFF_MAX (default 5 minutes)."""
    return get_exponential_backoff_interval(factor=2, retries=retries, maximum=backoff_cap(), full_jitter=True)


class ConfirmationTask(Task):
    """The base of the six tasks: late acks, rejected back to the queue if the worker dies, no results, database
    errors retried with backoff; every publish (a retry's, beat's, a redrive's) shows ids only in events and Flower.

    The backoff between retries is computed when a retry is scheduled, so it follows the current
    RETRY_BACKOFF_MAX.  (Celery's own ``retry_backoff`` option would read a cap once, when the task is
    registered, so it is left off.)"""

    acks_late = True
    reject_on_worker_lost = True
    ignore_result = True
    autoretry_for = TRANSIENT_DB_ERRORS
    max_retries = 8

    @property
    def retry_backoff_max(self) -> int:
        """The cap of the backoff, in seconds: RETRY_BACKOFF_MAX as it is set now."""
        return backoff_cap()

    def retry(self, args=None, kwargs=None, exc=None, throw=True, eta=None, countdown=None, max_retries=None,
              **options):
        if eta is None and countdown is None:
            countdown = backoff(self.request.retries)
        return super().retry(args, kwargs, exc, throw, eta, countdown, max_retries, **options)

    def apply_async(self, args=None, kwargs=None, task_id=None, producer=None, link=None, link_error=None,
                    shadow=None, **options):
        if options.get("argsrepr") is None or options.get("kwargsrepr") is None:
            argsrepr, kwargsrepr = dispatch.task_reprs(args, kwargs)
            options["argsrepr"] = options.get("argsrepr") or argsrepr
            options["kwargsrepr"] = options.get("kwargsrepr") or kwargsrepr
        return super().apply_async(args, kwargs, task_id, producer, link, link_error, shadow, **options)


COMMON = {"base": ConfirmationTask, "bind": True}


@shared_task(name=dispatch.GENERATE_TOKEN, **COMMON)
def generate_token(self, delivery_id: int, generation: int, action_id: str | None = None) -> bool:
    return lifecycle.generate(delivery_id, generation, action_id=action_id)


@shared_task(name=dispatch.SEND_NOTIFICATION, **COMMON)
def send_notification(self, delivery_id: int, generation: int, sealed_secret: str, action_id: str | None = None
                      ) -> bool:
    try:
        return lifecycle.deliver(delivery_id, generation, sealed_secret)
    except TransientChannelError as exc:
        if self.request.retries >= self.max_retries:
            lifecycle.delivery_failed(delivery_id, generation, f"gave up after {self.request.retries} retries: {exc}")
            return False
        lifecycle.delivery_retrying(delivery_id, generation, str(exc), retry=self.request.retries + 1)
        raise self.retry(exc=exc) from None


@shared_task(name=dispatch.APPLY_ACTION, **COMMON)
def apply_action(self, action_id: str) -> bool:
    return lifecycle.apply(action_id)


@shared_task(name=dispatch.EXPIRE_STALE, **COMMON)
def expire_stale(self) -> int:
    return lifecycle.expire()


@shared_task(name=dispatch.PURGE, **COMMON)
def purge(self) -> int:
    return lifecycle.purge()


@shared_task(name=dispatch.REDRIVE, **COMMON)
def redrive(self) -> int:
    return lifecycle.redrive()
