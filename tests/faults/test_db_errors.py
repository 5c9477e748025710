"""Database errors in the middle of an apply (PostgreSQL): the worker's connection killed, a lock timeout, a
serialization failure.  Each hits an apply that has already written part of the change; in every case the
transaction is rolled back (nothing half-written), Celery retries the task (counted with ``task_retry``) and
the change is finally applied exactly once (one "+" in the nickname, one ``change_confirmed``).

A real in-process worker on the real Redis; only test code and database settings inject the faults.
"""

from __future__ import annotations

import threading
import time

import pytest
from celery.signals import task_retry
from django.core import mail
from django.db import connection
from django.db.backends.signals import connection_created

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import DeferredAction
from deferred_confirmation.pipeline import dispatch
from deferred_confirmation.pipeline.states import State
from tests.conftest import link_token
from tests.faults.db_forms import FaultForm
from tests.testapp.models import Profile
from tests.workers import conftest as worker_fixtures
from tests.workers.conftest import requires_postgres, stage_change, wait_for

pytestmark = [pytest.mark.postgres, requires_postgres, pytest.mark.django_db(transaction=True),
              pytest.mark.timeout(60)]

# The worker tests' fixtures, used here too.
clean_queues = worker_fixtures.clean_queues
signal_log = worker_fixtures.signal_log
task_log = worker_fixtures.task_log
worker = worker_fixtures.worker


@pytest.fixture
def retries():
    """The apply_action retries Celery scheduled: a list of (task id, exception class name)."""
    seen: list[tuple[str, str]] = []
    lock = threading.Lock()

    def receiver(sender=None, request=None, reason=None, **kwargs):
        if sender.name == dispatch.APPLY_ACTION:
            with lock:
                seen.append((request.id, type(getattr(reason, "exc", reason)).__name__))

    task_retry.connect(receiver, weak=False)
    yield seen
    task_retry.disconnect(receiver)


@pytest.fixture
def fault_form():
    yield FaultForm
    FaultForm.after_write = None


@pytest.fixture
def new_connections():
    """``new_connections(sql)``: every database connection opened from now on (the worker's, per task) first
    runs ``sql``."""
    receivers = []

    def install(sql: str) -> None:
        def receiver(sender=None, connection=None, **kwargs):
            with connection.cursor() as cursor:
                cursor.execute(sql)
        receivers.append(receiver)
        connection_created.connect(receiver, weak=False)

    yield install
    for receiver in receivers:
        connection_created.disconnect(receiver)


def _stage_and_mail(name: str, task_log):
    """A deferred email change with FaultForm, its mail sent by the worker: (profile, action, token)."""
    profile, action = stage_change(f"{name}-old@example.org", f"{name}-new@example.org", form_class=FaultForm)
    wait_for(lambda: [m for m in mail.outbox if m.to == [f"{name}-new@example.org"]], what="the mail")
    [message] = [m for m in mail.outbox if m.to == [f"{name}-new@example.org"]]
    return profile, action, link_token(message)


def _assert_applied_once(profile, action, name, signal_log, retries, task_log, error):
    wait_for(lambda: True in task_log.returned(dispatch.APPLY_ACTION), timeout=30, what="the apply to succeed")
    wait_for(lambda: signal_log.count("change_confirmed", action.pk) == 1, what="change_confirmed")
    profile.refresh_from_db()
    assert (profile.email, profile.nickname) == (f"{name}-new@example.org", "+")  # one write survived
    action.refresh_from_db()
    assert action.state == State.APPLIED
    assert retries and {kind for _id, kind in retries} == {error}
    assert len({task_id for task_id, _kind in retries}) == 1  # retries of the one apply_action task
    time.sleep(0.3)  # nothing further arrives
    assert signal_log.count("change_confirmed") == 1
    assert task_log.returned(dispatch.APPLY_ACTION).count(True) == 1
    print(f"{name}: {len(retries)} retries ({retries[0][1]}), runs {task_log.returned(dispatch.APPLY_ACTION)}")
    return len(retries)


def _sql(query: str, *params):
    with connection.cursor() as cursor:
        cursor.execute(query, params)
        return cursor.fetchall() if cursor.description else None


def test_apply_connection_killed_mid_apply_is_rolled_back_retried_and_applied_once(
        worker, task_log, signal_log, retries, fault_form):
    profile, action, token = _stage_and_mail("killed", task_log)
    started, release = threading.Event(), threading.Event()
    backend = []

    def block_first_attempt(form):
        if not backend:
            backend.append(_sql("SELECT pg_backend_pid()")[0][0])
            started.set()
            release.wait(20)

    FaultForm.after_write = block_first_attempt
    assert pipeline.confirm(token).status == "confirmed"
    assert started.wait(20), "the apply never started"
    # The apply has written the "+" and the email and waits: its backend is killed mid-transaction.
    assert _sql("SELECT pg_terminate_backend(%s)", backend[0]) == [(True,)]
    release.set()

    count = _assert_applied_once(profile, action, "killed", signal_log, retries, task_log, "OperationalError")
    assert count == 1


def test_lock_timeout_mid_apply_is_rolled_back_retried_and_applied_once(
        worker, task_log, signal_log, retries, fault_form, new_connections):
    profile, action, token = _stage_and_mail("locktimeout", task_log)
    blocker = Profile.objects.create(email="blocker@example.org")

    def touch_blocker(form):  # after the apply's first writes: a row another transaction holds
        Profile.objects.filter(pk=blocker.pk).update(nickname="touched")

    FaultForm.after_write = touch_blocker
    new_connections("SET lock_timeout = '200ms'")
    release = threading.Event()
    holding = threading.Event()

    def hold_blocker():
        from django.db import connection as own
        from django.db import transaction
        try:
            with transaction.atomic():
                Profile.objects.select_for_update().get(pk=blocker.pk)
                holding.set()
                release.wait(30)
        finally:
            own.close()

    holder = threading.Thread(target=hold_blocker)
    holder.start()
    try:
        assert holding.wait(10)
        assert pipeline.confirm(token).status == "confirmed"
        wait_for(lambda: len(retries) >= 2, timeout=30, what="two retries on the lock timeout")
    finally:
        release.set()
        holder.join(10)

    count = _assert_applied_once(profile, action, "locktimeout", signal_log, retries, task_log, "OperationalError")
    assert count >= 2
    assert Profile.objects.get(pk=blocker.pk).nickname == "touched"


def test_serialization_failure_mid_apply_is_rolled_back_retried_and_applied_once(
        worker, task_log, signal_log, retries, fault_form, new_connections):
    profile, action, token = _stage_and_mail("serial", task_log)
    other = Profile.objects.create(email="other@example.org")
    started, go = threading.Event(), threading.Event()
    attempts = []

    def conflict_on_first_attempt(form):
        attempts.append(_sql("SHOW transaction_isolation")[0][0])
        if len(attempts) == 1:
            started.set()
            go.wait(20)  # meanwhile the test commits a change to the row this transaction updates next
        Profile.objects.filter(pk=other.pk).update(nickname=f"apply-{len(attempts)}")

    FaultForm.after_write = conflict_on_first_attempt
    new_connections("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE")
    assert pipeline.confirm(token).status == "confirmed"
    assert started.wait(20), "the apply never started"
    Profile.objects.filter(pk=other.pk).update(nickname="concurrent")  # autocommit: committed now
    go.set()

    count = _assert_applied_once(profile, action, "serial", signal_log, retries, task_log, "OperationalError")
    assert count == 1
    assert attempts == ["serializable", "serializable"]
    assert Profile.objects.get(pk=other.pk).nickname == "apply-2"
    assert DeferredAction.objects.get(pk=action.pk).applied_at is not None
