"""The beat schedule in django-celery-beat's tables: made by the migration, kept by a management command."""

from io import StringIO

import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from deferred_confirmation.workers.schedule import SCHEDULE

pytestmark = pytest.mark.django_db(transaction=True)

EXPECTED = {  # task -> (every, period)
    "confirmation.expire_stale": (1, IntervalSchedule.MINUTES),
    "confirmation.redrive": (5, IntervalSchedule.MINUTES),
    "confirmation.purge": (1, IntervalSchedule.DAYS),
}


def _schedule():
    return {t.task: (t.interval.every, t.interval.period, t.queue, t.enabled)
            for t in PeriodicTask.objects.filter(name__in=list(SCHEDULE)).select_related("interval")}


def _expected():
    return {task: (every, period, "confirmation.maintenance", True) for task, (every, period) in EXPECTED.items()}


def _last_update():
    return PeriodicTasks.objects.filter(ident=1).values_list("last_update", flat=True).first()


def _setup(**kwargs):
    out = StringIO()
    call_command("setup_confirmation_schedule", stdout=out, **kwargs)
    return out.getvalue()


def test_migrate_creates_the_periodic_tasks():
    # Transactional tests empty every table between tests: run the data migration again to see what it makes.
    call_command("migrate", "confirmation", "0001", verbosity=0)
    assert _schedule() == {}
    call_command("migrate", "confirmation", verbosity=0)
    assert _schedule() == _expected()
    assert _last_update() is not None  # a running beat reloads


def test_setup_command_creates_then_changes_nothing_then_repairs():
    PeriodicTask.objects.filter(name__in=list(SCHEDULE)).delete()
    PeriodicTasks.objects.all().delete()

    out = _setup()
    assert out.count("updated:") == 3
    assert _schedule() == _expected()
    first = _last_update()
    assert first is not None

    out = _setup()  # idempotent: nothing changed, beat not told to reload
    assert out.count("unchanged:") == 3 and "updated:" not in out
    assert _last_update() == first
    assert PeriodicTask.objects.filter(name__in=list(SCHEDULE)).count() == 3
    assert IntervalSchedule.objects.filter(every=1, period=IntervalSchedule.MINUTES).count() == 1

    # someone edits the redrive task: the command puts it back and bumps last_update
    redrive = PeriodicTask.objects.get(task="confirmation.redrive")
    redrive.queue = "celery"
    redrive.interval = IntervalSchedule.objects.create(every=30, period=IntervalSchedule.MINUTES)
    redrive.enabled = False
    redrive.save()
    before = _last_update()
    out = _setup()
    assert out.count("unchanged:") == 2 and out.count("updated:") == 1
    assert "updated: confirmation: redrive stuck actions" in out
    assert _schedule() == _expected()
    assert _last_update() > before
