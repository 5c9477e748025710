"""A deliberately slow SMTP server on loopback, for benchmarks: each message is accepted only after a delay.

Runs in its own process (``python -m bench._smtp PORT DELAY_FILE``) so its event loop never competes for the
measuring process's GIL.  The delay, in milliseconds, is read from DELAY_FILE at every message, so a benchmark
can change it between blocks of samples without restarting the server; the wait happens in ``DATA``, after
the whole message was received and before the ``250`` reply, as with a mail server that is slow to queue.

Use :func:`slow_smtp` from a benchmark::

    with slow_smtp(delay_ms=200) as server:
        settings.EMAIL_PORT = server.port
        server.set_delay(0)
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.report import ROOT, stop


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class SlowSMTP:
    """A running server: its ``port``, and :meth:`set_delay` to change how long each message waits."""

    def __init__(self, port: int, delay_file: Path, process: subprocess.Popen) -> None:
        self.port = port
        self.delay_file = delay_file
        self.process = process

    def set_delay(self, delay_ms: float) -> None:
        tmp = self.delay_file.with_suffix(".tmp")
        tmp.write_text(str(delay_ms))
        tmp.replace(self.delay_file)  # atomic: the server never reads a half-written file


@contextmanager
def slow_smtp(delay_ms: float = 200) -> Iterator[SlowSMTP]:
    """Start the server in a subprocess on a free port; stopped (and waited for) on exit."""
    with tempfile.TemporaryDirectory(prefix="bench-smtp-") as tmp:
        delay_file = Path(tmp) / "delay_ms"
        port = free_port()
        process = subprocess.Popen(
            [sys.executable, "-m", "bench._smtp", str(port), str(delay_file)], cwd=ROOT,
            stdout=subprocess.DEVNULL)
        server = SlowSMTP(port, delay_file, process)
        server.set_delay(delay_ms)
        try:
            deadline = time.monotonic() + 15
            while True:
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
                        if sock.recv(3) == b"220":
                            break
                except OSError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the slow SMTP server did not start")
                time.sleep(0.05)
            yield server
        finally:
            stop(process, timeout=5)


class _SlowHandler:
    def __init__(self, delay_file: Path) -> None:
        self.delay_file = delay_file

    def _delay(self) -> float:
        try:
            return float(self.delay_file.read_text()) / 1000
        except (OSError, ValueError):
            return 0.0

    async def handle_DATA(self, server, session, envelope) -> str:
        delay = self._delay()
        if delay > 0:
            await asyncio.sleep(delay)
        return "250 Message accepted for delivery"


def main() -> None:
    from aiosmtpd.controller import Controller

    port, delay_file = int(sys.argv[1]), Path(sys.argv[2])
    controller = Controller(_SlowHandler(delay_file), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        while os.getppid() != 1:  # the benchmark died without stopping us: do not linger
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
