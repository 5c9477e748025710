"""Mail backend connections kept open between sends, per thread of a worker process.

Django's ``EmailMessage.send()`` opens a new connection for every message: for SMTP a TCP handshake, the
greeting, EHLO (and STARTTLS and AUTH where configured) and QUIT around each mail, three to six round trips
more than the mail itself, every one of them waiting for the server.  A worker sending a stream of
confirmation mails keeps one backend open instead, as django's mass mailing does within one call.

Why the safeguards:

* a server drops idle connections (RFC 5321 asks it to wait 5 minutes; some wait less): a connection idle
  for longer than ``KEEP_ALIVE`` seconds is closed and a new one opened; an SMTP connection idle for more
  than a second is asked ``NOOP`` first and replaced if it does not answer 250 (a mail is never sent into a
  connection the server already dropped, which would cost a retry); any error during a send closes the
  connection it happened on, so the task's retry starts on a fresh one;
* a prefork pool forks: a connection opened before the fork belongs to the parent and is never reused in a
  child;
* tests and settings reloads change ``EMAIL_*`` or the channel's options: every kept connection is dropped
  (in all threads) when Django's ``setting_changed`` fires.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import smtplib
import threading
import time
from collections.abc import Iterator
from typing import Any

from django.core.mail import get_connection
from django.core.signals import setting_changed

#: Seconds a connection may sit idle and still be reused (the email channel's OPTIONS["KEEP_ALIVE"]).
DEFAULT_KEEP_ALIVE = 30.0
#: An SMTP connection idle longer than this is checked with NOOP before a mail goes into it: under load
#: (a mail every few milliseconds) never, after a quiet spell once.
PROBE_AFTER = 1.0

_generation = 0  # bumped when mail settings change: connections of an older generation are not reused
_idle: dict[int, tuple[Any, int]] = {}  # id -> (connection kept open and idle, the process that opened it)


class _Kept(threading.local):
    def __init__(self) -> None:
        self.pid = os.getpid()
        self.generation = _generation
        self.by_backend: dict[str | None, tuple[Any, float]] = {}


_local = _Kept()


@contextlib.contextmanager
def kept_open(backend: str | None, keep_alive: float = DEFAULT_KEEP_ALIVE) -> Iterator[Any]:
    """An open connection of ``backend`` (a dotted path, None for ``settings.EMAIL_BACKEND``) for one send.

    Kept for the next send when the block ends normally; closed when it raises.  ``keep_alive`` 0 opens and
    closes a connection per send (Django's own behaviour)."""
    connection = _take(backend, keep_alive)
    generation = _generation
    try:
        if keep_alive > 0:
            connection.open()  # send_messages() then leaves it open
        yield connection
    except BaseException:
        _close(connection)
        raise
    if keep_alive <= 0 or generation != _generation:  # not to be kept, or mail settings changed meanwhile
        _close(connection)
        return
    _local.by_backend[backend] = (connection, time.monotonic())
    _idle[id(connection)] = (connection, os.getpid())


def _take(backend: str | None, keep_alive: float) -> Any:
    if _local.pid != os.getpid() or _local.generation != _generation:
        # Forked (the parent's sockets are not this process's to use, nor to close) or settings changed
        # (close_all() closed them): forget them.
        _local.by_backend = {}
        _local.pid, _local.generation = os.getpid(), _generation
    entry = _local.by_backend.pop(backend, None)
    if entry is not None:
        connection, last_used = entry
        _idle.pop(id(connection), None)
        idle = time.monotonic() - last_used
        if idle <= keep_alive and (idle <= PROBE_AFTER or _answers(connection)):
            return connection
        _close(connection)
    return get_connection(backend)


def _answers(connection: Any) -> bool:
    """True if a kept connection still works: SMTP's NOOP answered 250.  Other backends (an ESP's HTTP
    session) look after their own connections."""
    smtp = getattr(connection, "connection", None)
    if not isinstance(smtp, smtplib.SMTP):
        return True
    try:
        return smtp.noop()[0] == 250
    except (smtplib.SMTPException, OSError):
        return False


def _close(connection: Any) -> None:
    _idle.pop(id(connection), None)
    with contextlib.suppress(Exception):  # a dead connection's QUIT fails; it is gone either way
        connection.close()


def close_all() -> None:
    """Close every idle connection this process keeps (at exit, and when mail settings change); one in use
    by a send is closed when that send ends."""
    global _generation
    _generation += 1
    for connection, pid in list(_idle.values()):
        if pid == os.getpid():
            _close(connection)
    _idle.clear()


def _on_setting_changed(setting: str, **kwargs: Any) -> None:
    if setting.startswith("EMAIL_") or setting in {"DEFERRED_CONFIRMATION", "DEFAULT_FROM_EMAIL"}:
        close_all()


setting_changed.connect(_on_setting_changed, dispatch_uid="deferred_confirmation.mailconn")
atexit.register(close_all)
