"""Mail backend connections kept open between sends, per thread of a worker process.

Django's ``EmailMessage.send()`` opens a new connection for every message: for SMTP a TCP handshake, the
greeting, EHLO (and STARTTLS and AUTH where configured) and QUIT around each mail, three to six round trips
more than the mail itself, every one of them waiting for the server.  A worker sending a stream of
confirmation mails keeps one backend open instead, as django's mass mailing does within one call.

Why the safeguards:

* a server drops connections, idle ones (RFC 5321 asks it to wait 5 minutes; some wait less) or after so many
  messages: a kept SMTP connection is asked ``NOOP`` before each mail (one round trip, against the four of a
  new connection) and replaced if it does not answer 250 within a few seconds, so a dropped connection costs
  no mail and no retry; one idle for longer than ``KEEP_ALIVE`` seconds is not reused at all; any error
  during a send closes the connection it happened on, so the task's retry starts on a fresh one;
* a prefork pool forks: a connection opened before the fork belongs to the parent and is never reused, nor
  closed, in a child;
* tests change settings (``EMAIL_*``, an ESP's credentials, the channel's options): every kept connection is
  dropped when Django's ``setting_changed`` fires, in every thread;
* a thread that ends (a request thread sending eagerly, a greenlet) takes its connections with it: nothing
  else holds them;
* backends with nothing to keep (console, file, locmem, dummy) get a new instance per mail, as before: the
  file backend writes one file per instance.
"""

from __future__ import annotations

import contextlib
import os
import smtplib
import threading
import time
import weakref
from collections.abc import Iterator
from typing import Any

from django.core.mail import get_connection
from django.core.mail.backends import console, dummy, locmem
from django.core.signals import setting_changed

#: Seconds a connection may sit idle and still be reused (the email channel's OPTIONS["KEEP_ALIVE"]).
DEFAULT_KEEP_ALIVE = 30.0
#: Seconds the NOOP check of a kept SMTP connection may take (a connection a firewall dropped silently
#: would otherwise hang the worker until TCP gives up).
PROBE_TIMEOUT = 5.0
#: Django's backends that hold no connection: nothing to keep (the file backend names one file per instance).
NOTHING_TO_KEEP = (console.EmailBackend, locmem.EmailBackend, dummy.EmailBackend)

_lock = threading.Lock()  # guards _generation, _idle and the handing out of kept connections
_generation = 0  # bumped when settings change: connections of an older generation are not reused
_idle: weakref.WeakSet = weakref.WeakSet()  # kept connections not in use, for close_all()


class _Kept(threading.local):
    def __init__(self) -> None:
        self.generation = _generation
        self.by_backend: dict[str | None, tuple[Any, float]] = {}


_local = _Kept()


@contextlib.contextmanager
def kept_open(backend: str | None, keep_alive: float = DEFAULT_KEEP_ALIVE) -> Iterator[Any]:
    """An open connection of ``backend`` (a dotted path, None for ``settings.EMAIL_BACKEND``) for one send.

    Kept for the next send when the block ends normally; closed when it raises.  ``keep_alive`` 0 opens and
    closes a connection per send (Django's own behaviour)."""
    connection, generation = _take(backend, keep_alive)
    keep = keep_alive > 0 and not isinstance(connection, NOTHING_TO_KEEP)
    try:
        if keep:
            connection.open()  # send_messages() then leaves it open
        yield connection
    except BaseException:
        _close(connection)
        raise
    with _lock:
        if keep and generation == _generation:
            _local.by_backend[backend] = (connection, time.monotonic())
            _idle.add(connection)
            return
    _close(connection)  # not to be kept, or settings changed while it was in use


def _take(backend: str | None, keep_alive: float) -> tuple[Any, int]:
    """A kept connection that still works, or a new one; and the settings' generation it belongs to."""
    with _lock:
        if _local.generation != _generation:  # settings changed: close_all() closed the idle ones
            _local.by_backend = {}
            _local.generation = _generation
        generation = _generation
        entry = _local.by_backend.pop(backend, None)
        if entry is not None:
            _idle.discard(entry[0])
    if entry is not None:
        connection, last_used = entry
        if time.monotonic() - last_used <= keep_alive and _answers(connection):
            return connection, generation
        _close(connection)
    return get_connection(backend), generation


def _answers(connection: Any) -> bool:
    """True if a kept connection still works: SMTP's NOOP answered 250 within PROBE_TIMEOUT.  Other
    backends (an ESP's HTTP session) look after their own connections."""
    smtp = getattr(connection, "connection", None)
    if not isinstance(smtp, smtplib.SMTP):
        return True
    sock = getattr(smtp, "sock", None)
    if sock is None:
        return False
    timeout = sock.gettimeout()
    try:
        sock.settimeout(PROBE_TIMEOUT if timeout is None else min(timeout, PROBE_TIMEOUT))
        answered = smtp.noop()[0] == 250
        sock.settimeout(timeout)
        return answered
    except (smtplib.SMTPException, OSError):
        return False


def _close(connection: Any) -> None:
    with _lock:
        _idle.discard(connection)
    with contextlib.suppress(Exception):  # a dead connection's QUIT fails; it is gone either way
        connection.close()


def close_all() -> None:
    """Close the idle connections this process keeps and stop reusing any (settings changed, or exit); one
    in use by a send is closed when that send ends."""
    global _generation
    with _lock:
        _generation += 1
        idle = list(_idle)
        _idle.clear()
    for connection in idle:
        with contextlib.suppress(Exception):
            connection.close()


def _on_setting_changed(**kwargs: Any) -> None:
    # Any setting: the backends read theirs (EMAIL_*, an ESP's credentials) when made.  Only tests change
    # settings at run time, so closing on every change costs nothing in production.
    close_all()


def _forget_the_parents() -> None:
    """In a forked child (a prefork pool process): the parent's sockets are not this process's to use, nor
    to close, and a lock another of its threads held at the fork would never be released here."""
    global _lock, _idle
    _lock = threading.Lock()
    _idle = weakref.WeakSet()
    _local.by_backend = {}  # the forking thread's, the only thread a child has


setting_changed.connect(_on_setting_changed, dispatch_uid="deferred_confirmation.mailconn")
os.register_at_fork(after_in_child=_forget_the_parents)
