"""`honcho start` runs the Procfile's whole stack, serves a confirmation end to end, and stops cleanly.

The stack runs as docs/operations.md#the-example-stack-procfile says: in the repository, with .env, after
`honcho run python manage.py migrate`; on the embedded defaults (SQLite and the embedded Redis, in a temporary
EXAMPLE_VAR_DIR), or on PostgreSQL (a database of its own) when the suite runs with TEST_DATABASE=postgres.
A second env file (honcho reads `-e .env,<file>`, the later file winning) gives it free ports.

Checked: the web server answers; each worker answers a ping and consumes exactly its Procfile queues; Flower
asks for its login; a sign-up is confirmed over HTTP through web, worker_email and worker_core.  Then, with a
text message stuck in flight (the SMS worker's request to a "Twilio" that never answers), SIGTERM to honcho
stops every process by itself (exit code 0, the workers by Celery's cold shutdown, the SMS worker after its
soft-shutdown wait) before honcho's SIGKILL, and the stuck task's message is back on its queue, none left
unacknowledged.  The embedded Redis, which outlives honcho by design, is stopped by the test.
"""

from __future__ import annotations

import base64
import contextlib
import email
import email.policy
import html
import http.cookiejar
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from example import embedded_redis

pytestmark = [pytest.mark.subprocess, pytest.mark.timeout(120)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the virtualenv's bin/: honcho, gunicorn, celery, python
START_TIMEOUT = 45  # the seven processes import Django and Celery at once, on two cores
STEP_TIMEOUT = 20
HONCHO_KILL_WAIT = 5  # honcho 2.0's manager.KILL_WAIT: SIGKILL this long after the first process exited
PROCESSES = ("web", "worker_email", "worker_sms", "worker_post", "worker_core", "beat", "flower")
WORKER_QUEUES = {
    "email": {"confirmation.email"},
    "sms": {"confirmation.sms"},
    "post": {"confirmation.letter", "confirmation.microdeposit"},
    "core": {"confirmation.apply", "confirmation.maintenance", "celery"},
}
CSRF_RE = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
STATUS_LINK_RE = re.compile(r'href="/confirm/status/([0-9a-f-]{36})/"')
LINK_RE = re.compile(r"https?://[^\s\"'<>]+(/confirm/[A-Za-z0-9_-]{43}/)")
MAIL_SEPARATOR = b"\n" + b"-" * 79 + b"\n"  # what Django's file-based backend writes after each message
STARTED_RE = re.compile(r"system\s+\| (\w+)\.1 started \(pid=(\d+)\)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(what: str, probe, honcho: subprocess.Popen, log: Path, timeout: float = STEP_TIMEOUT):
    deadline = time.monotonic() + timeout
    while True:
        if honcho.poll() is not None:
            pytest.fail(f"honcho exited ({honcho.returncode}) while waiting for {what}:\n{tail(log)}")
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}:\n{tail(log)}")
        time.sleep(0.2)


def tail(log: Path, lines: int = 60) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


class Browser:
    """HTTP with a cookie jar, redirects not followed (the tests read them)."""

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    def __init__(self, base: str):
        self.base = base
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}),
                                                  urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()),
                                                  self._NoRedirect())

    def request(self, path: str, data: dict | None = None, headers: dict | None = None) -> tuple[int, str]:
        body = urllib.parse.urlencode(data).encode() if data is not None else None
        req = urllib.request.Request(urllib.parse.urljoin(self.base, path), data=body, headers=headers or {})
        try:
            with self.opener.open(req, timeout=10) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            with error:
                return error.code, error.read().decode(errors="replace")

    def answers(self, path: str, **kwargs) -> int | None:
        try:
            return self.request(path, **kwargs)[0]
        except (urllib.error.URLError, OSError):
            return None

    def post_form(self, path: str, page: str, fields: dict) -> tuple[int, str]:
        token = CSRF_RE.search(page)
        assert token, f"no CSRF token on the page of {path}"
        return self.request(path, {"csrfmiddlewaretoken": html.unescape(token.group(1)), **fields},
                            headers={"Referer": urllib.parse.urljoin(self.base, path)})


def mail_for(mail_dir: Path, action_id: str):
    def probe():
        for path in sorted(mail_dir.glob("*.log")) if mail_dir.is_dir() else []:
            for raw in path.read_bytes().split(MAIL_SEPARATOR)[:-1]:  # complete messages only
                message = email.message_from_bytes(raw.lstrip(b"\n"), policy=email.policy.default)
                if message.get("X-Deferred-Action") == action_id:
                    return message
        return None
    return probe


class SilentServer:
    """A TCP server that reads requests and never answers: a provider API that hangs."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.received = threading.Event()
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                conn, _ = self.sock.accept()
                self.connections.append(conn)
                threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while conn.recv(65536):
                self.received.set()

    def close(self) -> None:
        for conn in [self.sock, *self.connections]:
            with contextlib.suppress(OSError):
                conn.close()


def redis_servers(sock: Path) -> list[int]:
    """Pids of the redis-server processes serving ``sock`` (started by this test's stack only)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                if "redis-server" in cmdline and str(sock) in cmdline:
                    pids.append(int(proc.name))
    return pids


@contextlib.contextmanager
def stack_database():
    """DATABASE_URL for the stack: unset (the embedded SQLite) or, with TEST_DATABASE=postgres, a fresh database."""
    if os.environ.get("TEST_DATABASE", "sqlite") != "postgres":
        yield {}
        return
    import psycopg

    name = os.environ.get("TEST_PG_NAME", "test_deferred_confirmation") + "_stack"
    host, port = os.environ.get("PGHOST", "127.0.0.1"), os.environ.get("PGPORT", "5432")
    user = os.environ.get("PGUSER", "postgres")
    admin = dict(host=host, port=port, user=user, dbname="postgres", autocommit=True)
    with psycopg.connect(**admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield {"DATABASE_URL": f"postgres://{user}@{host}:{port}/{name}"}
    finally:
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def var_dir():
    # Short, for the unix socket path (at most 107 bytes) of the embedded Redis.
    path = Path(tempfile.mkdtemp(prefix="dc-ops-"))
    yield path
    sock = path / "redis.sock"
    embedded_redis.stop(path)
    for pid in redis_servers(sock):  # a second server would be a regression of the start lock: stop it too
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while redis_servers(sock) and time.monotonic() < deadline:
        time.sleep(0.1)
    leftover = redis_servers(sock)
    shutil.rmtree(path, ignore_errors=True)
    assert not leftover, f"the embedded Redis did not stop: {leftover}"


def test_honcho_start_runs_the_stack_and_stops_it_cleanly(var_dir):
    from celery import Celery

    port, flower_port = free_port(), free_port()
    flower_auth = f"ops:{secrets.token_urlsafe(12)}"
    twilio = SilentServer()
    with stack_database() as database, contextlib.closing(twilio):
        overrides = {"EXAMPLE_VAR_DIR": str(var_dir), "PORT": str(port), "FLOWER_PORT": str(flower_port),
                     "SITE_URL": f"http://127.0.0.1:{port}", "FLOWER_BASIC_AUTH": flower_auth,
                     "TWILIO_BASE_URL": f"http://127.0.0.1:{twilio.port}", **database}
        env_file = var_dir / "ops.env"
        env_file.write_text("".join(f"{key}={value}\n" for key, value in overrides.items()))
        # The shell's environment, as a person's would be, less what would point the stack elsewhere.
        env = {key: value for key, value in os.environ.items()
               if key not in ("DJANGO_SETTINGS_MODULE", "CELERY_BROKER_URL", "DATABASE_URL", "SITE_URL")
               and not key.startswith(("TWILIO_", "FLOWER_"))}
        env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
        envs = f".env,{env_file}"

        migrate = subprocess.run([str(BIN / "honcho"), "run", "-e", envs, "python", "manage.py", "migrate",
                                  "--no-input"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=90,
                                 check=False)
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        # migrate started the embedded Redis; stop it, so that the seven processes race to start it.
        sock = var_dir / "redis.sock"
        embedded_redis.stop(var_dir)
        deadline = time.monotonic() + 10
        while redis_servers(sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        log = var_dir / "honcho.log"
        with log.open("wb") as out:
            honcho = subprocess.Popen([str(BIN / "honcho"), "start", "-e", envs, "--no-colour"], cwd=ROOT, env=env,
                                      stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      start_new_session=True)
        try:
            site = run_checks(honcho, log, var_dir, port, flower_port, flower_auth, Celery)
            stick_a_text_message(site, twilio, honcho, log)
            stop_and_check(honcho, log)
            assert_requeued(var_dir / "redis.sock", "confirmation.sms", log)
        finally:
            if honcho.poll() is None:
                honcho.kill()
            for _name, pid in STARTED_RE.findall(log.read_text(errors="replace")):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(int(pid), signal.SIGKILL)  # each process leads its own group (honcho's sessions)
            with contextlib.suppress(subprocess.TimeoutExpired):
                honcho.wait(timeout=10)
        assert len(redis_servers(sock)) == 1, "the processes started more than one embedded Redis"


def run_checks(honcho, log, var_dir, port, flower_port, flower_auth, celery_cls) -> Browser:
    site = Browser(f"http://127.0.0.1:{port}/")
    wait_for("the web server", lambda: site.answers("/login/") == 200, honcho, log, START_TIMEOUT)

    # The stack's broker is its embedded Redis, whatever the database.
    control = celery_cls("ops-test-probe", broker=f"redis+socket://{var_dir / 'redis.sock'}", set_as_current=False)
    try:
        def all_workers():
            replies = control.control.inspect(timeout=1.0).active_queues() or {}
            return replies if {name.split("@")[0] for name in replies} >= set(WORKER_QUEUES) else None
        replies = wait_for("every worker to answer", all_workers, honcho, log, START_TIMEOUT)
        consumed = {name.split("@")[0]: {queue["name"] for queue in queues} for name, queues in replies.items()}
        assert consumed == WORKER_QUEUES
        registered = control.control.inspect(timeout=2.0).registered() or {}
        assert {name.split("@")[0] for name in registered} == set(WORKER_QUEUES)
        for name, tasks in registered.items():
            assert "confirmation.send_notification" in tasks and "confirmation.apply_action" in tasks, name
        assert control.control.ping(timeout=2.0)
    finally:
        control.close()

    flower = Browser(f"http://127.0.0.1:{flower_port}/")
    wait_for("Flower", lambda: flower.answers("/") is not None, honcho, log)
    assert flower.answers("/") == 401
    token = base64.b64encode(flower_auth.encode()).decode()
    assert flower.answers("/", headers={"Authorization": f"Basic {token}"}) == 200
    flower_pid = dict(STARTED_RE.findall(log.read_text(errors="replace")))["flower"]
    assert flower_auth.split(":")[1] not in Path(f"/proc/{flower_pid}/cmdline").read_text(errors="replace")

    # A sign-up, confirmed by its mailed link: web -> worker_email -> web -> worker_core.
    status, page = site.request("/signup/")
    assert status == 200
    status, body = site.post_form("/signup/", page, {"username": "opsuser", "email": "ops@example.com",
                                                      "password": "a long enough ops passphrase"})
    assert status == 202, body[:2000]
    action_id = STATUS_LINK_RE.search(body).group(1)
    message = wait_for("the confirmation mail", mail_for(var_dir / "mail", action_id), honcho, log)
    link = LINK_RE.search(message.get_body(preferencelist=("plain",)).get_content()).group(1)
    status, page = site.request(link)
    assert status == 200
    status, _ = site.post_form(link, page, {})
    assert status == 302

    def applied():
        status, body = site.request(f"/confirm/status/{action_id}/", headers={"Accept": "application/json"})
        state = json.loads(body)["state"] if status == 200 else None
        assert state not in ("failed", "expired", "cancelled", "locked"), body
        return state == "applied"
    wait_for("the sign-up to be applied", applied, honcho, log)
    return site


def stick_a_text_message(site: Browser, twilio: SilentServer, honcho, log) -> None:
    """The new user asks for a phone change: the SMS worker's send hangs on the silent Twilio."""
    status, page = site.request("/login/")
    status, _ = site.post_form("/login/", page, {"username": "opsuser", "password": "a long enough ops passphrase"})
    assert status == 302
    status, page = site.request("/account/phone/")
    assert status == 200
    status, body = site.post_form("/account/phone/", page, {"phone": "(202) 555-0123"})
    assert status == 302, body[:2000]
    wait_for("the SMS worker to call Twilio", twilio.received.is_set, honcho, log)


def stop_and_check(honcho: subprocess.Popen, log: Path) -> None:
    honcho.send_signal(signal.SIGTERM)
    try:
        # honcho itself ends within its KILL_WAIT after the first process stopped, SIGKILL or not
        honcho.wait(timeout=HONCHO_KILL_WAIT + 10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"honcho did not exit after SIGTERM:\n{tail(log)}")
    text = log.read_text(errors="replace")
    assert "SIGKILL" not in text, f"honcho had to kill a process:\n{tail(log)}"
    assert honcho.returncode == 143, tail(log)  # honcho's own code for "stopped by SIGTERM"
    for name in PROCESSES:
        assert f"{name}.1 stopped (rc=0)" in text, f"{name} did not exit cleanly:\n{tail(log)}"
    for name in PROCESSES:
        if name.startswith("worker_"):
            assert re.search(rf"{name}\.1\s+\| worker: Cold shutdown", text), f"{name}:\n{tail(log)}"


def assert_requeued(sock: Path, queue: str, log: Path) -> None:
    """The task cancelled at shutdown is back on its queue, not held in Redis's unacknowledged set."""
    import redis

    client = redis.Redis(unix_socket_path=str(sock))
    try:
        assert client.llen(queue) == 1, tail(log)
        assert client.hlen("unacked") == 0, tail(log)
    finally:
        client.close()
    text = log.read_text(errors="replace")
    assert re.search(r"worker_sms\.1\s+\| .*Initiating Soft Shutdown", text), tail(log)
    assert re.search(r"worker_sms\.1\s+\| .*Restoring 1 unacknowledged message", text), tail(log)
