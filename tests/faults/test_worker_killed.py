"""A real worker (``celery -A deferred_confirmation.workers worker``, prefork) SIGKILLed in the middle of a step, then a
new worker started: every action is still delivered at least once and applied exactly once, and none is left stuck.

The step is held open by the forms of ``tests.faults.kill_forms``: they write a "started" marker and block
until the test releases them.  The test waits until every action is inside the step, kills the worker's
whole process group (main process and pool children: nothing acknowledges, nothing rolls back cleanly),
releases the forms and starts a second worker.  The broker gives the dead worker's unacknowledged tasks
back after the Redis visibility timeout, shortened here to a few seconds (DC_TEST_VISIBILITY_TIMEOUT); the
send lease (SEND_LEASE, DC_TEST_SEND_LEASE) is shorter still, so the redelivered send may claim the delivery.

Runs on PostgreSQL, and on SQLite when the test database is a file (TEST_SQLITE_NAME).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.db import transaction

from deferred_confirmation import workers
from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline.lifecycle.confirming import confirm
from deferred_confirmation.pipeline.states import DeliveryStatus, State
from tests.conftest import link_token
from tests.faults.kill_forms import KillDuringApplyForm, KillDuringSendForm
from tests.testapp.models import Profile
from tests.workers.conftest import purge_queues, stage_change, wait_for
from tests.workers.test_subprocess_worker import CELERY, Process, WorkerProcess, _env, shared_db  # noqa: F401

pytestmark = [pytest.mark.subprocess, pytest.mark.django_db(transaction=True), pytest.mark.timeout(90)]

ACTIONS = 5
VISIBILITY_TIMEOUT = 4  # seconds before Redis hands an unacknowledged task to another worker
SEND_LEASE = 2  # seconds; shorter than the visibility timeout


class KillableWorker(WorkerProcess):
    """A worker subprocess with its own concurrency, sharing a mail directory and environment."""

    def __init__(self, tmp: Path, name: str, env: dict[str, str], mail_dir: Path, concurrency: int):
        self.mail_dir = mail_dir
        self.env = env
        self.hostname = f"dc-kill-{name}-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        Process.__init__(self, [CELERY, "-A", "deferred_confirmation.workers", "worker", "-l", "INFO", "-c",
                                str(concurrency),
                                "--without-mingle", "--without-gossip", "-n", self.hostname],
                         env, tmp / f"worker-{name}.log")

    def kill(self) -> None:
        """SIGKILL to the whole process group: the main process and every pool child at once."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)

    def active(self, name: str) -> int:
        found = (self.inspect(timeout=1.0).active() or {}).get(self.hostname) or []
        return sum(1 for task in found if task.get("name") == name)


def _forget_unacked() -> None:
    """Drop what the broker still holds for dead workers (it would be redelivered into later tests)."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    try:
        client.delete("unacked", "unacked_index", "unacked_mutex")
    finally:
        client.close()


@pytest.fixture
def kill_rig(shared_db, tmp_path):  # noqa: F811
    """``start(name, concurrency)`` starts a worker; every one is stopped (SIGKILL at the latest) after."""
    workers.app.conf.task_always_eager = False
    purge_queues()
    _forget_unacked()
    markers = tmp_path / "markers"
    markers.mkdir()
    mail_dir = tmp_path / "mail"
    mail_dir.mkdir()
    env = _env(mail_dir)
    env.update({"DC_TEST_VISIBILITY_TIMEOUT": str(VISIBILITY_TIMEOUT), "DC_TEST_SEND_LEASE": str(SEND_LEASE),
                "DC_TEST_KILL_DIR": str(markers)})
    started: list[KillableWorker] = []

    class Rig:
        marker_dir = markers

        @staticmethod
        def start(name: str, concurrency: int) -> KillableWorker:
            process = KillableWorker(tmp_path, name, env, mail_dir, concurrency)
            started.append(process)
            process.wait_ready(timeout=30)
            return process

        @staticmethod
        def started_markers(step: str) -> int:
            return len(list(markers.glob(f"started-{step}-*")))

        @staticmethod
        def release() -> None:
            (markers / "release").touch()

        @staticmethod
        def logs() -> str:
            return "".join(f"\n--- {p.hostname} ---\n{p.output()}" for p in started)

    try:
        yield Rig
    finally:
        (markers / "release").touch()  # nothing blocks a warm shutdown
        for process in started:
            process.stop()
        purge_queues()
        _forget_unacked()


def _stage(form_class: type, prefix: str) -> list[tuple[Profile, DeferredAction]]:
    return [stage_change(f"{prefix}-old-{i}@example.org", f"{prefix}-new-{i}@example.org", form_class=form_class)
            for i in range(ACTIONS)]


def test_a_worker_killed_while_sending_every_action_is_still_delivered(kill_rig):
    started_at = time.monotonic()
    first = kill_rig.start("first", concurrency=ACTIONS)
    staged = _stage(KillDuringSendForm, "ksend")
    wait_for(lambda: kill_rig.started_markers("send") == ACTIONS, timeout=20,
             what=f"every send to be in progress{kill_rig.logs()}")
    first.kill()  # every delivery claimed (lease, send_attempts 1), no mail out, no task acknowledged
    assert not any(first.mails_to(f"ksend-new-{i}@example.org") for i in range(ACTIONS))
    assert all(d.status == DeliveryStatus.GENERATED and d.send_attempts == 1
               for d in Delivery.objects.filter(action__in=[a for _p, a in staged]))

    kill_rig.release()
    second = kill_rig.start("second", concurrency=2)
    actions = [action.pk for _profile, action in staged]
    wait_for(lambda: DeferredAction.objects.filter(pk__in=actions, state=State.NOTIFIED).count() == ACTIONS,
             timeout=30, what=f"the redelivered sends{kill_rig.logs()}", interval=0.2)

    mails = [len(second.mails_to(f"ksend-new-{i}@example.org")) for i in range(ACTIONS)]
    assert all(count >= 1 for count in mails), mails  # at least once
    assert mails == [1] * ACTIONS  # killed before the mail went out: the redelivered copy sent the only one
    for delivery in Delivery.objects.filter(action__in=actions):
        assert delivery.status == DeliveryStatus.SENT
        assert delivery.sending_until is None  # the lease is released, nothing is stuck
        assert delivery.send_attempts == 2  # the killed try and the redelivered one
    assert time.monotonic() - started_at < 60


def test_a_worker_killed_while_applying_every_action_is_applied_exactly_once(kill_rig):
    started_at = time.monotonic()
    first = kill_rig.start("first", concurrency=ACTIONS)
    staged = _stage(KillDuringApplyForm, "kapply")
    messages = [wait_for(lambda i=i: first.mails_to(f"kapply-new-{i}@example.org"), timeout=20,
                         what=f"mail {i}{kill_rig.logs()}")[0] for i in range(ACTIONS)]
    actions = [action.pk for _profile, action in staged]
    wait_for(lambda: DeferredAction.objects.filter(pk__in=actions, state=State.NOTIFIED).count() == ACTIONS,
             timeout=20, what="the sends to be recorded")
    with transaction.atomic():  # all applies queued at once, at commit
        for message in messages:
            assert confirm(link_token(message)).ok

    # Every apply task is running; on PostgreSQL each is inside its transaction after writing (marker), on
    # SQLite (one writer at a time) one is, the others wait for the write lock.
    wait_for(lambda: first.active("confirmation.apply_action") == ACTIONS, timeout=20,
             what=f"every apply to be running{kill_rig.logs()}", interval=0.2)
    wait_for(lambda: kill_rig.started_markers("apply") >= 1, timeout=20, what="an apply to have written")
    first.kill()
    for profile, _action in staged:
        profile.refresh_from_db()
        assert (profile.email.startswith("kapply-old-"), profile.nickname) == (True, "")  # all rolled back
    assert DeferredAction.objects.filter(pk__in=actions, state=State.CONFIRMED).count() == ACTIONS

    kill_rig.release()
    kill_rig.start("second", concurrency=2)
    wait_for(lambda: DeferredAction.objects.filter(pk__in=actions, state=State.APPLIED).count() == ACTIONS,
             timeout=30, what=f"the redelivered applies{kill_rig.logs()}", interval=0.2)
    for i, (profile, _action) in enumerate(staged):
        profile.refresh_from_db()
        assert (profile.email, profile.nickname) == (f"kapply-new-{i}@example.org", "+")  # exactly once
    assert time.monotonic() - started_at < 60
