"""The example site for the browser tests, on its embedded defaults, as real processes.

A temporary EXAMPLE_VAR_DIR holds the SQLite database, the mail files, the letters and the embedded Redis
(started by the first process that loads example.settings, stopped at the end).  A Celery worker
(``celery -A deferred_confirmation.workers worker``, prefork) and ``manage.py runserver --noreload`` on a free loopback
port run as subprocesses; the fake Twilio runs in the test process, so the tests read the texted codes from it.  The
test process itself stays on tests.settings: everything it learns about the site comes over HTTP, from the
mail files, from the fake Twilio and from ``manage.py export_payouts --json``, as a person or an operator
would.

Helpers come from example/demo.py (processes, waiting, mail parsing), so the demo and these tests read the
site the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from example import demo
from example.fakes.twilio import FakeTwilio

if TYPE_CHECKING:  # playwright may be missing: the browser tests are then skipped, not broken
    from playwright.sync_api import Page

ROOT = demo.ROOT
ARTIFACTS = ROOT / "test-artifacts"
TWILIO_FROM = demo.TWILIO_FROM
PASSWORD = "correct horse battery staple"
# What the shell may have set that would take the example site off its embedded defaults.
NOT_INHERITED = ("DATABASE_URL", "CELERY_BROKER_URL", "EMAIL_BACKEND", "CELERY_TASK_ALWAYS_EAGER", "SITE_URL",
                 "SECRET_KEY", "DEBUG", "ALLOWED_HOSTS")
SETUP = """
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management import call_command

call_command("migrate", verbosity=0, interactive=False)
hashed = make_password({password!r})  # once: hashing is slow on purpose
for name in {names!r}:
    get_user_model().objects.create(username=name, email=name + "@example.com", password=hashed)
"""


class ExampleSite:
    """The running example site; see the module docstring.  Start with ``start()``, end with ``stop()``."""

    def __init__(self, users: list[str]):
        # Short: the embedded Redis' unix socket path must stay under 108 characters.
        self.var_dir = Path(tempfile.mkdtemp(prefix="dc-browser-"))
        self.port = demo.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.users = users
        self.fake = FakeTwilio()
        env = {name: value for name, value in os.environ.items()
               if name not in NOT_INHERITED and not name.startswith(("DC_TEST_", "PYTEST_", "TWILIO_"))}
        env.update(EXAMPLE_VAR_DIR=str(self.var_dir), SITE_URL=self.base, DJANGO_SETTINGS_MODULE="example.settings",
                   PYTHONUNBUFFERED="1", TWILIO_FROM=TWILIO_FROM)
        (self.var_dir / "logs").mkdir()
        self.procs = demo.Processes(self.var_dir / "logs", env)
        self.mail_dir = self.var_dir / "mail"

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> ExampleSite:
        self.fake.start()
        self.procs.env.update(TWILIO_BASE_URL=self.fake.url, TWILIO_ACCOUNT_SID=self.fake.account_sid,
                              TWILIO_AUTH_TOKEN=self.fake.auth_token)
        # One Django start for the tables and the users (this also starts the embedded Redis).
        self.procs.run("setup", sys.executable, "manage.py", "shell", "-c",
                       SETUP.format(names=self.users, password=PASSWORD), timeout=60)
        self.procs.start("worker", sys.executable, "-m", "celery", "-A", "deferred_confirmation.workers", "worker",
                         "-l", "WARNING",
                         "-c", "2")
        self.procs.start("web", sys.executable, "manage.py", "runserver", f"127.0.0.1:{self.port}", "--noreload")
        demo.wait_for("the web server", demo.web_answers(demo.Browser(self.base)), self.procs, interval=0.1)
        return self

    def stop(self) -> None:
        self.resume_worker()
        worker = self.procs.running.get("worker")
        if worker is not None and worker.poll() is None:
            # Cold shutdown (SIGQUIT): nothing is left in flight, and a warm one takes seconds.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(worker.pid, signal.SIGQUIT)
        self.procs.stop_all()
        self.fake.stop()
        logs = ARTIFACTS / "browser-logs"
        with contextlib.suppress(OSError):
            shutil.rmtree(logs, ignore_errors=True)
            shutil.copytree(self.var_dir / "logs", logs)
        demo._stop_redis(self.var_dir)  # the embedded Redis daemon the setup command started
        shutil.rmtree(self.var_dir, ignore_errors=True)

    # --- the worker --------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def worker_paused(self) -> Iterator[None]:
        """Within: the worker's processes are stopped (SIGSTOP), so a confirmed change waits to be applied and
        the status page is seen in its in-between state.  Enter only while the worker is idle: a write lock
        held by a stopped worker would block the web server."""
        os.killpg(self.procs.running["worker"].pid, signal.SIGSTOP)
        try:
            yield
        finally:
            self.resume_worker()

    def resume_worker(self) -> None:
        proc = self.procs.running.get("worker")
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGCONT)

    # --- reading the site as a person or an operator would --------------------------------------------------

    def state(self, page: Page, action_id: str) -> dict:
        """The status endpoint's JSON, asked by the person's browser (``page``'s cookies): an action's pages
        answer only the session or user it belongs to."""
        response = page.request.get(f"{self.base}/confirm/status/{action_id}/",
                                    headers={"Accept": "application/json"})
        assert response.status == 200, f"status endpoint of {action_id} answered {response.status}"
        return response.json()

    def wait_for_state(self, page: Page, action_id: str, *states: str, timeout: float = 25) -> dict:
        def probe():
            current = self.state(page, action_id)
            if current["state"] in ("failed", "expired", "cancelled", "locked") and current["state"] not in states:
                raise AssertionError(f"action {action_id} ended as {current['state']}: {current['failure_reason']}")
            return current if current["state"] in states else None
        return demo.wait_for(f"action {action_id} to be {' or '.join(states)}", probe, self.procs, timeout=timeout)

    def mailed_link(self, action_id: str) -> tuple[str, str]:
        """(recipient, the link's path) of the confirmation mail the worker wrote for ``action_id``."""
        message = demo.wait_for(f"the mail of action {action_id}", demo.find_mail(self.mail_dir, action_id),
                                self.procs)
        link, _token = demo.link_in(message)
        assert link.startswith(self.base + "/"), f"the mailed link {link[:40]}… is not on SITE_URL {self.base}"
        return message["To"], urllib.parse.urlsplit(link).path

    def texted_code(self, code_path: str) -> str:
        """The code the worker texted through the fake Twilio, for the code page at ``code_path``."""
        def sms():
            return next((m for m in self.fake.messages if code_path in m["body"]), None)
        message = demo.wait_for(f"the SMS for {code_path}", sms, self.procs)
        found = demo.SMS_CODE_RE.match(message["body"])
        assert found, f"no code in the SMS: {message['body']!r}"
        return found.group(1)

    def deposit_amounts(self, page: Page, action_id: str) -> tuple[str, str]:
        """The two micro-deposits, as the operator reads them: ``manage.py export_payouts --json``."""
        self.wait_for_state(page, action_id, "notified")  # the ledger row is written before the action is notified
        out = self.procs.run("export_payouts", sys.executable, "manage.py", "export_payouts", "--json",
                             "--action", action_id, capture=True)
        rows = json.loads(out)
        assert len(rows) == 1, f"export_payouts listed {len(rows)} payouts for {action_id}"
        first, second = rows[0]["amounts_decimal"]
        return first, second
