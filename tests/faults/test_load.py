"""Load: 10,000 actions and 200 concurrent clients against the example site, run as in production.

The site runs the Procfile's own lines (gunicorn ``web``, ``worker_email``, ``worker_core``) on a PostgreSQL
database of its own and the real Redis, JSON logs on.  tests/faults/load_seed.py creates 200 signed-in users
(one per client) and 9,800 mailed email changes; then 200 threads, each from its own loopback address
(127.0.0.10 ...), in one burst:

- every client but the attackers stages one change of its own over HTTP (the form's POST: ``save()``), which
  the worker mails; the client reads its link from the mail file and confirms it at the end of its run;
- works through its share of the 9,800: valid links (POST; some opened with GET first, some replayed after
  the confirm, some also posted by a second client at the same time), tampered links, expired links;
- 5 clients are attackers: no session, 50 tampered links each; the failure throttle must stop them (429).

Afterwards, read from the site's database and the workers' logs: every action confirmed (302) is applied
exactly once (one ``apply``/``applied`` log line, the user's email is the new one), every refused one is
unchanged, every staged one was mailed and applied, no response was 5xx, no request failed.  Throughput and
latency (p50, p99) are written to test-artifacts/load/summary.json; docs/reliability.md quotes them.

PostgreSQL only: 200 concurrent writers on one SQLite file is not a deployment this project recommends.
Size by LOAD_ACTIONS and LOAD_CLIENTS (defaults 10,000 and 200).
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import http.client
import json
import os
import random
import re
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest
import redis
from django.conf import settings
from honcho.environ import parse_procfile

from bench.report import percentile
from example import demo

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts" / "load"
POSTGRES = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
ACTIONS = int(os.environ.get("LOAD_ACTIONS", 10_000))
CLIENTS = int(os.environ.get("LOAD_CLIENTS", 200))
ATTACKERS = 5
ATTACK_TRIES = 50
WRONG_SHARE, GET_FIRST, REPLAY, DUPLICATE = 0.15, 0.2, 0.1, 0.05
PROCFILE = parse_procfile((ROOT / "Procfile").read_text()).processes
LINK_RE = re.compile(r"/confirm/([A-Za-z0-9_-]{43})/")
UUID_RE = re.compile(r"/confirm/status/([0-9a-f-]{36})/")

pytestmark = [
    pytest.mark.subprocess,
    pytest.mark.timeout(900),
    pytest.mark.skipif(not POSTGRES, reason="the load test runs on PostgreSQL (TEST_DATABASE=postgres)"),
]


# --- the site ------------------------------------------------------------------------------------------

def _db_url(name: str) -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{name}"


def _admin_sql(*statements: str) -> None:
    with psycopg.connect(_db_url("postgres"), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


class Site:
    """The example site as the Procfile runs it, on a fresh database; see the module docstring."""

    def __init__(self) -> None:
        self.db = settings.DATABASES["default"]["TEST"]["NAME"] + "_load"
        self.var = Path(tempfile.mkdtemp(prefix="dc-load-"))
        self.port = demo.free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.broker = settings.CELERY_BROKER_URL
        # Throttle counters of this run only: another run on this machine (or the last one, within the
        # 15-minute window) must not add its failures to these clients' and users' counts.
        self.cache_prefix = f"dc-load-{uuid.uuid4().hex}"
        broker = urlsplit(self.broker)
        self.cache_url = broker._replace(path=f"/{(int(broker.path.strip('/') or 0) + 1) % 16}").geturl()
        # The example's file email backend (the mails land in var/mail), not whatever the shell sets.
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTEST_", "TEST_", "DJANGO_")) and k != "EMAIL_BACKEND"}
        env.update(DJANGO_SETTINGS_MODULE="example.settings", DATABASE_URL=_db_url(self.db),
                   CELERY_BROKER_URL=self.broker, EXAMPLE_VAR_DIR=str(self.var), SITE_URL=self.base,
                   SECRET_KEY="load-test-secret-key-0123456789abcdefghijklmnopqrstuvwxyz", DEBUG="0",
                   ALLOWED_HOSTS="127.0.0.1", LOG_FORMAT="json", PYTHONUNBUFFERED="1", REMAP_SIGTERM="SIGQUIT",
                   PORT=str(self.port), BIND_HOST="127.0.0.1", CACHE_URL=self.cache_url,
                   CACHE_KEY_PREFIX=self.cache_prefix,
                   PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
        (self.var / "logs").mkdir()
        self.procs = demo.Processes(self.var / "logs", env)
        self.mail_dir = self.var / "mail"

    def start(self, plan_path: Path) -> None:
        _admin_sql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)', f'CREATE DATABASE "{self.db}"')
        queues = redis.Redis.from_url(self.broker)
        queues.delete("confirmation.email", "confirmation.apply", "confirmation.maintenance", "celery")
        queues.close()
        self.procs.run("seed", sys.executable, "-m", "tests.faults.load_seed", str(plan_path),
                       "--clients", str(CLIENTS), "--seeded", str(ACTIONS - CLIENTS + ATTACKERS), timeout=300)
        for name in ("worker_email", "worker_core", "web"):
            self.procs.start(name, "/bin/sh", "-c", PROCFILE[name])
        demo.wait_for("the web server", demo.web_answers(demo.Browser(self.base)), self.procs, timeout=60,
                      interval=0.2)

    def stop(self) -> None:
        self.procs.stop_all()
        with contextlib.suppress(OSError):
            shutil.rmtree(ARTIFACTS / "logs", ignore_errors=True)
            shutil.copytree(self.var / "logs", ARTIFACTS / "logs")
        shutil.rmtree(self.var, ignore_errors=True)
        self.forget_cache()
        _admin_sql(f'DROP DATABASE IF EXISTS "{self.db}" WITH (FORCE)')

    def forget_cache(self) -> None:
        """Remove this run's throttle counters from the site's cache."""
        client = redis.Redis.from_url(self.cache_url)
        keys = list(client.scan_iter(f"{self.cache_prefix}:*"))
        if keys:
            client.delete(*keys)
        client.close()

    def query(self, sql: str, *params) -> list[tuple]:
        with psycopg.connect(_db_url(self.db)) as conn:
            return conn.execute(sql, params).fetchall()

    def log_events(self, name: str) -> list[dict]:
        events = []
        for line in (self.var / "logs" / f"{name}.log").read_text(errors="replace").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
        return events


class Postman(threading.Thread):
    """Reads the mail files as the worker writes them: ``links[action_id]`` is the mailed link's path."""

    def __init__(self, mail_dir: Path):
        super().__init__(daemon=True)
        self.mail_dir = mail_dir
        self.links: dict[str, str] = {}
        self.seen: dict[Path, int] = {}
        self.changed = threading.Condition()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(0.2):
            self.read()

    def read(self) -> None:
        found = {}
        for path in sorted(self.mail_dir.glob("*.log")) if self.mail_dir.is_dir() else []:
            raw = path.read_bytes()
            complete = raw.split(demo.MAIL_SEPARATOR)[:-1]
            for part in complete[self.seen.get(path, 0):]:
                message = email.message_from_bytes(part.lstrip(b"\n"), policy=email.policy.default)
                link = LINK_RE.search(message.get_body(preferencelist=("plain",)).get_content())
                found[message["X-Deferred-Action"]] = link.group(0) if link else ""
            self.seen[path] = len(complete)
        if found:
            with self.changed:
                self.links.update(found)
                self.changed.notify_all()

    def wait(self, action_id: str, timeout: float) -> str | None:
        with self.changed:
            self.changed.wait_for(lambda: action_id in self.links, timeout)
            return self.links.get(action_id)


# --- the clients ---------------------------------------------------------------------------------------

@dataclass
class Request:
    client: int
    kind: str
    action: str | None
    method: str
    status: int  # 0: no response (connection failed)
    seconds: float
    error: str = ""


@dataclass
class Job:
    kind: str  # valid, wrong, expired, attack
    action: str
    token: str
    get_first: bool = False
    replay: bool = False


@dataclass
class Client:
    index: int
    base_port: int
    session: str | None
    plan: dict
    postman: Postman
    jobs: list[Job] = field(default_factory=list)
    log: list[Request] = field(default_factory=list)
    csrf: str = ""
    staged: str | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.{10 + self.index}"

    def request(self, kind: str, action: str | None, method: str, path: str, body: str = "") -> tuple[int, str]:
        cookies = [f"{self.plan['csrf_cookie']}={self.csrf}"] if self.csrf else []
        if self.session:
            cookies.append(f"{self.plan['session_cookie']}={self.session}")
        headers = {"Cookie": "; ".join(cookies), "Connection": "close"}
        if method == "POST":
            headers.update({"Content-Type": "application/x-www-form-urlencoded", "X-CSRFToken": self.csrf})
        started = time.perf_counter()
        conn = http.client.HTTPConnection("127.0.0.1", self.base_port, timeout=60, source_address=(self.address, 0))
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            text = response.read().decode(errors="replace")
            for header, value in response.getheaders():
                if header.lower() == "set-cookie" and value.startswith(self.plan["csrf_cookie"] + "="):
                    self.csrf = value.split(";", 1)[0].split("=", 1)[1]
            status, error = response.status, ""
        except (OSError, http.client.HTTPException) as exc:
            status, text, error = 0, "", f"{type(exc).__name__}: {exc}"
        finally:
            conn.close()
        self.log.append(Request(self.index, kind, action, method, status, time.perf_counter() - started, error))
        return status, text

    def run(self) -> None:
        if self.session:
            self.request("form", None, "GET", "/account/email/")
            status, page = self.request("stage", None, "POST", "/account/email/",
                                        f"email=staged{self.index}%40load.example")
            found = UUID_RE.search(page) if status == 202 else None
            self.staged = found.group(1) if found else None
        else:
            self.request("form", None, "GET", "/login/")
        for job in self.jobs:
            path = f"/confirm/{job.token}/"
            if job.get_first:
                self.request(job.kind, job.action, "GET", path)
            self.request(job.kind, job.action, "POST", path)
            if job.replay:
                self.request("replay", job.action, "POST", path)
        if self.staged:
            link = self.postman.wait(self.staged, timeout=120)
            if link:
                self.request("staged", self.staged, "GET", link)
                self.request("staged", self.staged, "POST", link)


def tampered(token: str, rng: random.Random) -> str:
    """A well-formed token that is not the one sent: one character changed."""
    i = rng.randrange(len(token))
    return token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1:]


def make_clients(plan: dict, port: int, postman: Postman, rng: random.Random) -> list[Client]:
    sessions = plan["clients"]
    clients = [Client(i, port, None if i < ATTACKERS else sessions[i]["session"], plan, postman)
               for i in range(CLIENTS)]
    regular = clients[ATTACKERS:]
    actions = list(plan["actions"])
    rng.shuffle(actions)
    for number, action in enumerate(actions):
        owner = regular[number % len(regular)]
        if action["expired"]:
            owner.jobs.append(Job("expired", action["id"], action["token"]))
        elif rng.random() < WRONG_SHARE:
            owner.jobs.append(Job("wrong", action["id"], tampered(action["token"], rng)))
        else:
            owner.jobs.append(Job("valid", action["id"], action["token"], get_first=rng.random() < GET_FIRST,
                                  replay=rng.random() < REPLAY))
            if rng.random() < DUPLICATE:  # the same link posted by another client too (a forwarded mail)
                rng.choice(regular).jobs.append(Job("valid", action["id"], action["token"]))
    for attacker in clients[:ATTACKERS]:
        attacker.jobs = [Job("attack", a["id"], tampered(a["token"], rng)) for a in rng.sample(actions, ATTACK_TRIES)]
    for client in clients:
        rng.shuffle(client.jobs)
    return clients


# --- the test ------------------------------------------------------------------------------------------

def latency(requests: list[Request]) -> dict:
    seconds = [r.seconds for r in requests]

    def ms(p: float) -> float:
        return round(percentile(seconds, p) * 1000, 1) if seconds else 0.0
    return {"n": len(seconds), "p50_ms": ms(50), "p99_ms": ms(99), "max_ms": round(max(seconds, default=0) * 1000, 1)}


@pytest.fixture
def site(tmp_path):
    running = Site()
    try:
        running.start(tmp_path / "plan.json")
        yield running
    finally:
        running.stop()


def test_load_nothing_lost_nothing_applied_twice_no_5xx(site, tmp_path):
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert len(plan["actions"]) + CLIENTS - ATTACKERS == ACTIONS
    postman = Postman(site.mail_dir)
    postman.start()
    clients = make_clients(plan, site.port, postman, random.Random(20261122))
    threads = [threading.Thread(target=client.run, name=f"client{client.index}") for client in clients]

    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(1.0, 600 - (time.monotonic() - started)))
    load_seconds = time.monotonic() - started
    postman.stopping.set()
    assert not any(t.is_alive() for t in threads), "a client hung"
    site.procs.check_alive()

    requests = [r for client in clients for r in client.log]
    failed = [r for r in requests if r.status == 0 or r.status >= 500]
    assert not failed, f"{len(failed)} requests failed or got 5xx, e.g. {failed[:3]}"

    # Every confirm accepted (302) is applied; the rest are not.
    accepted = Counter(r.action for r in requests if r.method == "POST" and r.status == 302)
    assert all(count == 1 for count in accepted.values()), "one link was accepted twice"
    staged = {c.staged for c in clients if c.session}
    assert None not in staged, "a client's change could not be staged"
    assert staged <= set(accepted), "a staged change was never mailed or confirmed"

    def applied_so_far() -> int:
        return site.query("SELECT count(*) FROM confirmation_deferredaction WHERE state = 'applied'")[0][0]
    deadline = time.monotonic() + 300
    while applied_so_far() < len(accepted) and time.monotonic() < deadline:
        time.sleep(0.5)
    drained_seconds = time.monotonic() - started

    rows = {str(a): (state, email) for a, state, email in site.query(
        "SELECT a.id, a.state, u.email FROM confirmation_deferredaction a "
        "JOIN auth_user u ON u.id::text = a.object_pk")}
    new_email = {a["id"]: a["new_email"] for a in plan["actions"]}
    new_email.update({c.staged: f"staged{c.index}@load.example" for c in clients if c.session})
    old_email = {a["id"]: a["email"] for a in plan["actions"]}
    lost = [a for a in accepted if rows[a] != ("applied", new_email[a])]
    assert not lost, f"{len(lost)} confirmed actions were not applied, e.g. {[rows[a] for a in lost[:3]]}"
    refused = [a for a in old_email if a not in accepted]
    changed = [a for a in refused if rows[a][1] != old_email[a] or rows[a][0] == "applied"]
    assert not changed, f"{len(changed)} refused actions changed their user anyway"
    jobs = {job.action: job.kind for c in clients for job in c.jobs if job.kind != "attack"}
    assert {rows[a][0] for a, kind in jobs.items() if kind == "expired"} == {"expired"}
    assert {rows[a][0] for a, kind in jobs.items() if kind == "wrong"} <= {"notified"}

    # Exactly once: one "applied" line per applied action in the apply worker's log.
    applies = Counter(e.get("action_id") for e in site.log_events("worker_core")
                      if e.get("event") == "apply" and e.get("outcome") == "applied")
    assert max(applies.values()) == 1, f"applied twice: {[a for a, n in applies.items() if n > 1][:5]}"
    assert set(applies) == set(accepted), "the applies logged differ from the confirms accepted"

    # Statuses as promised: valid 302 (or 409 for the second of two posts), tampered 404, expired 410,
    # replays 409, attackers stopped by the throttle.
    by_kind = defaultdict(Counter)
    for r in requests:
        by_kind[f"{r.kind} {r.method}"][r.status] += 1
    assert set(by_kind["valid POST"]) <= {302, 409}
    assert set(by_kind["wrong POST"]) == {404}
    assert set(by_kind["expired POST"]) == {410}
    assert set(by_kind["replay POST"]) <= {409}
    assert set(by_kind["attack POST"]) <= {404, 429} and by_kind["attack POST"][429] >= ATTACKERS
    assert by_kind["stage POST"] == Counter({202: len(staged)})
    assert by_kind["staged POST"] == Counter({302: len(staged)})

    posts = [r for r in requests if r.method == "POST" and r.kind not in ("stage",)]
    summary = {
        "actions": ACTIONS, "clients": CLIENTS, "attackers": ATTACKERS, "requests": len(requests),
        "load_seconds": round(load_seconds, 1), "requests_per_second": round(len(requests) / load_seconds, 1),
        "applied": len(accepted), "all_applied_after_seconds": round(drained_seconds, 1),
        "applies_per_second": round(len(accepted) / drained_seconds, 1),
        "latency_all": latency(requests), "latency_confirm_post": latency(posts),
        "latency_stage_post": latency([r for r in requests if r.kind == "stage" and r.method == "POST"]),
        "statuses": {kind: dict(sorted(counts.items())) for kind, counts in sorted(by_kind.items())},
        "double_applies": sum(1 for n in applies.values() if n > 1), "lost": len(lost), "responses_5xx": 0,
        "web": PROCFILE["web"], "workers": [PROCFILE["worker_email"], PROCFILE["worker_core"]],
    }
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
