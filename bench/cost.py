"""Cost per action: database round trips and Redis commands of each stage of one email-confirmed change.

Stages, each run as production runs it: ``form.is_valid()`` and ``form.save()`` (inside
``transaction.atomic()``, as a view, so the commit and the ``on_commit`` publish count), the tasks
``confirmation.generate_token``, ``confirmation.send_notification`` and ``confirmation.apply_action`` (each
message popped from the real broker queue and its task run with ``Task.apply()``: the same task body,
signals and ``on_commit`` publishes as in a worker), ``deferred_confirmation.pipeline.confirm(token)`` (what the link
view's POST calls), and the ``confirmation.expire_stale`` sweep, per action swept.  Averaged over ``N`` actions.

Database round trips (PostgreSQL, psycopg 3): every statement Django executes (counted with
``connection.execute_wrapper``, savepoints included) plus every command psycopg sends on its own:
``BEGIN`` (psycopg 3 sends it as a separate command, waiting for its reply, before the first statement of a
transaction; it is not piggybacked on that statement), ``COMMIT`` and ``ROLLBACK``.  Counted by wrapping
psycopg's ``Connection._exec_command``, the one path those take.

Redis commands: the broker is a private ``redis-server`` started for this benchmark alone (free port, no
persistence), so ``INFO commandstats`` before and after a stage counts exactly that stage's commands (the
``INFO`` calls themselves left out).  A stage's own commands are its publishes; what a worker spends to
receive and acknowledge each message is measured separately, with a real worker consuming messages from
that private server, less its idle background (heartbeats, empty polls) measured over an idle window.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from bench.report import stop

N = 50
QUEUE = "confirmation.email"
IGNORED = {"info"}


# --- a private redis-server --------------------------------------------------------------------------
@contextmanager
def private_redis() -> Iterator[int]:
    from bench._smtp import free_port

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-cost-redis-") as tmp:
        server = subprocess.Popen(
            [shutil.which("redis-server") or "redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", tmp], stdout=subprocess.DEVNULL)
        try:
            import redis

            client = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("redis-server did not start") from None
                    time.sleep(0.05)
            client.close()
            yield port
        finally:
            server.terminate()
            server.wait(timeout=10)


class RedisCounter:
    """Server-wide command counts of the private server (``INFO commandstats``), ``INFO`` left out."""

    def __init__(self, port: int) -> None:
        import redis

        self.client = redis.Redis(port=port)

    def snapshot(self) -> Counter:
        stats = self.client.info("commandstats")
        return Counter({name.removeprefix("cmdstat_").split("|")[0]: value["calls"] for name, value in stats.items()
                        if name.removeprefix("cmdstat_") not in IGNORED})


# --- database round trips --------------------------------------------------------------------------
class DBCounter:
    """Round trips of the default connection in this thread: statements plus BEGIN/COMMIT/ROLLBACK."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.commands: list[str] = []
        self.active = False

    def install(self) -> None:
        import psycopg
        from django.db import connection

        counter = self
        original = psycopg.Connection._exec_command

        def _exec_command(conn: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
            if counter.active:
                text = command.decode() if isinstance(command, bytes) else str(command)
                counter.commands.append(text.split()[0].upper())
            return (yield from original(conn, command, *args, **kwargs))

        psycopg.Connection._exec_command = _exec_command

        def wrapper(execute: Callable, sql: str, params: Any, many: bool, context: Any) -> Any:
            if counter.active:
                counter.statements.append(sql)
            return execute(sql, params, many, context)

        connection.execute_wrappers.append(wrapper)

    @contextmanager
    def counting(self) -> Iterator[None]:
        self.statements, self.commands = [], []
        self.active = True
        try:
            yield
        finally:
            self.active = False

    @property
    def round_trips(self) -> int:
        return len(self.statements) + len(self.commands)

    def shape(self) -> list[str]:
        """The round trips in order-independent short form, e.g. ``BEGIN``, ``SELECT confirmation_delivery``."""
        shapes = list(self.commands)
        for sql in self.statements:
            words = sql.split()
            verb = words[0].upper()
            table = re.search(r'(?:FROM|INTO|UPDATE)\s+"?(\w+)"?', sql, re.IGNORECASE)
            suffix = " FOR UPDATE" if "FOR UPDATE" in sql.upper() else ""
            if verb in ("SAVEPOINT", "RELEASE", "ROLLBACK"):  # savepoint names differ every time
                shapes.append(" ".join(w for w in words if not w.startswith('"')).upper())
                continue
            shapes.append(f"{verb} {table.group(1) if table else words[1][:40]}{suffix}")
        return shapes


# --- the stages ------------------------------------------------------------------------------------
def pop_message(port: int, queue: str) -> tuple[str, list, dict]:
    """The oldest message on ``queue``: (task name, args, kwargs), removed (outside any counted window)."""
    import redis

    client = redis.Redis(port=port)
    raw = client.rpop(queue)  # kombu LPUSHes and BRPOPs: the right end is the oldest
    client.close()
    if raw is None:
        raise RuntimeError(f"no message on {queue}")
    message = json.loads(raw)
    body = message["body"]
    if message["properties"].get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, kwargs, _embed = json.loads(body)
    return message["headers"]["task"], args, kwargs


class Measured:
    def __init__(self) -> None:
        self.db: dict[str, list[int]] = {}
        self.redis: dict[str, list[int]] = {}
        self.shapes: dict[str, Counter] = {}
        self.redis_kinds: dict[str, Counter] = {}

    def add(self, stage: str, db: DBCounter, before: Counter, after: Counter) -> None:
        diff = after - before
        self.db.setdefault(stage, []).append(db.round_trips)
        self.redis.setdefault(stage, []).append(sum(diff.values()))
        self.shapes.setdefault(stage, Counter()).update(db.shape())
        self.redis_kinds.setdefault(stage, Counter()).update(diff)

    def mean_db(self, stage: str) -> float:
        return sum(self.db[stage]) / len(self.db[stage])

    def mean_redis(self, stage: str) -> float:
        return sum(self.redis[stage]) / len(self.redis[stage])


def measure_stages(port: int, db: DBCounter, redis_counter: RedisCounter) -> Measured:
    from django.contrib.auth import get_user_model
    from django.core import mail
    from django.db import transaction
    from django.utils.datastructures import MultiValueDict

    from deferred_confirmation.django_integration.models import DeferredAction
    from deferred_confirmation.pipeline import confirm
    from deferred_confirmation.workers import tasks
    from example.accounts.forms import EmailChangeForm

    User = get_user_model()
    users = User.objects.bulk_create([User(username=f"c{i}", email=f"c{i}@example.com") for i in range(N + 3)])
    measured = Measured()
    task_of = {"confirmation.generate_token": tasks.generate_token,
               "confirmation.send_notification": tasks.send_notification,
               "confirmation.apply_action": tasks.apply_action}

    @contextmanager
    def stage(name: str, record: bool) -> Iterator[None]:
        before = redis_counter.snapshot()
        with db.counting():
            yield
        after = redis_counter.snapshot()
        if record:
            measured.add(name, db, before, after)

    def run_task(queue: str, expected: str, record: bool) -> None:
        name, args, kwargs = pop_message(port, queue)
        if name != expected:
            raise RuntimeError(f"expected {expected} on {queue}, found {name}")
        with stage(expected.removeprefix("confirmation."), record):
            result = task_of[name].apply(args=args, kwargs=kwargs)
        if result.result is not True:
            raise RuntimeError(f"{name}{args} returned {result.result!r}")

    for i, user in enumerate(users):
        record = i >= 3  # the first three warm up connections, caches and the producer pool
        form = EmailChangeForm(MultiValueDict({"email": [f"cost-{i}@example.org"], "csrfmiddlewaretoken": ["x"]}),
                               instance=user)
        with stage("is_valid", record):
            if not form.is_valid():
                raise RuntimeError(form.errors.as_text())
        with stage("save", record), transaction.atomic():
            action = form.save(user=user)
        mail.outbox = []
        run_task(QUEUE, "confirmation.generate_token", record)
        run_task(QUEUE, "confirmation.send_notification", record)
        (message,) = mail.outbox
        token = re.search(r"/confirm/([^/\s]+)/", message.body).group(1)
        with stage("confirm", record):
            result = confirm(token)
        if not result.ok:
            raise RuntimeError(f"confirm: {result.status}")
        run_task("confirmation.apply", "confirmation.apply_action", record)
        action.refresh_from_db()
        if action.state != "applied":
            raise RuntimeError(f"action {action.pk} is {action.state}")

    # The expire sweep, per action: N pending actions made past due (not counted), one sweep.
    for i, user in enumerate(users[:N]):
        form = EmailChangeForm(MultiValueDict({"email": [f"stale-{i}@example.org"]}), instance=user)
        form.is_valid()
        with transaction.atomic():
            form.save(user=user)
    stale = DeferredAction.objects.filter(state="pending")
    stale.update(valid_until=time_ago(timedelta(minutes=1)))
    with stage("expire", True):
        swept = tasks.expire_stale.apply().result
    if swept != N:
        raise RuntimeError(f"expire swept {swept}, not {N}")
    return measured


def time_ago(delta: timedelta) -> Any:
    from django.utils import timezone

    return timezone.now() - delta


# --- what a worker spends per message ----------------------------------------------------------------
def measure_consumption(port: int, redis_counter: RedisCounter, messages: int = N) -> tuple[float, Counter, float]:
    """A real worker (as the Procfile runs it) on a queue of no-op task messages: commands per message
    received, run and acknowledged, less the worker's idle background; returns (per message, kinds, idle/s)."""
    from deferred_confirmation.workers import app, tasks

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "CELERY_BROKER_URL": f"redis://127.0.0.1:{port}/0"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "deferred_confirmation.workers", "worker", "-Q", QUEUE, "-n",
         f"bench-cost-{os.getpid()}@%h",
         "-c", "2", "-l", "WARNING"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 90
        while not app.control.ping(timeout=1):
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the worker did not start")
        time.sleep(3)  # past startup's burst
        idle_start, started = redis_counter.snapshot(), time.monotonic()
        time.sleep(6)
        idle = redis_counter.snapshot() - idle_start
        idle_seconds = time.monotonic() - started

        # Publish the no-op messages (a delivery that does not exist: one SELECT, no publish of its own).
        published_before, started = redis_counter.snapshot(), time.monotonic()
        for i in range(messages):
            tasks.generate_token.apply_async(args=(10**9 + i, 0), queue=QUEUE)
        acks_before = published_before.get("hdel", 0)
        deadline = time.monotonic() + 60
        while True:
            now = redis_counter.snapshot()
            if now.get("hdel", 0) - acks_before >= messages:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not acknowledge the messages in time")
            time.sleep(0.05)
        busy_seconds = time.monotonic() - started
        total = now - published_before
    finally:
        stop(worker)
    # The worker consumes while the messages are published: remove what the publishes cost (measured in
    # the stages: one LPUSH and one PUBLISH, the task-sent event, each), and the idle background scaled to
    # the busy window.
    published = Counter({"lpush": messages, "publish": messages})
    rate = {name: calls / idle_seconds for name, calls in idle.items()}
    worker_side = Counter()
    for name in set(total) | set(rate):
        value = total.get(name, 0) - published.get(name, 0) - rate.get(name, 0) * busy_seconds
        if value > 0.5:
            worker_side[name] = round(value)
    return sum(worker_side.values()) / messages, worker_side, sum(idle.values()) / idle_seconds


def main() -> None:
    from bench.report import Result, Row, fresh_database

    with private_redis() as port:
        os.environ["CELERY_BROKER_URL"] = f"redis://127.0.0.1:{port}/0"
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
        fresh_database(os.environ.get("BENCH_PG_NAME", "bench_deferred_confirmation"))
        import django

        django.setup()
        from django.conf import settings
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
        redis_counter = RedisCounter(port)
        db = DBCounter()
        db.install()
        measured = measure_stages(port, db, redis_counter)
        redis_counter.client.flushall()
        per_message, consume_kinds, idle_rate = measure_consumption(port, redis_counter)
        report(measured, per_message, consume_kinds, idle_rate, Result, Row)


# The least each stage could do, and why (see bench/notes/cost.md for the argument in full).
MINIMUM_DB = {
    "is_valid": (2, "the form's own uniqueness query + one send-limit count"),
    "save": (8, "the edited row read as stored (the contract: refused if deleted, fingerprinted) + BEGIN + "
                "serialise the recipient (advisory lock) + send-limit count + 3 INSERTs (send record, action, "
                "delivery) + COMMIT"),
    "generate_token": (2, "read the delivery's channel (its secret's kind) + one conditional UPDATE in autocommit "
                          "whose WHERE checks generation, status and the action's state: every change that ends "
                          "an action also updates its deliveries, so no lock is needed (the ORM way: BEGIN + the "
                          "delivery locked with its action read + UPDATE + COMMIT = 4)"),
    "send_notification": (2, "claim and read in one statement (PostgreSQL: WITH claimed AS (UPDATE ... RETURNING) "
                             "SELECT ... JOIN action, user) + record in one (WITH sent AS (UPDATE delivery ... "
                             "RETURNING action_id) UPDATE action ... WHERE state = 'pending'); the ORM has neither "
                             "UPDATE ... RETURNING nor data-modifying CTEs: read + claim + BEGIN + 2 conditional "
                             "UPDATEs + COMMIT = 6"),
    "confirm": (6, "find the delivery by digest (and whether its action has others) + BEGIN + lock action + "
                   "UPDATE the delivery WHERE its digest and status still match + UPDATE action + COMMIT"),
    "apply_action": (7, "BEGIN + lock action + lock target + the form's own validation queries (1 here) + "
                        "UPDATE target + UPDATE action + COMMIT"),
    "expire": (0.08, "per action, one batch of 50: BEGIN + UPDATE actions WHERE id IN (SELECT ... FOR UPDATE "
                     "SKIP LOCKED) + UPDATE their deliveries + COMMIT = 4/50"),
}
MINIMUM_REDIS = {
    "is_valid": (0, "no broker"),
    "save": (1, "LPUSH generate_token"),
    "generate_token": (1, "LPUSH send_notification"),
    "send_notification": (0, "publishes nothing"),
    "confirm": (1, "LPUSH apply_action"),
    "apply_action": (0, "publishes nothing"),
    "expire": (0, "publishes nothing"),
}
SHORT = {"generate_token": "generate", "send_notification": "send", "apply_action": "apply"}
STAGES = ["is_valid", "save", "generate_token", "send_notification", "confirm", "apply_action", "expire"]


def report(measured: Measured, per_message: float, consume_kinds: Counter, idle_rate: float, Result: Any,
           Row: Any) -> None:
    rows = []
    for stage in STAGES:
        db_value = measured.mean_db(stage) / (N if stage == "expire" else 1)
        redis_value = measured.mean_redis(stage) / (N if stage == "expire" else 1)
        label = "expire sweep (per action)" if stage == "expire" else stage
        rows.append(Row(f"{label} DB round trips", round(db_value, 2), MINIMUM_DB[stage][0], "minimum possible"))
        rows.append(Row(f"{label} Redis commands", round(redis_value, 2), MINIMUM_REDIS[stage][0],
                        "minimum possible"))
    rows.append(Row("worker: Redis commands to receive + ack one message", round(per_message, 1), 2,
                    "minimum possible"))
    db_total = sum(measured.mean_db(s) for s in STAGES if s != "expire") + measured.mean_db("expire") / N
    redis_total = sum(measured.mean_redis(s) for s in STAGES) + 3 * per_message  # 3 messages per action
    rows.append(Row("whole action DB round trips", round(db_total, 2),
                    sum(MINIMUM_DB[s][0] for s in STAGES), "minimum possible"))
    rows.append(Row("whole action Redis commands (3 messages)", round(redis_total, 1),
                    sum(MINIMUM_REDIS[s][0] for s in STAGES) + 3 * 2, "minimum possible"))
    for row in rows:
        print(f"{row.metric}: {row.ours} (minimum {row.baseline})")
    lines = ["Per stage, averaged over the recorded actions; what each round trip and command was:", ""]
    for stage in STAGES:
        count = len(measured.db[stage])
        shapes = ", ".join(f"{n / count:g}× {shape}" for shape, n in sorted(measured.shapes[stage].items()))
        kinds = ", ".join(f"{n / count:g}× {kind.upper()}" for kind, n in sorted(measured.redis_kinds[stage].items()))
        runs = f"one sweep of {N} actions, per sweep" if stage == "expire" else f"{count} runs"
        lines.append(f"- **{stage}** ({runs}): DB: {shapes or 'none'}; Redis: {kinds or 'none'}. "
                     f"Minimum DB {MINIMUM_DB[stage][0]}: {MINIMUM_DB[stage][1]}; minimum Redis "
                     f"{MINIMUM_REDIS[stage][0]}: {MINIMUM_REDIS[stage][1]}.")
    lines += ["", f"- **worker, per message** ({N} no-op messages, a real worker as in the Procfile, idle "
              f"background of {idle_rate:.1f} commands/s subtracted): "
              + ", ".join(f"{n / N:g}× {kind.upper()}" for kind, n in sorted(consume_kinds.items()))
              + ". Minimum 2: a reliable queue needs one command to take a message into a processing list "
              "(BLMOVE) and one to drop it on acknowledgement (LREM); kombu's own floor, without task events, "
              "is 9 (BRPOP, MULTI ZADD HSET EXEC to record it unacked, MULTI ZREM HDEL EXEC to ack)."]
    notes = (f"One email-confirmed change, from `is_valid()` to applied, {N} recorded actions (after 3 warm-up) on "
             "PostgreSQL with a private Redis broker; method in the module docstring of `bench/cost.py`. "
             "Baseline = the minimum we believe possible for the same guarantees (locks, one transaction per "
             "state change, the on-commit outbox), argued per stage below.\n\n" + "\n".join(lines))
    categories = [s for s in STAGES if s != "expire"]
    Result(
        name="cost", title="Cost per action: database round trips and Redis commands per stage", order=5,
        rows=rows, notes=notes,
        plot={"kind": "bar", "title": "Per stage of one action: round trips and commands, ours vs minimum",
              "xlabel": "", "ylabel": "count", "log": False,
              "categories": [SHORT.get(s, s) for s in categories],
              "series": {"DB round trips": [measured.mean_db(s) for s in categories],
                         "DB minimum": [MINIMUM_DB[s][0] for s in categories],
                         "Redis commands": [measured.mean_redis(s) for s in categories],
                         "Redis minimum": [MINIMUM_REDIS[s][0] for s in categories]}},
    ).write()


if __name__ == "__main__":
    main()
