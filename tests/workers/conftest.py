"""Fixtures of the worker tests: queues emptied around real workers, a scripted SMTP server on loopback,
a log of the public signals, and helpers to stage a change and to wait (always with a time limit)."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from celery.signals import task_postrun, task_prerun
from django.conf import settings
from django.db import OperationalError

from deferred_confirmation import workers
from deferred_confirmation.django_integration import signals
from tests.testapp.models import Profile
from tests.workers.forms import CountingEmailForm

POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
requires_postgres = pytest.mark.skipif(not POSTGRES, reason="needs TEST_DATABASE=postgres")


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "the condition",
             interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something true (returned) or ``timeout`` passes (AssertionError).

    On SQLite's shared in-memory test database a read while a worker thread writes fails with "database
    table is locked" (shared-cache locks do not wait); that counts as "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except OperationalError:
            if POSTGRES:
                raise
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def purge_queues() -> int:
    """Drop every message waiting in the app's queues (a lost message, or leftovers of another test)."""
    return workers.app.control.purge()


@contextmanager
def messages_lost():
    """Within: tasks are not run in place but published, and then lost (as if the broker dropped them)."""
    conf = workers.app.conf
    eager = conf.task_always_eager
    conf.task_always_eager = False
    try:
        yield
    finally:
        purge_queues()
        conf.task_always_eager = eager


@pytest.fixture
def clean_queues():
    purge_queues()
    yield
    purge_queues()


@pytest.fixture
def worker(clean_queues, celery_worker_inprocess):
    """The shared in-process worker, started on empty queues."""
    return celery_worker_inprocess


@pytest.fixture
def confirmation_settings(settings):
    """``confirmation_settings(KEY=value)`` overrides keys of DEFERRED_CONFIRMATION for one test."""

    def update(**values: Any) -> None:
        settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, **values}

    return update


@pytest.fixture
def fast_retries(confirmation_settings):
    """Backoff between channel retries capped at 1 s (the documented RETRY_BACKOFF_MAX setting)."""
    confirmation_settings(RETRY_BACKOFF_MAX=timedelta(seconds=1))


def stage_change(old: str, new: str, form_class: type = CountingEmailForm, **save_kwargs: Any):
    """A profile with email ``old`` and a saved (deferred) change of it to ``new``: (profile, action)."""
    profile = Profile.objects.create(email=old)
    form = form_class({"email": new}, instance=profile)
    assert form.is_valid(), form.errors
    return profile, form.save(**save_kwargs)


# --- what the tasks did -------------------------------------------------------------------------------
class TaskLog:
    """Every task run in this process (eager or in an in-process worker's threads): name, args, id, result.

    Waiting on it instead of polling the database keeps the test's reads out of a worker's transactions
    (SQLite's shared in-memory database has table locks that do not wait)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple, str]] = []
        self.results: list[tuple[str, tuple, Any]] = []
        self._lock = threading.Lock()

    def prerun(self, sender=None, task_id=None, task=None, args=None, **kwargs) -> None:
        with self._lock:
            self.calls.append((task.name, tuple(args), task_id))

    def postrun(self, sender=None, task_id=None, task=None, args=None, retval=None, **kwargs) -> None:
        with self._lock:
            self.results.append((task.name, tuple(args), retval))

    def args_of(self, name: str) -> list[tuple]:
        with self._lock:
            return [args for n, args, _id in self.calls if n == name]

    def messages_of(self, name: str, queue: str) -> list[tuple]:
        """The runs of ``name`` as messages to send again: (name, args, queue, task id)."""
        with self._lock:
            return [(n, args, queue, task_id) for n, args, task_id in self.calls if n == name]

    def returned(self, name: str) -> list[Any]:
        """Return values of finished runs of ``name`` (a retry's is its Retry exception)."""
        with self._lock:
            return [retval for n, _args, retval in self.results if n == name]


@pytest.fixture
def task_log():
    log = TaskLog()
    task_prerun.connect(log.prerun, weak=False)
    task_postrun.connect(log.postrun, weak=False)
    yield log
    task_prerun.disconnect(log.prerun)
    task_postrun.disconnect(log.postrun)


# --- signals ------------------------------------------------------------------------------------------
class SignalLog:
    NAMES = ("confirmation_required", "change_confirmed", "confirmation_failed", "action_expired")

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._receivers = {}

    def connect(self) -> None:
        for name in self.NAMES:
            def receiver(sender, instance, _name=name, **kwargs):
                with self._lock:
                    self.events.append((_name, instance.pk))
            self._receivers[name] = receiver
            getattr(signals, name).connect(receiver, weak=False, dispatch_uid=f"tests.workers.{name}")

    def disconnect(self) -> None:
        for name in self._receivers:
            getattr(signals, name).disconnect(dispatch_uid=f"tests.workers.{name}")

    def count(self, name: str, pk: Any = None) -> int:
        with self._lock:
            return sum(1 for n, p in self.events if n == name and (pk is None or p == pk))


@pytest.fixture
def signal_log():
    log = SignalLog()
    log.connect()
    yield log
    log.disconnect()


# --- a real SMTP server on loopback --------------------------------------------------------------------
class ScriptedSMTPHandler:
    """aiosmtpd handler answering each message attempt from ``script`` at ``stage`` ("rcpt" or "data"), then
    with ``then``; a reply starting with 250 accepts.  Accepted messages are kept, as text, in ``accepted``."""

    def __init__(self, stage: str, script: list[str], then: str, close_after_message: bool = False):
        assert stage in ("rcpt", "data")
        self.stage, self.script, self.then = stage, list(script), then
        self.close_after_message = close_after_message
        self.sessions: set[tuple] = set()  # the client address and port of every connection that reached RCPT
        self.attempts = 0
        self.accepted: list[str] = []
        self.peers: list[tuple] = []  # the client address and port of each accepted message's connection
        self._lock = threading.Lock()

    def _next_reply(self) -> str:
        with self._lock:
            self.attempts += 1
            return self.script.pop(0) if self.script else self.then

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.sessions.add(tuple(session.peer))
        if self.stage == "rcpt":
            reply = self._next_reply()
            if not reply.startswith("250"):
                return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if self.stage == "data":
            reply = self._next_reply()
            if not reply.startswith("250"):
                return reply
        content = envelope.content
        self.peers.append(tuple(session.peer))
        self.accepted.append(content.decode("utf-8", "replace") if isinstance(content, bytes) else content)
        if self.close_after_message:  # a server's per-connection message limit: gone right after the reply
            asyncio.get_running_loop().call_soon(server.transport.close)  # after the reply is written
        return "250 Message accepted for delivery"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp_server(settings):
    """``smtp_server(stage, script, then, idle_timeout, close_after_message)`` starts an SMTP server on 127.0.0.1
    and points Django's SMTP backend at it; returns its handler.  ``idle_timeout``: seconds after which the
    server drops a connection that sends no command (aiosmtpd's default: 300); ``close_after_message``: it
    closes each connection right after accepting a message."""
    controllers = []

    def start(stage: str = "data", script: tuple[str, ...] = (), then: str = "250 OK",
              idle_timeout: float | None = None, close_after_message: bool = False) -> ScriptedSMTPHandler:
        handler = ScriptedSMTPHandler(stage, list(script), then, close_after_message)
        port = free_port()
        smtp_options = {"timeout": idle_timeout} if idle_timeout is not None else {}
        controller = Controller(handler, hostname="127.0.0.1", port=port, **smtp_options)
        controller.start()
        controllers.append(controller)
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST = "127.0.0.1"
        settings.EMAIL_PORT = port
        settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
        settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
        settings.EMAIL_TIMEOUT = 5
        return handler

    yield start
    for controller in controllers:
        controller.stop()
