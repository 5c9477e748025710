"""Confirm latency versus table size (PostgreSQL): does ``deferred_confirmation.pipeline.confirm(token)`` slow down as
the tables grow?

What is measured: the wall time of the real ``deferred_confirmation.pipeline.confirm(link_token)``, its whole
transaction included (digest lookup, row locks, the delivery and action updates, the commit) and the publish of the
apply task to Redis that runs on commit (the broker is the machine's Redis, BENCH_REDIS_URL; no worker consumes it, the
messages are counted and deleted afterwards).  Sampled at SIZES stored actions (each with one delivery).

How: one PostgreSQL database per size (``bench_dc_b_ts_<size>``), each served by its own process (Django set up
on that database).  The tables are filled server-side (``INSERT ... SELECT generate_series``) with a realistic
mix: 60 % applied, 20 % expired, 3 % cancelled, 2 % failed, 1 % locked, 1 % confirmed, 3 % pending (no digest
yet), 10 % notified; 90 % email and 10 % sms deliveries; every delivery past ``pending`` has a 64-hex digest.
The actions that are confirmed are made with the ORM, the email channel's own ``digest()`` of a fresh
``tokens.make_link_token()``, so confirm finds them the way it finds a real link; they count toward the size.
The secondary indexes are dropped for the fill and built again from their own definitions after it (a sorted
build is several times faster than a million random inserts; it packs the leaves fuller, which leaves the B-tree
depth the same).  Then ``VACUUM ANALYZE``.  The sizes are measured interleaved: each round asks every process (in
a fresh random order) for one confirm of an unused token, one process at a time, so a noisy neighbour on this
shared 2-core machine slows all sizes alike instead of whichever happened to run during the noise.  Every query
confirm ran is then ``EXPLAIN (ANALYZE, BUFFERS)``-ed (in a rolled back transaction) at every size to check that
each one reads through an index.

Environment: BENCH_TABLE_SIZES (comma separated, default 1000,10000,100000,1000000), BENCH_TABLE_SAMPLES
(confirms per size, default 300), BENCH_KEEP=1 keeps the databases.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import sys
import time
from typing import Any

from bench.report import Result, Row, fresh_database, summary_ms

NAME = "table_size"
TITLE = "Confirm latency versus table size (PostgreSQL)"
SIZES = [int(s) for s in os.environ.get("BENCH_TABLE_SIZES", "1000,10000,100000,1000000").split(",")]
SAMPLES = int(os.environ.get("BENCH_TABLE_SAMPLES", "300"))
WARMUP = 20
EXTRA = 2  # targets kept for the EXPLAIN run
DB_PREFIX = "bench_dc_b_ts_"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
APPLY_QUEUE = "confirmation.apply"

# The filler's state mix, in percent (g % 100 buckets), and the delivery status each state leaves behind.
MIX = [("applied", 60), ("expired", 20), ("cancelled", 3), ("failed", 2), ("locked", 1), ("confirmed", 1),
       ("pending", 3), ("notified", 10)]
DELIVERY_STATUS = {"applied": "confirmed", "confirmed": "confirmed", "expired": "superseded",
                   "cancelled": "superseded", "locked": "superseded", "failed": "failed", "pending": "queued",
                   "notified": "sent"}
RECENT = ("pending", "notified", "confirmed")  # created in the last 3 days; the others 3 to 30 days ago


def _case(column: str, mapping: list[tuple[str, int]]) -> str:
    parts, upper = [], 0
    for state, share in mapping:
        upper += share
        parts.append(f"WHEN {column} < {upper} THEN '{state}'")
    return "CASE " + " ".join(parts) + " END"


def _fill_sql() -> str:
    """One statement: ``%(n)s`` actions of the mix, and each one's delivery (``INSERT ... RETURNING`` feeding the
    second insert, so the actions are not read back)."""
    recent = ", ".join(f"'{s}'" for s in RECENT)
    status = "CASE a.state " + " ".join(f"WHEN '{k}' THEN '{v}'" for k, v in DELIVERY_STATUS.items()) + " END"
    return f"""
        WITH a AS (
            INSERT INTO confirmation_deferredaction (id, state, form_class, form_data, form_prefix, object_pk,
                target_fingerprint, description, channel_policy, created_at, updated_at, valid_until, confirmed_at,
                applied_at, failure_reason, content_type_id, user_id)
            SELECT gen_random_uuid(), s.state, 'example.accounts.forms.EmailChangeForm',
                   jsonb_build_object('email', 'user' || g || '-new@example.com'), NULL, (g %% 50000)::text,
                   md5(g::text) || md5((-g)::text), 'Change of email address', 'any', c.created,
                   c.created + interval '1 hour', c.created + interval '3 days',
                   CASE WHEN s.state IN ('applied', 'confirmed') THEN c.created + interval '10 minutes' END,
                   CASE WHEN s.state = 'applied' THEN c.created + interval '11 minutes' END,
                   CASE WHEN s.state = 'failed' THEN 'This email address is already in use.' ELSE '' END,
                   %(content_type)s, NULL
            FROM generate_series(1, %(n)s) AS g
            CROSS JOIN LATERAL (SELECT {_case('g %% 100', MIX)} AS state) AS s
            CROSS JOIN LATERAL (SELECT now() - CASE WHEN s.state IN ({recent})
                                                    THEN (g %% 4320) * interval '1 minute'
                                                    ELSE interval '3 days' + (g %% 38880) * interval '1 minute'
                                               END AS created) AS c
            RETURNING id, state, form_data, created_at, updated_at, confirmed_at)
        INSERT INTO confirmation_delivery (action_id, channel, recipient, secret_digest, generation, attempts,
            status, status_detail, provider_ref, sent_at, confirmed_at, created_at, updated_at, expires_at,
            send_attempts, sending_until)
        SELECT a.id, ch.channel,
               CASE ch.channel WHEN 'sms' THEN '+1555' || lpad((abs(hashtext(a.id::text)) %% 10000000)::text, 7, '0')
                               ELSE (a.form_data ->> 'email') END,
               CASE WHEN a.state = 'pending' THEN '' ELSE encode(sha256(convert_to(a.id::text, 'UTF8')), 'hex') END,
               CASE WHEN a.state = 'pending' THEN 0 ELSE 1 END, 0, {status}, '',
               CASE WHEN a.state = 'pending' THEN '' ELSE 'ref-' || md5(a.id::text) END,
               CASE WHEN a.state <> 'pending' THEN a.created_at + interval '5 seconds' END, a.confirmed_at,
               a.created_at, a.updated_at,
               a.created_at + CASE ch.channel WHEN 'sms' THEN interval '10 minutes' ELSE interval '3 days' END,
               CASE WHEN a.state = 'pending' THEN 0 ELSE 1 END, NULL
        FROM a CROSS JOIN LATERAL (SELECT CASE WHEN get_byte(uuid_send(a.id), 0) < 26 THEN 'sms' ELSE 'email' END
                                   AS channel) AS ch"""  # noqa: S608 (constants only)


SECONDARY_INDEXES = """
    SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index i
    WHERE indrelid IN ('confirmation_deferredaction'::regclass, 'confirmation_delivery'::regclass)
      AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)"""


def _make_targets(count: int) -> list[str]:
    """``count`` notified actions with one sent email delivery each, stored with the channel's real digest of
    a fresh link token; returns the tokens."""
    from datetime import timedelta

    from django.contrib.auth import get_user_model
    from django.contrib.contenttypes.models import ContentType
    from django.utils import timezone

    from deferred_confirmation.django_integration.models import DeferredAction, Delivery
    from deferred_confirmation.pipeline import tokens
    from deferred_confirmation.pipeline.channels import get_channel
    from deferred_confirmation.pipeline.states import DeliveryStatus, State

    channel = get_channel("email")
    content_type = ContentType.objects.get_for_model(get_user_model())
    now = timezone.now()
    actions, deliveries, made = [], [], []
    for i in range(count):
        token = tokens.make_link_token()
        action = DeferredAction(state=State.NOTIFIED, form_class="example.accounts.forms.EmailChangeForm",
                                form_data={"email": f"bench{i}-new@example.com"}, content_type=content_type,
                                object_pk=str(900000 + i), description="Change of email address",
                                valid_until=now + timedelta(days=3))
        delivery = Delivery(action=action, channel="email", recipient=f"bench{i}-new@example.com", generation=1,
                            status=DeliveryStatus.SENT, send_attempts=1, sent_at=now,
                            expires_at=now + timedelta(days=3))
        delivery.secret_digest = channel.digest(delivery, token)
        actions.append(action)
        deliveries.append(delivery)
        made.append(token)
    DeferredAction.objects.bulk_create(actions, batch_size=500)
    Delivery.objects.bulk_create(deliveries, batch_size=500)
    return made


def _prepare(size: int, targets: int) -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.contenttypes.models import ContentType
    from django.db import connection

    started = time.monotonic()
    filler = max(0, size - targets)
    fill = _fill_sql()
    content_type = ContentType.objects.get_for_model(get_user_model()).pk
    with connection.cursor() as cursor:
        # The secondary indexes (those not behind a constraint) are dropped during the fill and made again
        # from their own definitions after it: a sorted build instead of a million random inserts.
        cursor.execute(SECONDARY_INDEXES)
        indexes = cursor.fetchall()
        for name, _definition in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        # Half the filler, the targets, the other half: the targets' delivery ids sit mid-table, not at its end.
        cursor.execute(fill, {"n": filler // 2, "content_type": content_type})
        made = _make_targets(targets)
        cursor.execute(fill, {"n": filler - filler // 2, "content_type": content_type})
        for _name, definition in indexes:
            cursor.execute(definition)
        cursor.execute("VACUUM ANALYZE confirmation_deferredaction")
        cursor.execute("VACUUM ANALYZE confirmation_delivery")
        cursor.execute("SELECT count(*) FROM confirmation_deferredaction")
        stored = cursor.fetchone()[0]
        cursor.execute("SELECT count(*) FROM confirmation_delivery")
        stored_deliveries = cursor.fetchone()[0]
        cursor.execute("SELECT pg_total_relation_size('confirmation_deferredaction'), "
                       "pg_total_relation_size('confirmation_delivery')")
        action_bytes, delivery_bytes = cursor.fetchone()
    random.shuffle(made)
    return {"tokens": made, "actions": stored, "deliveries": stored_deliveries, "fill_s": time.monotonic() - started,
            "mb": (action_bytes + delivery_bytes) / 2**20}


def _confirm_once(token: str) -> float:
    from deferred_confirmation import pipeline
    from deferred_confirmation.pipeline.lifecycle import ConfirmStatus

    started = time.perf_counter()
    result = pipeline.confirm(token)
    elapsed = time.perf_counter() - started
    if result.status != ConfirmStatus.CONFIRMED:
        raise RuntimeError(f"confirm returned {result.status}, not confirmed: the benchmark's data is wrong")
    return elapsed


def _walk(plan: dict[str, Any], out: list[dict[str, Any]]) -> None:
    node = {"node": plan["Node Type"]}
    for key, short in (("Relation Name", "table"), ("Index Name", "index"), ("Actual Rows", "rows"),
                       ("Actual Total Time", "ms")):
        if key in plan:
            node[short] = plan[key]
    out.append(node)
    for child in plan.get("Plans", []):
        _walk(child, out)


def _explain(token: str) -> list[dict[str, Any]]:
    """Confirm ``token`` once recording every statement, then EXPLAIN (ANALYZE, BUFFERS) each of them in a
    transaction that is rolled back (the row it finds is the same one, now confirmed)."""
    from django.db import connection, transaction

    from deferred_confirmation import pipeline

    captured: list[tuple[str, Any]] = []

    def record(execute, sql, params, many, context):
        captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        assert pipeline.confirm(token).ok
    plans = []
    for sql, params in captured:
        if not sql.lstrip().upper().startswith(("SELECT", "UPDATE", "INSERT", "DELETE")):
            continue
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, params)
                raw = cursor.fetchone()[0]
            transaction.set_rollback(True)
        top = (json.loads(raw) if isinstance(raw, str) else raw)[0]
        nodes: list[dict[str, Any]] = []
        _walk(top["Plan"], nodes)
        plans.append({"sql": " ".join(sql.split())[:160], "nodes": nodes, "execution_ms": top["Execution Time"],
                      "planning_ms": top["Planning Time"]})
    return plans


def serve(size: int, pipe: Any) -> None:
    """One size's process: make its database, then confirm one token per request from the parent."""
    name = f"{DB_PREFIX}{size}"
    os.environ["BENCH_PG_NAME"] = name
    os.environ.pop("DATABASE_URL", None)  # bench.settings derives it from BENCH_PG_NAME: one database per size
    os.environ.setdefault("BENCH_REDIS_URL", REDIS_URL)
    fresh_database(name)
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    info = _prepare(size, SAMPLES + WARMUP + EXTRA)
    queue = info.pop("tokens")
    for _ in range(WARMUP):
        _confirm_once(queue.pop())
    pipe.send(info)
    while True:
        command = pipe.recv()
        if command == "go":
            pipe.send(_confirm_once(queue.pop()))
        elif command == "explain":
            pipe.send(_explain(queue.pop()))
        else:
            break
    connection.close()
    pipe.send("bye")


def _plan_text(plans: list[dict[str, Any]]) -> list[str]:
    lines = []
    for plan in plans:
        steps = " > ".join(n["node"] + (f" on {n['table']}" if "table" in n else "")
                           + (f" using {n['index']}" if "index" in n else "") for n in plan["nodes"])
        lines.append(f"- `{plan['sql'][:100]}…`: {steps} ({plan['execution_ms']:.3f} ms)")
    return lines


def main() -> int:
    import redis

    broker = redis.Redis.from_url(REDIS_URL)
    broker.delete(APPLY_QUEUE)
    context = multiprocessing.get_context("spawn")
    children: dict[int, tuple[Any, Any]] = {}
    started = time.monotonic()
    for size in SIZES:
        parent_end, child_end = context.Pipe()
        process = context.Process(target=serve, args=(size, child_end), name=f"table_size-{size}")
        process.start()
        children[size] = (process, parent_end)
    infos = {size: pipe.recv() for size, (_process, pipe) in children.items()}
    for size, info in infos.items():
        print(f"{size:>9,} actions: {info['actions']:,} actions, {info['deliveries']:,} deliveries, "
              f"{info['mb']:.0f} MB, filled in {info['fill_s']:.1f} s", flush=True)
    print(f"ready after {time.monotonic() - started:.0f} s; {SAMPLES} confirms per size, interleaved", flush=True)

    timings: dict[int, list[float]] = {size: [] for size in SIZES}
    order = list(SIZES)
    for _ in range(SAMPLES):
        random.shuffle(order)
        for size in order:
            pipe = children[size][1]
            pipe.send("go")
            timings[size].append(pipe.recv())
    plans = {}
    for size, (_process, pipe) in children.items():
        pipe.send("explain")
        plans[size] = pipe.recv()
        pipe.send("stop")
        pipe.recv()
    for process, _pipe in children.values():
        process.join(timeout=30)
    published = broker.llen(APPLY_QUEUE)
    expected = len(SIZES) * (SAMPLES + WARMUP + 1)
    broker.delete(APPLY_QUEUE)
    if os.environ.get("BENCH_KEEP") != "1":
        for size in SIZES:
            _drop(f"{DB_PREFIX}{size}")

    stats = {size: summary_ms(values) for size, values in timings.items()}
    for size in SIZES:
        s = stats[size]
        print(f"{size:>9,} actions: confirm p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms, mean {s['mean']:.2f} ms",
              flush=True)
    seq_scans = {size: [n for p in plan for n in p["nodes"] if n["node"] == "Seq Scan"] for size, plan in plans.items()}
    small, large = min(SIZES), max(SIZES)
    rows = [
        Row(f"confirm p50, {large:,} vs {small:,} actions", stats[large]["p50"], stats[small]["p50"],
            f"{small:,} actions", "ms", "<= 1.3"),
        Row(f"confirm p99, {large:,} vs {small:,} actions", stats[large]["p99"], stats[small]["p99"],
            f"{small:,} actions", "ms"),
    ]
    for row in rows:
        print(f"{row.metric}: {row.ours:.2f} / {row.baseline:.2f} ms = {row.ratio:.3f} (target {row.target or '-'})",
              flush=True)
    print(f"apply tasks published to Redis: {published} of {expected}", flush=True)
    print("sequential scans in confirm's plans:", {s: len(v) for s, v in seq_scans.items()}, flush=True)
    for line in _plan_text(plans[large]):
        print(line, flush=True)

    table_lines = ["| stored actions | MB (tables + indexes) | p50 ms | p99 ms | mean ms |", "|---|---|---|---|---|"]
    for size in SIZES:
        s, info = stats[size], infos[size]
        table_lines.append(f"| {info['actions']:,} | {info['mb']:.0f} | {s['p50']:.2f} | {s['p99']:.2f} | "
                           f"{s['mean']:.2f} |")
    notes = "\n".join([
        (__doc__ or "").split("\n\n", 1)[1].strip(),
        "",
        f"This run: {SAMPLES} measured confirms per size after {WARMUP} warm-up ones; the apply task was published "
        f"to Redis {published} times for {expected} confirms (every one, EXPLAIN run included).",
        "",
        *table_lines,
        "",
        "Sequential scans in the plans of confirm's queries: "
        + ", ".join(f"{size:,}: {len(v)}" for size, v in seq_scans.items()) + f". At {large:,} actions:",
        "",
        *_plan_text(plans[large]),
    ])
    Result(NAME, TITLE, 3, rows, notes, {
        "kind": "line", "title": "confirm latency vs stored actions", "xlabel": "stored actions (log)",
        "ylabel": "ms", "xlog": True,
        "series": {"p50": [[size, stats[size]["p50"]] for size in SIZES],
                   "p99": [[size, stats[size]["p99"]] for size in SIZES]},
    }).write()
    print(f"done in {time.monotonic() - started:.0f} s", flush=True)
    return 0


def _drop(name: str) -> None:
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    sys.exit(main())
