"""The operator's commands: expire/purge/redrive_actions (with --dry-run, --json, --progress),
confirmation_status (against the real Redis, and with the broker gone) and setup_confirmation_schedule --json."""

from __future__ import annotations

import io
import json
import socket
import uuid
from datetime import timedelta

import pytest
import redis
from django.conf import settings as django_settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from deferred_confirmation import workers
from deferred_confirmation.django_integration.models import DeferredAction, Delivery, Payout
from deferred_confirmation.pipeline.states import State
from tests.admin.conftest import age, overdue, save_change

SWEEP_KEYS = {"sweep", "dry_run", "now", "count", "duration_ms"}
DRY_RUN_KEYS = SWEEP_KEYS | {"by_state", "sample_ids"}


def run(name: str, *args: str, **options) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(name, *args, stdout=out, stderr=err, **options)
    return out.getvalue(), err.getvalue()


def run_json(name: str, *args: str) -> dict:
    out, _err = run(name, "--json", *args)
    assert out.count("\n") == 1, out  # one object, one line
    return json.loads(out)


def snapshot() -> list[tuple]:
    """Every action and delivery row as it is (to show a dry run changed nothing)."""
    return (list(DeferredAction.objects.order_by("pk").values_list("pk", "state", "updated_at", "valid_until"))
            + list(Delivery.objects.order_by("pk").values_list("pk", "status", "generation", "updated_at")))


@pytest.fixture
def confirmation_settings(settings):
    def update(**values) -> None:
        settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, **values}

    return update


# --- expire ------------------------------------------------------------------------------------------------
def test_expire_actions_dry_run_counts_what_the_real_run_expires(db, django_capture_on_commit_callbacks):
    late = [save_change() for _ in range(3)]
    overdue(late)
    current = save_change()
    before = snapshot()

    with django_capture_on_commit_callbacks() as callbacks:
        report = run_json("expire_actions", "--dry-run")
    assert set(report) == DRY_RUN_KEYS
    assert (report["sweep"], report["dry_run"], report["count"]) == ("expire", True, 3)
    assert report["by_state"] == {"pending": 3}
    assert set(report["sample_ids"]) == {str(a.pk) for a in late}
    assert snapshot() == before and callbacks == []

    out, _ = run("expire_actions", "--dry-run")
    assert out.splitlines()[0] == "would expire 3 actions (dry run: nothing changed)"
    assert "by state: pending 3" in out
    assert snapshot() == before

    report = run_json("expire_actions")
    assert set(report) == SWEEP_KEYS
    assert (report["sweep"], report["dry_run"], report["count"]) == ("expire", False, 3)
    assert {a.state for a in DeferredAction.objects.filter(pk__in=[a.pk for a in late])} == {State.EXPIRED}
    assert DeferredAction.objects.get(pk=current.pk).state == State.PENDING

    out, err = run("expire_actions")
    assert out.startswith("expired 0 actions in ") and err == ""


def test_sweep_progress_appears_with_progress_for_runs_larger_than_a_batch(db, confirmation_settings):
    confirmation_settings(BATCH_SIZE=2)
    late = [save_change() for _ in range(5)]
    overdue(late)

    _out, err = run("expire_actions")  # not a terminal: quiet
    assert err == ""
    overdue(late)
    DeferredAction.objects.filter(pk__in=[a.pk for a in late]).update(state=State.PENDING)

    out, err = run("expire_actions", "--progress")
    assert out.startswith("expired 5 actions")
    assert err == "\rexpired 2/5 (40%)\rexpired 4/5 (80%)\rexpired 5/5 (100%)\n"

    DeferredAction.objects.filter(pk__in=[a.pk for a in late]).update(state=State.PENDING)
    _out, err = run("expire_actions", "--progress", "--batch-size", "3")
    assert err == "\rexpired 3/5 (60%)\rexpired 5/5 (100%)\n"

    with pytest.raises(CommandError, match="--batch-size"):
        run("expire_actions", "--batch-size", "0")


def test_progress_is_shown_when_stderr_is_a_terminal(db, confirmation_settings):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    confirmation_settings(BATCH_SIZE=2)
    late = [save_change() for _ in range(3)]
    overdue(late)
    err = Terminal()
    call_command("purge_actions", stdout=io.StringIO(), stderr=err)  # nothing to purge: no bar
    assert err.getvalue() == ""
    call_command("expire_actions", "--json", stdout=io.StringIO(), stderr=err)
    assert err.getvalue() == "\rexpired 2/3 (66%)\rexpired 3/3 (100%)\n"  # no colour codes either


# --- purge -------------------------------------------------------------------------------------------------
def test_purge_actions_dry_run_counts_what_the_real_run_deletes(db, confirmation_settings):
    old = [save_change() for _ in range(3)]
    DeferredAction.objects.filter(pk__in=[a.pk for a in old[:2]]).update(state=State.CANCELLED)
    DeferredAction.objects.filter(pk=old[2].pk).update(state=State.APPLIED)
    age(old, days=31)
    recent_end = save_change()
    DeferredAction.objects.filter(pk=recent_end.pk).update(state=State.EXPIRED)
    still_open = save_change()
    age([still_open], days=40)
    orphan = Payout.objects.create(idempotency_key=f"orphan-{uuid.uuid4()}", account="{}", amounts_sealed="x",
                                   created_at=timezone.now() - timedelta(days=31))
    before = snapshot()

    report = run_json("purge_actions", "--dry-run")
    assert set(report) == DRY_RUN_KEYS | {"orphaned_payouts"}
    assert (report["count"], report["by_state"], report["orphaned_payouts"]) == (3, {"applied": 1, "cancelled": 2}, 1)
    assert snapshot() == before and Payout.objects.filter(pk=orphan.pk).exists()
    out, _ = run("purge_actions", "--dry-run")
    assert "would purge 3 actions (dry run: nothing changed)" in out
    assert "would delete 1 payout(s) whose delivery was already gone" in out

    out, _ = run("purge_actions")
    assert out.startswith("purged 3 actions in ")
    assert "deleted 1 payout(s)" in out
    assert set(DeferredAction.objects.values_list("pk", flat=True)) == {recent_end.pk, still_open.pk}
    assert not Delivery.objects.filter(action_id__in=[a.pk for a in old]).exists()
    assert not Payout.objects.filter(pk=orphan.pk).exists()
    assert run_json("purge_actions")["count"] == 0


# --- redrive -----------------------------------------------------------------------------------------------
def test_redrive_actions_dry_run_counts_what_the_real_run_queues_again(db, django_capture_on_commit_callbacks):
    stuck = [save_change() for _ in range(2)]
    confirmed = save_change()
    DeferredAction.objects.filter(pk=confirmed.pk).update(state=State.CONFIRMED, confirmed_at=timezone.now())
    age([*stuck, confirmed], minutes=30)
    fresh = save_change()
    before = snapshot()

    with django_capture_on_commit_callbacks() as callbacks:
        report = run_json("redrive_actions", "--dry-run")
        out, _ = run("redrive_actions", "--dry-run")
    assert (report["sweep"], report["count"], report["by_state"]) == ("redrive", 3, {"confirmed": 1, "pending": 2})
    assert "would redrive 3 actions (dry run: nothing changed)" in out
    assert snapshot() == before and callbacks == []  # nothing enqueued

    with django_capture_on_commit_callbacks() as callbacks:
        report = run_json("redrive_actions")
    assert (report["dry_run"], report["count"]) == (False, 3)
    assert len(callbacks) == 3  # two generate_token, one apply_action
    touched = DeferredAction.objects.filter(updated_at__gt=timezone.now() - timedelta(minutes=1))
    assert set(touched.values_list("pk", flat=True)) == {a.pk for a in (*stuck, confirmed, fresh)}
    assert run_json("redrive_actions", "--dry-run")["count"] == 0


# --- setup_confirmation_schedule ---------------------------------------------------------------------------
def test_setup_confirmation_schedule_json(db):
    from django_celery_beat.models import PeriodicTask

    from deferred_confirmation.workers.schedule import SCHEDULE

    PeriodicTask.objects.filter(name__in=list(SCHEDULE)).delete()
    report = run_json("setup_confirmation_schedule")
    assert set(report) == {"tasks", "changed"}
    assert report["changed"] == 3
    assert {t["task"]: (t["every"], t["period"], t["queue"], t["status"]) for t in report["tasks"]} == {
        "confirmation.expire_stale": (1, "minutes", "confirmation.maintenance", "updated"),
        "confirmation.redrive": (5, "minutes", "confirmation.maintenance", "updated"),
        "confirmation.purge": (1, "days", "confirmation.maintenance", "updated"),
    }
    assert {t["name"] for t in report["tasks"]} == set(SCHEDULE)
    again = run_json("setup_confirmation_schedule")
    assert again["changed"] == 0 and {t["status"] for t in again["tasks"]} == {"unchanged"}
    out, _ = run("setup_confirmation_schedule")
    assert "unchanged: confirmation: expire stale actions (confirmation.expire_stale every minute, " \
           "queue confirmation.maintenance)" in out


# --- confirmation_status -----------------------------------------------------------------------------------
STATUS_KEYS = {"now", "states", "channels", "oldest", "due", "broker", "queues"}


@pytest.fixture
def own_queue(confirmation_settings):
    """A queue of this test only (the apply queue, renamed), emptied before and after."""
    name = f"confirmation.apply.admin-test-{uuid.uuid4().hex[:8]}"
    confirmation_settings(APPLY_QUEUE=name)
    client = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    yield name
    client.delete(name)


def test_confirmation_status_counts_states_channels_oldest_and_queue_lengths(db, own_queue):
    waiting = save_change()
    DeferredAction.objects.filter(pk=waiting.pk).update(created_at=timezone.now() - timedelta(hours=3))
    save_change()
    confirmed = save_change()
    DeferredAction.objects.filter(pk=confirmed.pk).update(state=State.CONFIRMED,
                                                          confirmed_at=timezone.now() - timedelta(minutes=20))
    gone = save_change()
    DeferredAction.objects.filter(pk=gone.pk).update(state=State.CANCELLED)
    Delivery.objects.filter(action=gone).update(status="superseded")
    overdue([gone])

    # Two messages for a queue no worker consumes, published the way the library publishes.
    app = workers.app
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        for _ in range(2):
            app.send_task("confirmation.apply_action", args=[str(uuid.uuid4())], queue=own_queue)
    finally:
        app.conf.task_always_eager = eager

    status = run_json("confirmation_status")
    assert set(status) == STATUS_KEYS
    assert status["states"] == {"pending": 2, "notified": 0, "confirmed": 1, "applied": 0, "expired": 0,
                                "cancelled": 1, "failed": 0, "locked": 0}
    assert status["channels"] == {"email": {"total": 4, "statuses": {"queued": 3, "superseded": 1}}}
    assert status["oldest"]["pending"]["id"] == str(waiting.pk)
    assert 3 * 3600 - 5 <= status["oldest"]["pending"]["age_seconds"] <= 3 * 3600 + 60
    assert status["oldest"]["confirmed"]["id"] == str(confirmed.pk)
    assert 1200 - 5 <= status["oldest"]["confirmed"]["age_seconds"] <= 1200 + 60
    assert status["due"] == {"expire": 0, "redrive": 0, "purge": 0}
    assert status["broker"]["available"] is True and status["broker"]["error"] is None
    assert status["queues"][own_queue] == 2
    assert set(status["queues"]) >= {"celery", "confirmation.email", "confirmation.maintenance", own_queue}

    out, _ = run("confirmation_status")
    assert "Actions by state:" in out and "Deliveries by channel:" in out
    assert f"pending    {waiting.pk}, created 3 h 00 min ago" in out
    assert "<- longer than REDRIVE_AFTER" in out
    assert f"confirmed  {confirmed.pk}, confirmed 20 min ago" in out
    assert any(line.split() == [own_queue, "2"] for line in out.splitlines()), out


def test_confirmation_status_survives_a_broker_that_is_down(db):
    save_change()
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf = workers.app.conf
    saved = conf.broker_url
    conf.broker_url = f"redis://:hunter2@127.0.0.1:{port}/0"
    try:
        status = run_json("confirmation_status", "--timeout", "1")
        out, _ = run("confirmation_status", "--timeout", "1")
    finally:
        conf.broker_url = saved
    assert status["broker"]["available"] is False
    assert status["broker"]["error"]
    assert set(status["queues"].values()) == {None}
    assert status["states"]["pending"] == 1  # the rest is still reported
    assert "Queues: unavailable" in out and f"127.0.0.1:{port}" in out
    assert "hunter2" not in out + json.dumps(status)  # the broker's password is never printed


def test_confirmation_status_with_an_empty_database(db):
    status = run_json("confirmation_status")
    assert status["oldest"] == {"pending": None, "confirmed": None}
    assert set(status["states"].values()) == {0}
    assert status["channels"] == {"email": {"total": 0, "statuses": {}}}
    out, _ = run("confirmation_status")
    assert "pending    none" in out


# --- the sweeps themselves: progress callback and one structured log line each ------------------------------
@pytest.mark.parametrize("sweep", ["expire", "purge", "redrive"])
def test_each_sweep_reports_progress_per_batch_and_logs_one_structured_line(db, caplog, sweep,
                                                                             django_capture_on_commit_callbacks):
    from deferred_confirmation.pipeline.lifecycle import maintenance

    actions = [save_change() for _ in range(5)]
    if sweep == "expire":
        overdue(actions)
    elif sweep == "purge":
        DeferredAction.objects.filter(pk__in=[a.pk for a in actions]).update(state=State.FAILED)
        age(actions, days=31)
    else:
        age(actions, minutes=30)
    candidates = {"expire": maintenance.stale_actions, "purge": maintenance.purgeable_actions,
                  "redrive": maintenance.stuck_actions}[sweep]
    assert candidates().count() == 5

    seen: list[int] = []
    with caplog.at_level("INFO", logger="deferred_confirmation.lifecycle"), django_capture_on_commit_callbacks():
        assert getattr(maintenance, sweep)(batch_size=2, progress=seen.append) == 5
    assert seen == [2, 4, 5]
    assert candidates().count() == 0
    [record] = [r for r in caplog.records if getattr(r, "event", None) == sweep]
    assert record.count == 5 and isinstance(record.duration_ms, int) and record.levelname == "INFO"
