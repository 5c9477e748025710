"""The Celery app as a worker sees it: the six task names (docs/operations.md#tasks-and-queues), late acks,
prefetch 1, queues, routes."""

from datetime import timedelta

import pytest
from celery.signals import task_retry
from django.db import InterfaceError, OperationalError

from deferred_confirmation import workers
from deferred_confirmation.pipeline import dispatch
from deferred_confirmation.workers.tasks import ConfirmationTask

TASK_NAMES = {
    "confirmation.generate_token",
    "confirmation.send_notification",
    "confirmation.apply_action",
    "confirmation.expire_stale",
    "confirmation.purge",
    "confirmation.redrive",
}


def test_the_six_contract_task_names_are_registered():
    assert {dispatch.GENERATE_TOKEN, dispatch.SEND_NOTIFICATION, dispatch.APPLY_ACTION, dispatch.EXPIRE_STALE,
            dispatch.PURGE, dispatch.REDRIVE} == TASK_NAMES
    assert set(workers.app.tasks) >= TASK_NAMES


@pytest.mark.parametrize("name", sorted(TASK_NAMES))
def test_tasks_ack_late_and_go_back_to_the_queue_if_their_worker_dies(name):
    task = workers.app.tasks[name]
    assert task.acks_late is True
    assert task.reject_on_worker_lost is True
    assert task.ignore_result is True  # nothing (not even a sealed secret) lands in a result backend


def test_app_defaults_prefetch_one_json_only():
    conf = workers.app.conf
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.task_serializer == "json"
    assert list(conf.accept_content) == ["json"]


def test_one_queue_per_channel_plus_apply_and_maintenance():
    names = {queue.name for queue in workers.app.conf.task_queues}
    assert {"confirmation.email", "confirmation.apply", "confirmation.maintenance"} <= names


@pytest.mark.parametrize(("name", "queue"), [
    ("confirmation.apply_action", "confirmation.apply"),
    ("confirmation.expire_stale", "confirmation.maintenance"),
    ("confirmation.purge", "confirmation.maintenance"),
    ("confirmation.redrive", "confirmation.maintenance"),
])
def test_routes(name, queue):
    assert workers.app.amqp.router.route({}, name)["queue"].name == queue


def test_retry_backoff_is_capped_by_the_retry_backoff_max_setting(settings):
    from deferred_confirmation.workers.tasks import backoff

    assert max(backoff(10) for _ in range(50)) <= 300  # default cap: 5 minutes
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "RETRY_BACKOFF_MAX": timedelta(seconds=3)}
    assert {backoff(10) for _ in range(200)} <= {0, 1, 2, 3}
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "RETRY_BACKOFF_MAX": timedelta(0)}
    assert backoff(5) == 0


@pytest.mark.parametrize(("value", "message"), [
    (30, "RETRY_BACKOFF_MAX must be a datetime.timedelta."),
    (timedelta(seconds=-1), "RETRY_BACKOFF_MAX must not be negative."),
])
def test_retry_backoff_max_is_checked(settings, value, message):
    from deferred_confirmation.django_integration.checks import check_settings

    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "RETRY_BACKOFF_MAX": value}
    errors = check_settings()
    assert [(e.id, e.msg) for e in errors] == [("confirmation.E004", message)]


@workers.app.task(base=ConfirmationTask, bind=True, name="tests.workers.database_away")
def database_away(self) -> None:
    """A task whose database is always away: retried with backoff until its retries run out."""
    raise OperationalError("server closed the connection unexpectedly")


def test_a_changed_retry_backoff_max_reaches_the_retry_countdown(settings):
    def retries_of(retries: int) -> list[float]:
        """The countdowns the real Celery autoretry path schedules, from retry ``retries`` on."""
        found = []

        def record(sender=None, reason=None, **kwargs):
            found.append(reason.when)

        task_retry.connect(record, sender=database_away, weak=False)
        try:
            database_away.apply(retries=retries)
        finally:
            task_retry.disconnect(record, sender=database_away)
        assert len(found) == database_away.max_retries - retries  # then it gives up
        return found

    assert database_away.retry_backoff_max == 300
    assert max(retries_of(5)) <= 300
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "RETRY_BACKOFF_MAX": timedelta(seconds=2)}
    assert database_away.retry_backoff_max == 2
    assert set(retries_of(3)) <= {0, 1, 2}
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "RETRY_BACKOFF_MAX": timedelta(0)}
    assert set(retries_of(0)) == {0}


@pytest.mark.parametrize("name", sorted(TASK_NAMES))
def test_the_tasks_share_the_confirmation_task_base(name):
    task = workers.app.tasks[name]
    assert isinstance(task, ConfirmationTask)
    assert task.autoretry_for == (OperationalError, InterfaceError) and task.max_retries == 8
