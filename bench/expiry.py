"""Expiry at scale: the beat task ``confirmation.expire_stale`` versus one raw UPDATE, on 1,000,000 stale actions.

What is measured, on the same starting data each time:

- **ours**: the real beat task body, ``deferred_confirmation.workers.app.tasks["confirmation.expire_stale"].apply()``
  (Celery's own tracer, as a worker runs it: ``deferred_confirmation.pipeline.lifecycle.expire()`` in batches of
  BATCH_SIZE, each one short transaction with ``SELECT ... FOR UPDATE SKIP LOCKED``), in a fresh Python process with
  Django set up, timed inside that process around ``apply()``;
- **baseline**: one raw SQL statement in one transaction that does the same thing to the same rows: open actions
  past ``valid_until`` become ``expired``, and their deliveries not ``confirmed``/``failed`` become
  ``superseded``.  The baseline updates the deliveries too, because the task does: without them it would do
  half the work.  No ``action_expired`` signal in either (the example project has no receiver, and the task
  then skips that query).

Data: STALE (1,000,000) open actions past their ``valid_until`` (10 % pending with a queued delivery and no
digest, 90 % notified with a sent delivery; due from 1 minute to 30 days ago, stored oldest first as a table
filled over time would be), plus OTHER (100,000) rows the sweep must leave alone (half still open and not due,
half already terminal), each action with one delivery; filled server-side (``INSERT ...
SELECT generate_series``, secondary indexes built after the fill), ``VACUUM ANALYZE``-d, and kept as a
template database.  Each run gets its own copy (``CREATE DATABASE ... TEMPLATE ... STRATEGY FILE_COPY``), so
both start from the same bytes: no dead tuples or warm pages left by the other.  After each run the states are
counted and must be the same for both.

Also measured, while the task runs: the peak RSS of its process (``ru_maxrss`` from ``wait4``, and psutil
polled every 10 ms), against the RSS of an idle Django process (settings loaded, tasks imported, one query
made); and how long each of its transactions held its row locks, from ``pg_stat_activity`` polled every 10 ms
(``clock_timestamp() - xact_start`` of the task's backend, found by its ``application_name``): the longest
is the longest any row stayed locked, give or take the 10 ms polling interval.

Environment: BENCH_EXPIRY_STALE (default 1000000), BENCH_EXPIRY_OTHER (default 100000), BENCH_KEEP=1 keeps the
databases.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

from bench.report import Result, Row

NAME = "expiry"
TITLE = "Expiry at scale: the beat task versus one raw UPDATE"
STALE = int(os.environ.get("BENCH_EXPIRY_STALE", "1000000"))
OTHER = int(os.environ.get("BENCH_EXPIRY_OTHER", "100000"))
TEMPLATE_DB = "bench_dc_b_exp_tpl"
RUN_DB = "bench_dc_b_exp_run"
APP_NAME = "bench_expiry"
POLL = 0.01
RSS_BUDGET_MB = 200.0
LOCK_BUDGET_MS = 1000.0
ADMIN_DSN = "host=127.0.0.1 user=postgres dbname=postgres"

# state, share of the rows in percent, valid_until offset from now in minutes (g spreads it), delivery status
STALE_MIX = "CASE WHEN g %% 10 = 0 THEN 'pending' ELSE 'notified' END"
OTHER_MIX = ("CASE WHEN g %% 4 = 0 THEN 'notified' WHEN g %% 4 = 1 THEN 'pending' "
             "WHEN g %% 4 = 2 THEN 'applied' ELSE 'expired' END")
DELIVERY_STATUS = ("CASE a.state WHEN 'pending' THEN 'queued' WHEN 'notified' THEN 'sent' "
                   "WHEN 'applied' THEN 'confirmed' ELSE 'superseded' END")

FILL = """
    WITH a AS (
        INSERT INTO confirmation_deferredaction (id, state, form_class, form_data, form_prefix, object_pk,
            target_fingerprint, description, channel_policy, created_at, updated_at, valid_until, confirmed_at,
            applied_at, failure_reason, content_type_id, user_id)
        SELECT gen_random_uuid(), s.state, 'example.accounts.forms.EmailChangeForm',
               jsonb_build_object('email', 'user' || g || '-new@example.com'), NULL, (g %% 50000)::text,
               md5(g::text) || md5((-g)::text), 'Change of email address', 'any', v.valid_until - interval '3 days',
               v.valid_until - interval '3 days', v.valid_until,
               CASE WHEN s.state = 'applied' THEN v.valid_until - interval '2 days' END,
               CASE WHEN s.state = 'applied' THEN v.valid_until - interval '2 days' END, '', %(content_type)s, NULL
        FROM generate_series(1, %(n)s) AS g
        CROSS JOIN LATERAL (SELECT {mix} AS state) AS s
        CROSS JOIN LATERAL (SELECT CASE WHEN %(due)s OR s.state IN ('applied', 'expired')
                                        THEN now() - interval '1 minute' - (%(n)s - g) * interval '30 days' / %(n)s
                                        ELSE now() + interval '1 hour' + g * interval '3 days' / %(n)s
                                   END AS valid_until) AS v
        RETURNING id, state, form_data, created_at, valid_until)
    INSERT INTO confirmation_delivery (action_id, channel, recipient, secret_digest, generation, attempts, status,
        status_detail, provider_ref, sent_at, confirmed_at, created_at, updated_at, expires_at, send_attempts,
        sending_until)
    SELECT a.id, 'email', a.form_data ->> 'email',
           CASE WHEN a.state = 'pending' THEN '' ELSE encode(sha256(convert_to(a.id::text, 'UTF8')), 'hex') END,
           CASE WHEN a.state = 'pending' THEN 0 ELSE 1 END, 0, {status}, '',
           CASE WHEN a.state = 'pending' THEN '' ELSE 'ref-' || md5(a.id::text) END,
           CASE WHEN a.state <> 'pending' THEN a.created_at + interval '5 seconds' END,
           CASE WHEN a.state = 'applied' THEN a.created_at + interval '1 day' END,
           a.created_at, a.created_at, a.valid_until, CASE WHEN a.state = 'pending' THEN 0 ELSE 1 END, NULL
    FROM a"""

SECONDARY_INDEXES = """
    SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index i
    WHERE indrelid IN ('confirmation_deferredaction'::regclass, 'confirmation_delivery'::regclass)
      AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"""

# The baseline: the task's two updates, as one statement in one transaction.
RAW_EXPIRE = """
    WITH expired AS (
        UPDATE confirmation_deferredaction SET state = 'expired', updated_at = now()
        WHERE state IN ('pending', 'notified') AND valid_until <= now()
        RETURNING id),
    superseded AS (
        UPDATE confirmation_delivery SET status = 'superseded', updated_at = now()
        WHERE action_id IN (SELECT id FROM expired) AND status NOT IN ('confirmed', 'failed')
        RETURNING 1)
    SELECT (SELECT count(*) FROM expired), (SELECT count(*) FROM superseded)"""

OUTCOME = """
    SELECT a.state, d.status, count(*) FROM confirmation_deferredaction a
    JOIN confirmation_delivery d ON d.action_id = a.id GROUP BY 1, 2 ORDER BY 1, 2"""


# --- the child processes --------------------------------------------------------------------------------
def _child_idle() -> dict[str, Any]:
    """An idle Django process: settings loaded, the tasks imported, one query made."""
    import django

    django.setup()
    from django.db import connection

    from deferred_confirmation import workers
    from deferred_confirmation.pipeline import dispatch

    workers.app.tasks[dispatch.EXPIRE_STALE]
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM confirmation_deferredaction WHERE state = 'pending' AND false")
    return {}


def _child_task() -> dict[str, Any]:
    """The beat task's body, run the way a worker runs it (Celery's tracer), timed around ``apply()``."""
    import django

    django.setup()
    from django.db import connection

    from deferred_confirmation import workers
    from deferred_confirmation.pipeline import dispatch

    task = workers.app.tasks[dispatch.EXPIRE_STALE]
    connection.ensure_connection()
    started = time.perf_counter()
    result = task.apply()
    seconds = time.perf_counter() - started
    if result.failed():
        raise RuntimeError(f"expire_stale failed: {result.result!r}")
    return {"count": result.result, "seconds": seconds}


CHILDREN = {"--idle": _child_idle, "--task": _child_task}


# --- measuring -------------------------------------------------------------------------------------------
class Poller(threading.Thread):
    """Polls one process's RSS (psutil) and its backends' open transactions (pg_stat_activity)."""

    def __init__(self, pid: int | None, database: str) -> None:
        super().__init__(daemon=True)
        self.pid, self.database = pid, database
        self.stop = threading.Event()
        self.peak_rss = 0
        self.transactions: dict[Any, float] = {}  # (backend pid, xact_start) -> longest age seen, seconds

    def run(self) -> None:
        import psutil
        import psycopg

        process = psutil.Process(self.pid) if self.pid else None
        with psycopg.connect(ADMIN_DSN, autocommit=True) as db:
            while not self.stop.is_set():
                if process is not None:
                    with contextlib.suppress(psutil.Error):
                        self.peak_rss = max(self.peak_rss, process.memory_info().rss)
                rows = db.execute(
                    "SELECT pid, xact_start, extract(epoch FROM clock_timestamp() - xact_start) FROM pg_stat_activity "
                    "WHERE datname = %s AND application_name = %s AND xact_start IS NOT NULL",
                    (self.database, APP_NAME)).fetchall()
                for pid, start, age in rows:
                    key = (pid, start)
                    self.transactions[key] = max(self.transactions.get(key, 0.0), float(age))
                time.sleep(POLL)

    def finish(self) -> None:
        self.stop.set()
        self.join()


def _run_child(flag: str, database: str, poll: bool = False) -> dict[str, Any]:
    """Run a child (``python -m bench.expiry --idle|--task``) on ``database``; its output, peak RSS (wait4's
    ru_maxrss and psutil's) and, with ``poll``, its transactions."""
    env = {**os.environ, "BENCH_PG_NAME": database, "PGAPPNAME": APP_NAME, "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)  # set by bench.settings in this process (the template's): BENCH_PG_NAME decides
    with tempfile.TemporaryFile("w+") as out:
        child = subprocess.Popen([sys.executable, "-m", "bench.expiry", flag], stdout=out, env=env)
        poller = Poller(child.pid, database) if poll else None
        if poller is not None:
            poller.start()
        _pid, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        if poller is not None:
            poller.finish()
        out.seek(0)
        text = out.read()
    if child.returncode != 0:
        raise RuntimeError(f"bench.expiry {flag} exited {child.returncode}: {text[-2000:]}")
    result = json.loads(text.strip().splitlines()[-1])
    result["maxrss_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    if poller is not None:
        result["psutil_peak_mb"] = poller.peak_rss / 2**20
        result["transactions"] = sorted(poller.transactions.values())
        in_order = [age for _key, age in sorted(poller.transactions.items(), key=lambda item: item[0][1])]
        result["longest_at"] = in_order.index(max(in_order)) + 1 if in_order else 0
        result["last_ms"] = in_order[-1] * 1000 if in_order else 0.0
    return result


def _admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_DSN, autocommit=True) as admin:
        admin.execute(sql)


def _clone() -> float:
    started = time.monotonic()
    _admin(f'DROP DATABASE IF EXISTS "{RUN_DB}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{RUN_DB}" TEMPLATE "{TEMPLATE_DB}" STRATEGY FILE_COPY')
    return time.monotonic() - started


def _outcome(database: str) -> list[tuple[str, str, int]]:
    import psycopg

    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={database}") as db:
        return [tuple(row) for row in db.execute(OUTCOME).fetchall()]


def _build_template() -> dict[str, Any]:
    """The starting state, once: migrate, fill, index, VACUUM ANALYZE (in this process, on TEMPLATE_DB)."""
    from bench.report import fresh_database

    os.environ["BENCH_PG_NAME"] = TEMPLATE_DB
    fresh_database(TEMPLATE_DB)
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.contenttypes.models import ContentType
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    started = time.monotonic()
    content_type = ContentType.objects.get_for_model(get_user_model()).pk
    with connection.cursor() as cursor:
        cursor.execute(SECONDARY_INDEXES)
        indexes = cursor.fetchall()
        for name, _definition in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        for mix, count, due in ((STALE_MIX, STALE, True), (OTHER_MIX, OTHER, False)):
            if count:
                cursor.execute(FILL.format(mix=mix, status=DELIVERY_STATUS),
                               {"n": count, "due": due, "content_type": content_type})
        for _name, definition in indexes:
            cursor.execute(definition)
        cursor.execute("VACUUM ANALYZE confirmation_deferredaction")
        cursor.execute("VACUUM ANALYZE confirmation_delivery")
        cursor.execute("SELECT pg_database_size(current_database())")
        size_mb = cursor.fetchone()[0] / 2**20
    connection.close()
    return {"fill_s": time.monotonic() - started, "db_mb": size_mb}


def _raw_update() -> dict[str, Any]:
    import psycopg

    poller = Poller(None, RUN_DB)
    poller.start()
    with psycopg.connect(f"host=127.0.0.1 user=postgres dbname={RUN_DB} application_name={APP_NAME}") as db:
        started = time.perf_counter()
        actions, deliveries = db.execute(RAW_EXPIRE).fetchone()
        db.commit()
        seconds = time.perf_counter() - started
    poller.finish()
    return {"count": actions, "deliveries": deliveries, "seconds": seconds,
            "transactions": sorted(poller.transactions.values())}


def main() -> int:
    started = time.monotonic()
    template = _build_template()
    print(f"template: {STALE:,} stale + {OTHER:,} other actions with a delivery each, {template['db_mb']:.0f} MB, "
          f"filled in {template['fill_s']:.0f} s", flush=True)
    idle = _run_child("--idle", TEMPLATE_DB)
    print(f"idle Django process: {idle['maxrss_mb']:.0f} MB RSS", flush=True)

    clone_s = _clone()
    raw = _raw_update()
    raw_outcome = _outcome(RUN_DB)
    print(f"raw UPDATE: {raw['count']:,} actions, {raw['deliveries']:,} deliveries in {raw['seconds']:.1f} s "
          f"(copy of the template: {clone_s:.0f} s)", flush=True)

    clone_s = _clone()
    task = _run_child("--task", RUN_DB, poll=True)
    task_outcome = _outcome(RUN_DB)
    longest = max(task["transactions"], default=0.0)
    print(f"beat task: {task['count']:,} actions in {task['seconds']:.1f} s; peak RSS {task['maxrss_mb']:.0f} MB "
          f"(psutil {task['psutil_peak_mb']:.0f} MB); {len(task['transactions'])} transactions seen, longest "
          f"{longest * 1000:.0f} ms, the {_ordinal(task['longest_at'])}; the last {task['last_ms']:.0f} ms "
          f"(copy of the template: {clone_s:.0f} s)", flush=True)
    if task_outcome != raw_outcome or task["count"] != raw["count"] or task["count"] != STALE:
        print(f"outcomes differ: task {task_outcome}, raw {raw_outcome}", file=sys.stderr)
        return 1
    if os.environ.get("BENCH_KEEP") != "1":
        _admin(f'DROP DATABASE IF EXISTS "{RUN_DB}" WITH (FORCE)')
        _admin(f'DROP DATABASE IF EXISTS "{TEMPLATE_DB}" WITH (FORCE)')

    batch_size = _batch_size()
    seen = task["transactions"]
    rows = [
        Row(f"expire {STALE:,} stale actions: beat task vs raw UPDATE", task["seconds"], raw["seconds"],
            "one raw UPDATE of actions and deliveries", "s", "<= 3"),
        Row("peak RSS of the expiring process", task["maxrss_mb"], RSS_BUDGET_MB, "budget", "MB", "<= 1"),
        Row("RSS of an idle Django process", idle["maxrss_mb"], unit="MB"),
        Row("longest batch transaction (rows locked)", longest * 1000, LOCK_BUDGET_MS, "budget", "ms", "<= 1"),
    ]
    for row in rows:
        ratio = "" if row.ratio is None else f" = {row.ratio:.3f} (target {row.target})"
        baseline = "" if row.baseline is None else f" / {row.baseline:.1f}"
        print(f"{row.metric}: {row.ours:.1f}{baseline} {row.unit}{ratio}", flush=True)
    percentiles = ""
    if seen:
        p50 = seen[len(seen) // 2] * 1000
        p99 = seen[min(len(seen) - 1, int(len(seen) * 0.99))] * 1000
        percentiles = f" (of the transactions seen: median {p50:.0f} ms, p99 {p99:.0f} ms)"
    notes = "\n".join([
        (__doc__ or "").split("\n\n", 1)[1].strip(),
        "",
        f"This run: BATCH_SIZE {batch_size}; template {template['db_mb']:.0f} MB, filled in "
        f"{template['fill_s']:.0f} s.  The task expired {task['count']:,} actions in {task['seconds']:.1f} s "
        f"({task['count'] / task['seconds']:,.0f} actions/s); the raw UPDATE {raw['count']:,} actions and "
        f"{raw['deliveries']:,} deliveries in {raw['seconds']:.1f} s, as one transaction that held every one of "
        f"those rows locked for all of it.  The task's process peaked at {task['maxrss_mb']:.0f} MB RSS "
        f"(psutil: {task['psutil_peak_mb']:.0f} MB) against {idle['maxrss_mb']:.0f} MB for an idle Django process.  "
        f"The poller saw {len(seen)} of the task's transactions (about {STALE // batch_size} batches, plus "
        f"autocommit queries; ones shorter than {POLL * 1000:.0f} ms can be missed); the longest was open "
        f"{longest * 1000:.0f} ms{percentiles}, the {_ordinal(task['longest_at'])} of them (the last one, which finds "
        f"nothing left: {task['last_ms']:.0f} ms).  Both runs left the same states: "
        + ", ".join(f"{state}/{status} {count:,}" for state, status, count in task_outcome) + ".",
    ])
    Result(NAME, TITLE, 4, rows, notes, {
        "kind": "bar", "title": f"expire {STALE:,} stale actions", "ylabel": "seconds (log)", "log": True,
        "categories": ["total time", "longest time rows stay locked"],
        "series": {"beat task (batches)": [task["seconds"], longest],
                   "raw UPDATE (one transaction)": [raw["seconds"], raw["seconds"]]},
    }).write()
    print(f"done in {time.monotonic() - started:.0f} s", flush=True)
    return 0


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _batch_size() -> int:
    from deferred_confirmation.pipeline.conf import app_settings

    return app_settings.BATCH_SIZE


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in CHILDREN:
        print(json.dumps(CHILDREN[sys.argv[1]]()), flush=True)
        sys.exit(0)
    sys.exit(main())
