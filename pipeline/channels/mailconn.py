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

Which backend: the way the running Django chooses one.  Django 6.1 replaced ``EMAIL_BACKEND`` and
``get_connection()`` with the ``MAILERS`` setting and ``django.core.mail.mailers``; where a project sets
``MAILERS``, a connection is ``mailers[alias]`` (the email channel's ``OPTIONS["MAILER"]``, else "default") and a
backend named by its dotted path cannot be had at all.  Where it does not (any Django before 6.1, or 6.1 still on
the ``EMAIL_*`` settings), a backend path (the channel's ``OPTIONS["EMAIL_BACKEND"]``) or else the project's
default mail backend, which Django 6.1 makes from its ``EMAIL_*`` settings as ``mailers.default``; nothing here
reads a deprecated setting or calls a deprecated function on its own.
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

from django.conf import settings
from django.core.mail.backends import console, dummy, locmem
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

try:  # Django 6.1+
    from django.core.mail import mailers
except ImportError:  # Django 5.2 and 6.0: EMAIL_BACKEND
    mailers = None

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
        self.by_backend: dict[tuple[str | None, str | None], tuple[Any, float]] = {}


_local = _Kept()


class MailerUnavailable(LookupError):
    """The mail option names a mailer or a backend path that the running Django's mail settings cannot give."""


def has_mailers() -> bool:
    """True where the running Django has ``MAILERS`` (6.1+) and the project sets it."""
    return mailers is not None and hasattr(settings, "MAILERS")


def mailer_problem(mailer: object = None, backend: object = None) -> str | None:
    """Why the email channel's ``OPTIONS["MAILER"]`` / ``OPTIONS["EMAIL_BACKEND"]`` cannot work on the running
    Django with the project's mail settings, or None when they can."""
    if mailer is not None and backend is not None:
        return "set OPTIONS['MAILER'] or OPTIONS['EMAIL_BACKEND'], not both."
    if mailer is not None and not (isinstance(mailer, str) and mailer):
        return "OPTIONS['MAILER'] must be the name of an entry in settings.MAILERS."
    if backend is not None and not (isinstance(backend, str) and backend):
        return "OPTIONS['EMAIL_BACKEND'] must be the dotted path of a mail backend."
    if has_mailers():
        if backend is not None:
            return (f"OPTIONS['EMAIL_BACKEND'] {backend!r} cannot be used with settings.MAILERS (Django 6.1+ has "
                    "no backend by path once MAILERS is set): name an entry of MAILERS in OPTIONS['MAILER'].")
        alias = mailer or "default"
        if alias not in settings.MAILERS:
            where = f"OPTIONS['MAILER'] {mailer!r}" if mailer else "The default mailer 'default'"
            return f"{where} is not in settings.MAILERS (entries: {', '.join(map(repr, settings.MAILERS)) or 'none'})."
        return None
    if mailer is not None:
        if mailers is None:
            return "OPTIONS['MAILER'] needs Django 6.1 or newer (settings.MAILERS); use OPTIONS['EMAIL_BACKEND']."
        return "OPTIONS['MAILER'] names an entry of settings.MAILERS, which is not set."
    return None


def new_connection(mailer: str | None = None, backend: str | None = None) -> Any:
    """A new, unopened connection: ``mailers[mailer or "default"]`` where the project sets MAILERS (Django 6.1+);
    otherwise an instance of ``backend`` (a dotted path) or of the project's default mail backend."""
    problem = mailer_problem(mailer, backend)
    if problem:
        raise MailerUnavailable(problem)
    if has_mailers():
        return mailers[mailer or "default"]
    if backend is None:
        # Django 6.1 without MAILERS makes its default from the EMAIL_* settings; reading EMAIL_BACKEND
        # ourselves would be a deprecated use of that setting.  Before 6.1, EMAIL_BACKEND is the default.
        return mailers.default if mailers is not None else import_string(settings.EMAIL_BACKEND)()
    # What get_connection(backend) does.  On Django 6.1 this option is itself deprecated (a backend made by
    # path rather than a MAILERS entry): Django's own warning says so, and confirmation.W004 at start-up.
    return import_string(backend)()


def backend_path(mailer: str | None = None, backend: str | None = None) -> str:
    """The dotted path of the backend class :func:`new_connection` would make for these options ("" when the
    options cannot work, see :func:`mailer_problem`), without reading a setting Django deprecates."""
    if mailer_problem(mailer, backend):
        return ""
    if has_mailers():
        return settings.MAILERS[mailer or "default"].get("BACKEND", "django.core.mail.backends.smtp.EmailBackend")
    if backend is not None:
        return backend
    if mailers is None:
        return settings.EMAIL_BACKEND
    # Django 6.1 without MAILERS: its default mailer, made from the EMAIL_* settings (not connected: making a
    # backend opens nothing).
    default = type(mailers.default)
    return f"{default.__module__}.{default.__qualname__}"


@contextlib.contextmanager
def kept_open(backend: str | None = None, keep_alive: float = DEFAULT_KEEP_ALIVE, *,
              mailer: str | None = None) -> Iterator[Any]:
    """An open connection for one send: of the MAILERS entry ``mailer``, or of ``backend`` (a dotted path),
    or of the project's default mail backend (both None); see :func:`new_connection`.

    Kept for the next send when the block ends normally; closed when it raises.  ``keep_alive`` 0 opens and
    closes a connection per send (Django's own behaviour)."""
    connection, generation = _take((mailer, backend), keep_alive)
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
            _local.by_backend[(mailer, backend)] = (connection, time.monotonic())
            _idle.add(connection)
            return
    _close(connection)  # not to be kept, or settings changed while it was in use


def _take(key: tuple[str | None, str | None], keep_alive: float) -> tuple[Any, int]:
    """A kept connection that still works, or a new one; and the settings' generation it belongs to."""
    with _lock:
        if _local.generation != _generation:  # settings changed: close_all() closed the idle ones
            _local.by_backend = {}
            _local.generation = _generation
        generation = _generation
        entry = _local.by_backend.pop(key, None)
        if entry is not None:
            _idle.discard(entry[0])
    if entry is not None:
        connection, last_used = entry
        if time.monotonic() - last_used <= keep_alive and _answers(connection):
            return connection, generation
        _close(connection)
    return new_connection(*key), generation


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
