"""Secrets audit: the whole pipeline for email, SMS and micro-deposits, then every place a secret
could end up is searched for it.

A real ``celery -A deferred_confirmation.workers worker -E -l DEBUG`` process (SQL logged with its parameters:
DEBUG=True) and a ``celery -A deferred_confirmation.workers flower --logging=debug`` process run against the test Redis
and the shared test database (helpers of tests/ops_flower and tests/workers).  An email change with two sealed form
values, a phone change (SMS through the fake Twilio) and a bank-account change (micro-deposits on the ledger) are
staged, delivered by the worker, confirmed over HTTP (a wrong code and wrong amounts first) and applied by the worker,
with every logger of this process at DEBUG.  Then searched:

- every row of every table (raw SQL), every key and value of the test Redis database (SCAN + TYPE + the read
  command of its type) and every command the broker received meanwhile (MONITOR), base64 bodies decoded;
- the log records of this process, the worker's and Flower's log files, Flower's ``/api/tasks`` and task infos;
- the admin (changelists and change pages, as a superuser);

for the link token (raw, URL-encoded, JSON-escaped), the SMS code, the micro-deposit amounts (canonical "a,b", and
both "0.aa" and "0.bb" in one record), the plain values of the sealed form fields; in the admin also for the full
recipients (email address, phone number, IBAN).
"""

from __future__ import annotations

import base64
import binascii
import email
import email.policy
import json
import re
import secrets
import threading
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse
from kombu import Queue

from deferred_confirmation import workers
from deferred_confirmation.django_integration.models import DeferredAction, Delivery, Payout
from deferred_confirmation.pipeline.states import State
from example.fakes.twilio import FakeTwilio
from tests.channels.microdeposit.conftest import IBAN_ACCOUNT, exported_amounts
from tests.channels.microdeposit.forms import BankAccountForm
from tests.channels.sms.conftest import FROM, code_in
from tests.channels.sms.forms import ProfilePhoneForm
from tests.conftest import link_token, own
from tests.faults.secrets_audit_forms import SealedEmailForm
from tests.ops_flower.test_flower import PASSWORD, USER, FlowerProcess, _wait_until_flower_hears_the_worker
from tests.testapp.models import Profile
from tests.web.test_secrets_audit import all_logs, record_text  # noqa: F401 - all_logs: a fixture
from tests.workers.conftest import free_port, purge_queues, wait_for
from tests.workers.test_subprocess_worker import CELERY, Process, WorkerProcess, _env, _shared_db_name

pytestmark = pytest.mark.subprocess

PHONE = "+12025550123"
PHONE_TYPED = "+1 (202) 555-0123"
IBAN = "DE89370400440532013000"
QUEUES = ("confirmation.sms", "confirmation.microdeposit")
TASKS = ("confirmation.generate_token", "confirmation.send_notification", "confirmation.apply_action")
_B64 = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")


def channels_conf(fake: FakeTwilio) -> dict:
    return {"email": {}, "sms": {"OPTIONS": {"ACCOUNT_SID": fake.account_sid, "AUTH_TOKEN": fake.auth_token,
                                             "FROM": FROM, "BASE_URL": fake.url, "TIMEOUT": 5}},
            "microdeposit": {}}


class AuditWorker(WorkerProcess):
    """The subprocess worker of tests/workers, at DEBUG, with task events, on the audit's settings."""

    def __init__(self, tmp: Path, extra_env: dict[str, str]):
        self.mail_dir = tmp / "mail"
        self.mail_dir.mkdir()
        self.env = {**_env(self.mail_dir), **extra_env}
        self.hostname = f"dc-audit-{uuid.uuid4().hex[:8]}@localhost"
        Process.__init__(self, [CELERY, "-A", "deferred_confirmation.workers", "worker", "-l", "DEBUG", "-E", "-c", "2",
                                "--without-mingle", "--without-gossip", "-n", self.hostname],
                         self.env, tmp / "worker.log")


class AuditFlower(FlowerProcess):
    def __init__(self, tmp: Path, env: dict[str, str]):
        self.port = free_port()
        Process.__init__(self, [CELERY, "-A", "deferred_confirmation.workers", "flower", f"--port={self.port}",
                                "--address=127.0.0.1",
                                f"--basic-auth={USER}:{PASSWORD}", "--logging=debug"],
                         env, tmp / f"flower-{self.port}.log")


class MonitorTap:
    """Every command the test Redis database receives while running (MONITOR), as Redis prints it."""

    def __init__(self, url: str):
        self.url = url
        self.db = redis.Redis.from_url(url).connection_pool.connection_kwargs.get("db", 0)
        self.commands: list[str] = []
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MonitorTap:
        self._thread.start()
        assert self._ready.wait(5), "MONITOR did not start"
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        redis.Redis.from_url(self.url).ping()
        self._thread.join(5)

    def _run(self) -> None:
        with redis.Redis.from_url(self.url).monitor() as monitor:
            self._ready.set()
            while not self._stop.is_set():
                command = monitor.next_command()
                if int(command.get("db", -1)) == self.db:
                    self.commands.append(command["command"])


@pytest.fixture(scope="module")
def audit(django_db_setup, tmp_path_factory):
    if _shared_db_name() is None:
        pytest.skip("the SQLite test database is in memory; set TEST_SQLITE_NAME to a file to share it")
    workers.app.conf.task_always_eager = False
    for name in QUEUES:  # this process publishes to (and purges) the channels' queues too
        workers.app.amqp.queues.select_add(Queue(name))
    purge_queues()
    tmp = tmp_path_factory.mktemp("audit")
    with FakeTwilio() as fake:
        env = {"DJANGO_SETTINGS_MODULE": "tests.faults.secrets_audit_settings",
               "DC_AUDIT_CHANNELS": json.dumps(channels_conf(fake))}
        worker = AuditWorker(tmp, env)
        flower = AuditFlower(tmp, worker.env)
        try:
            flower.wait_ready()
            worker.wait_ready()
            yield fake, worker, flower
        finally:
            flower.stop()
            worker.stop()
            purge_queues()


# --- collecting every place a secret could be --------------------------------------------------------------
def with_decoded(text: str) -> str:
    """``text`` plus every base64 run in it decoded (kombu's message bodies, a secret hidden in an encoding)."""
    extra = []
    for blob in _B64.findall(text):
        for decode in (base64.b64decode, base64.urlsafe_b64decode):
            try:
                raw = decode(blob + "=" * (-len(blob) % 4))
            except (binascii.Error, ValueError):
                continue
            decoded = raw.decode("utf-8", errors="ignore")
            if decoded.isprintable() or "{" in decoded:
                extra.append(decoded)
    return "\n".join([text, *extra])


def database_rows() -> list[tuple[str, str]]:
    rows = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608 - introspected
            for row in cursor.fetchall():
                values = []
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        raw = bytes(value)
                        values += [raw.hex(), raw.decode("latin-1")]
                    else:
                        values.append(str(value))
                rows.append((f"table {table}", with_decoded(" | ".join(values))))
    return rows


def redis_values(url: str) -> list[tuple[str, str]]:
    client = redis.Redis.from_url(url)
    found = []
    for key in client.scan_iter(count=500):
        kind = client.type(key).decode()
        if kind == "string":
            values = [client.get(key)]
        elif kind == "list":
            values = client.lrange(key, 0, -1)
        elif kind == "hash":
            values = [k + b"=" + v for k, v in client.hgetall(key).items()]
        elif kind == "set":
            values = list(client.smembers(key))
        elif kind == "zset":
            values = [member for member, _ in client.zrange(key, 0, -1, withscores=True)]
        elif kind == "stream":
            values = [repr(entry).encode() for entry in client.xrange(key)]
        else:
            values = []
        for value in [key, *values]:
            found.append((f"redis {key.decode(errors='replace')} ({kind})",
                          with_decoded((value or b"").decode("utf-8", errors="replace"))))
    return found


def admin_pages(actions: list[DeferredAction]) -> list[tuple[str, str]]:
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser(
        f"audit-{uuid.uuid4().hex[:6]}", "root@example.org", secrets.token_hex(8)))
    urls = [reverse(f"admin:confirmation_{model}_changelist") for model in ("deferredaction", "delivery", "payout")]
    urls += [reverse("admin:confirmation_deferredaction_change", args=[a.pk]) for a in actions]
    urls += [reverse("admin:confirmation_delivery_change", args=[d.pk])
             for d in Delivery.objects.filter(action__in=actions)]
    urls += [reverse("admin:confirmation_payout_change", args=[p.pk]) for p in Payout.objects.all()]
    pages = []
    for url in urls:
        response = admin.get(url)
        assert response.status_code == 200, (url, response.status_code)
        pages.append((f"admin {url}", response.content.decode()))
    return pages


class Needles:
    """What must not be found, and how to look for it robustly."""

    def __init__(self, token: str, code: str, pair: tuple[int, int], sealed_plain: list[str]):
        self.plain = {"link token": {token, quote(token, safe=""), json.dumps(token)[1:-1],
                                     base64.b64encode(token.encode()).decode().rstrip("=")}}
        for value in sealed_plain:
            self.plain[f"sealed value {value}"] = {value, quote(value, safe=""), json.dumps(value)[1:-1]}
        self.code = re.compile(rf"(?<![0-9A-Za-z.]){code}(?![0-9A-Za-z])")
        low, high = sorted(pair)
        self.canonical = re.compile(rf"(?<![0-9A-Za-z.]){low}\s*,\s*{high}(?![0-9])")
        self.decimals = [re.compile(rf"(?<![0-9A-Za-z.])0[.,]{cents:02d}(?![0-9])") for cents in (low, high)]

    def search(self, chunks: list[tuple[str, str]]) -> list[str]:
        leaks = []
        for where, text in chunks:
            for what, forms in self.plain.items():
                if any(form in text for form in forms):
                    leaks.append(f"{what} in {where}: {self._around(text, forms)}")
            if self.code.search(text):
                leaks.append(f"SMS code in {where}: {self._around_re(text, self.code)}")
            if self.canonical.search(text):
                leaks.append(f"amounts (canonical) in {where}: {self._around_re(text, self.canonical)}")
            if all(pattern.search(text) for pattern in self.decimals):
                leaks.append(f"amounts (decimals) in {where}: {self._around_re(text, self.decimals[0])}")
        return leaks

    @staticmethod
    def _around(text: str, forms: set[str]) -> str:
        index = min(i for i in (text.find(f) for f in forms) if i >= 0)
        return text[max(index - 120, 0):index + 120]

    @staticmethod
    def _around_re(text: str, pattern: re.Pattern) -> str:
        match = pattern.search(text)
        return text[max(match.start() - 120, 0):match.end() + 120]


def recipients_in(chunks: list[tuple[str, str]], recipients: list[str]) -> list[str]:
    return [f"{recipient} in {where}" for where, text in chunks for recipient in recipients
            if recipient.lower() in text.lower()]


# --- the audit ---------------------------------------------------------------------------------------------
@pytest.mark.django_db(transaction=True)
def test_no_secret_anywhere_after_a_full_run_of_every_channel(audit, settings, all_logs, client):  # noqa: F811
    fake, worker, flower = audit
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "CHANNELS": channels_conf(fake)}
    _wait_until_flower_hears_the_worker(flower)
    suffix = uuid.uuid4().hex[:8]
    new_email, pin, memo = f"audit-{suffix}@example.org", f"pin-{secrets.token_hex(6)}", f"memo-{secrets.token_hex(6)}"

    with MonitorTap(django_settings.CELERY_BROKER_URL) as tap:
        # Email, with two sealed form values.
        email_profile = Profile.objects.create(email=f"audit-old-{suffix}@example.org")
        form = SealedEmailForm({"email": new_email, "pin": pin, "memo": memo}, instance=email_profile)
        assert form.is_valid(), form.errors
        email_action = form.save(description="Audit: new email")
        # SMS through the fake Twilio.
        phone_profile = Profile.objects.create(email=f"audit-phone-{suffix}@example.org")
        form = ProfilePhoneForm({"phone": PHONE_TYPED}, instance=phone_profile)
        assert form.is_valid(), form.errors
        sms_before = len(fake.messages)
        sms_action = form.save(description="Audit: new phone")
        # Micro-deposits on the ledger.
        bank_profile = Profile.objects.create(email=f"audit-bank-{suffix}@example.org")
        form = BankAccountForm(dict(IBAN_ACCOUNT), instance=bank_profile)
        assert form.is_valid(), form.errors
        md_action = form.save(description="Audit: new bank account")
        actions = [email_action, sms_action, md_action]
        for action in actions:
            own(client, action)  # the client is the visitor who saved all three

        [message] = wait_for(lambda: worker.mails_to(new_email), timeout=30,
                             what=f"the worker to write the mail\n{worker.output()}")
        token = link_token(message)
        code = code_in(fake.wait_for_messages(sms_before + 1, timeout=30)[-1]["body"])
        wait_for(lambda: all(DeferredAction.objects.get(pk=a.pk).state == State.NOTIFIED for a in actions),
                 timeout=30, what=f"the worker to send all three\n{worker.output()}")
        pair = exported_amounts(md_action)

        # Confirm over HTTP: a wrong code and wrong amounts first (the refusal paths log too).
        wrong_code = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
        assert client.post(reverse("confirmation:code", args=[sms_action.pk]), {"code": wrong_code}).status_code == 400
        wrong_pair = next((a, b) for a in range(1, 99) for b in range(a + 1, 100) if (a, b) != tuple(sorted(pair)))
        assert client.post(reverse("confirmation:deposits", args=[md_action.pk]),
                           {"first": f"0.{wrong_pair[0]:02d}", "second": f"0.{wrong_pair[1]:02d}"}).status_code == 400
        assert client.get(reverse("confirmation:link", args=[token])).status_code == 200
        assert client.post(reverse("confirmation:link", args=[token])).status_code == 302
        assert client.post(reverse("confirmation:code", args=[sms_action.pk]), {"code": code}).status_code == 302
        assert client.post(reverse("confirmation:deposits", args=[md_action.pk]),
                           {"first": f"0.{pair[1]:02d}", "second": f"0.{pair[0]:02d}"}).status_code == 302
        wait_for(lambda: all(DeferredAction.objects.get(pk=a.pk).state == State.APPLIED for a in actions),
                 timeout=30, what=f"the worker to apply all three\n{worker.output()}")
        for action in actions:
            response = client.get(reverse("confirmation:status", args=[action.pk]), HTTP_ACCEPT="application/json")
            assert response.json()["state"] == "applied"

    assert Profile.objects.get(pk=email_profile.pk).email == new_email
    assert Profile.objects.get(pk=phone_profile.pk).phone == PHONE
    assert Profile.objects.get(pk=bank_profile.pk).bank_iban == IBAN

    # Flower has seen every task of the three actions succeed.
    ids = {str(a.pk) for a in actions}

    def flower_saw_all():
        tasks = flower.json("/api/tasks")
        mine = {task_id: info for task_id, info in tasks.items()
                if any(i in f"{info.get('args')} {info.get('kwargs')}" for i in ids)}
        done = [info for info in mine.values() if info.get("name") in TASKS and info.get("state") == "SUCCESS"]
        return (tasks, mine) if len(done) >= 3 * len(TASKS) else None

    tasks, mine = wait_for(flower_saw_all, timeout=20, interval=0.5, what=f"flower to see the tasks\n{flower.output()}")

    # Collect everything.
    chunks: list[tuple[str, str]] = []
    chunks += database_rows()
    chunks += redis_values(django_settings.CELERY_BROKER_URL)
    chunks += [("redis MONITOR", with_decoded(command)) for command in tap.commands]
    chunks += [(f"log {r.name}", record_text(r)) for r in all_logs]
    for process, name in ((worker, "worker"), (flower, "flower")):
        chunks += [(f"{name} log", with_decoded(line)) for line in process.log.read_text(errors="replace").splitlines()]
    chunks += [(f"flower /api/tasks {task_id}", json.dumps(info)) for task_id, info in tasks.items()]
    chunks += [(f"flower /api/task/info/{task_id}", json.dumps(flower.json(f"/api/task/info/{task_id}")))
               for task_id in mine]
    admin = admin_pages(actions)
    chunks += admin

    # The collection is real: it holds what the run produced (so a search that finds nothing means something).
    everything = "\n".join(text for _, text in chunks)
    digests = list(Delivery.objects.filter(action__in=actions).values_list("secret_digest", flat=True))
    assert all(digest and digest in everything for digest in digests)
    assert any(where.startswith("redis MONITOR") for where, _ in chunks) and len(tap.commands) > 50
    assert any(where.startswith("redis ") and "(" in where for where, _ in chunks)
    assert "send_notification" in worker.output(tail=10**9) and "DEBUG" in worker.output(tail=10**9)
    assert any(r.name == "django.db.backends" for r in all_logs)
    assert sum(where.startswith("flower /api/task/info") for where, _ in chunks) >= 9
    worker_log = worker.log.read_text(errors="replace")
    assert "SELECT" in worker_log or "UPDATE" in worker_log, "the worker logged its SQL"

    needles = Needles(token, code, pair, [pin, memo])
    sources: dict[str, int] = {}
    for where, _ in chunks:
        source = " ".join(where.split()[:2]) if where.startswith(("log", "flower /api/tasks")) else where.split()[0]
        sources[source] = sources.get(source, 0) + 1
    print(f"secrets audit: {len(chunks)} chunks, {len(everything)} characters searched: {sorted(sources.items())}")
    # A control: the mail the worker wrote (its text: Django 6 may encode it quoted-printable) and the SMS the
    # fake received do hold the secrets.
    mail_text = email.message_from_string(message, policy=email.policy.default).get_body(("plain",)).get_content()
    assert needles.search([("mail", mail_text)]) and needles.search([("sms", json.dumps(fake.messages))])
    leaks = needles.search(chunks)
    assert leaks == [], "\n".join(leaks[:20])

    # The admin shows recipients masked only.
    recipients = [new_email, PHONE, PHONE[2:], IBAN, IBAN_ACCOUNT["bank_iban"]]
    assert recipients_in(admin, recipients) == []
    assert sum("***" in text for _, text in admin) >= 3  # masked recipients are shown


def test_the_search_finds_what_it_looks_for():
    """The needles are not blind: planted secrets, in every form the audit looks for, are found."""
    token = "A" * 21 + "-_" + "b" * 20
    needles = Needles(token, "042137", (7, 42), ["pin-123"])
    planted = [("t1", f"/confirm/{token}/"), ("t2", quote(token)), ("t3", json.dumps({"t": token})),
               ("t4", with_decoded(base64.b64encode(json.dumps([token]).encode()).decode())),
               ("c1", "042137 is your code"), ("a1", "amounts 7,42"), ("a2", "0.42 and 0.07"), ("s1", "pin-123")]
    found = needles.search(planted)
    assert len(found) == len(planted), found
    innocent = [("x1", "2026-01-01 10:00:00.042137+00:00"), ("x2", "uuid 1a042137b"), ("x3", "17,42 and 0.421"),
                ("x4", "0.07 only")]
    assert needles.search(innocent) == []
