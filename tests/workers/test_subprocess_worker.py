"""A real worker process (``celery -A deferred_confirmation.workers worker``, prefork, 2 children) sharing the test
database: the mail it writes is confirmed over HTTP and the same process applies the change.  Also: what the running
worker reports over remote control, and beat (``celery -A deferred_confirmation.workers beat -S django``) driving a
sweep.

The tests that share the database run on PostgreSQL, and on SQLite when the test database is a file
(TEST_SQLITE_NAME); the default in-memory SQLite database cannot be opened by another process.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from deferred_confirmation import workers
from deferred_confirmation.django_integration.models import DeferredAction
from deferred_confirmation.pipeline.states import State
from tests.conftest import link_token
from tests.testapp.models import Profile
from tests.workers.conftest import POSTGRES, purge_queues, stage_change, wait_for
from tests.workers.test_app_config import TASK_NAMES

pytestmark = pytest.mark.subprocess

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).parent / "celery")
MAIL_SEPARATOR = "\n" + "-" * 79 + "\n"  # between messages in a filebased EmailBackend file


class Process:
    """A command started in its own process group, its output in a log file; stop() always ends it."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT):
        self.log = log
        self._log_file = log.open("wb")
        self.popen = subprocess.Popen(args, cwd=cwd, env=env, stdout=self._log_file, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)

    def output(self, tail: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-tail:]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        try:
            if self.alive():
                self.popen.terminate()  # warm shutdown
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.popen.wait(timeout=15)
            with contextlib.suppress(ProcessLookupError, PermissionError):  # prefork children, anything left
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(timeout=10)
        finally:
            self._log_file.close()


def _shared_db_name() -> str | None:
    """The test database's name, if another process can open it."""
    name = str(settings.DATABASES["default"]["NAME"])
    if not POSTGRES and (name == ":memory:" or "mode=memory" in name):
        return None
    return name


@pytest.fixture
def shared_db():
    if _shared_db_name() is None:
        pytest.skip("the SQLite test database is in memory; set TEST_SQLITE_NAME to a file to share it")


def _env(mail_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])),
        "DC_TEST_SHARED_DB_NAME": _shared_db_name() or "",
        "DC_TEST_EMAIL_FILE_PATH": str(mail_dir),
        "PYTHONUNBUFFERED": "1",
    })
    return env


class WorkerProcess(Process):
    def __init__(self, tmp: Path, extra_env: dict[str, str] | None = None):
        self.mail_dir = tmp / "mail"
        self.mail_dir.mkdir()
        self.env = {**_env(self.mail_dir), **(extra_env or {})}
        self.hostname = f"dc-tests-{uuid.uuid4().hex[:8]}@{socket.gethostname()}"
        super().__init__([CELERY, "-A", "deferred_confirmation.workers", "worker", "-l", "INFO", "-c", "2",
                          "--without-mingle",
                          "--without-gossip", "-n", self.hostname], self.env, tmp / "worker.log")

    def inspect(self, timeout: float = 5.0):
        return workers.app.control.inspect(destination=[self.hostname], timeout=timeout)

    def wait_ready(self, timeout: float = 60.0) -> None:
        def ready():
            assert self.alive(), f"the worker exited:\n{self.output()}"
            return (self.inspect(timeout=1.0).ping() or {}).get(self.hostname)

        try:
            wait_for(ready, timeout=timeout, what="the worker to answer a ping", interval=0.2)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.output()}") from None

    def mails_to(self, address: str) -> list[str]:
        found = []
        for path in sorted(self.mail_dir.iterdir()):
            for message in path.read_text(errors="replace").split(MAIL_SEPARATOR):
                if f"\nTo: {address}\n" in f"\n{message}":
                    found.append(message)
        return found


@contextmanager
def running_worker(tmp: Path, extra_env: dict[str, str] | None = None) -> Iterator[WorkerProcess]:
    """A ``celery worker`` subprocess, answering pings, on empty queues; stopped and the queues emptied after."""
    workers.app.conf.task_always_eager = False
    purge_queues()
    process = WorkerProcess(tmp, extra_env)
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
        purge_queues()


@pytest.fixture(scope="module")
def worker_process(django_db_setup, tmp_path_factory):
    with running_worker(tmp_path_factory.mktemp("worker")) as process:
        yield process


@pytest.mark.django_db(transaction=True)
def test_a_change_is_mailed_confirmed_over_http_and_applied_by_the_worker_process(shared_db, worker_process,
                                                                                  client):
    profile, action = stage_change("proc-old@example.org", "proc-new@example.org")
    assert Profile.objects.get(pk=profile.pk).email == "proc-old@example.org"

    [message] = wait_for(lambda: worker_process.mails_to("proc-new@example.org"), timeout=30,
                         what=f"the worker to write the mail\n{worker_process.output()}")
    assert str(action.pk) in message  # X-Deferred-Action header
    wait_for(lambda: DeferredAction.objects.get(pk=action.pk).state == State.NOTIFIED, timeout=30,
             what="the worker to record the send")
    assert Profile.objects.get(pk=profile.pk).email == "proc-old@example.org"

    url = reverse("confirmation:link", args=[link_token(message)])
    assert client.get(url).status_code == 200  # a link scanner's GET confirms nothing
    response = client.post(url)
    assert response.status_code == 302
    assert response["Location"] == reverse("confirmation:status", args=[action.pk])

    wait_for(lambda: DeferredAction.objects.get(pk=action.pk).state == State.APPLIED, timeout=30,
             what=f"the worker to apply the change\n{worker_process.output()}")
    profile.refresh_from_db()
    assert (profile.email, profile.nickname) == ("proc-new@example.org", "+")
    status = client.get(response["Location"], HTTP_ACCEPT="application/json")
    assert status.json()["state"] == "applied"
    assert client.post(url).status_code == 409  # used


def test_the_worker_process_reports_contract_tasks_queues_and_prefetch(worker_process):
    inspect = worker_process.inspect()
    registered = set(inspect.registered()[worker_process.hostname])
    assert registered >= TASK_NAMES
    queues = {queue["name"] for queue in inspect.active_queues()[worker_process.hostname]}
    assert {"confirmation.email", "confirmation.apply", "confirmation.maintenance"} <= queues
    conf = inspect.conf()[worker_process.hostname]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True


@pytest.mark.django_db(transaction=True)
def test_beat_from_the_database_schedule_drives_expire_in_the_worker(shared_db, worker_process, tmp_path):
    call_command("setup_confirmation_schedule", verbosity=0)  # earlier transactional tests emptied the tables
    _profile, action = stage_change("beat-old@example.org", "beat-new@example.org")
    wait_for(lambda: DeferredAction.objects.get(pk=action.pk).state == State.NOTIFIED, timeout=30,
             what="the mail to go out")
    DeferredAction.objects.filter(pk=action.pk).update(valid_until=timezone.now() - timedelta(seconds=1))
    # Beat runs an interval task when its interval has passed since last_run_at: make only expire due.
    PeriodicTask.objects.filter(task__startswith="confirmation.").update(last_run_at=timezone.now())
    PeriodicTask.objects.filter(task="confirmation.expire_stale").update(
        last_run_at=timezone.now() - timedelta(minutes=2))

    beat = Process([CELERY, "-A", "deferred_confirmation.workers", "beat", "-S", "django", "-l", "INFO",
                    "--max-interval", "1"],
                   worker_process.env, tmp_path / "beat.log")
    try:
        wait_for(lambda: DeferredAction.objects.get(pk=action.pk).state == State.EXPIRED, timeout=45,
                 what="beat to send expire_stale and the worker to run it", interval=0.2)
        assert "confirmation.expire_stale" in beat.output(20000)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n--- beat ---\n{beat.output()}\n--- worker ---\n{worker_process.output()}"
                             ) from None
    finally:
        beat.stop()
