"""Puts expire/redrive/purge into django-celery-beat's tables, so `celery -A deferred_confirmation.workers beat -S django`
needs no other set-up.  Re-run (or change) it with `manage.py setup_confirmation_schedule`."""

from django.db import migrations


def create_schedule(apps, schema_editor):
    from deferred_confirmation.workers.schedule import ensure_schedule

    ensure_schedule(apps.get_model("django_celery_beat", "IntervalSchedule"),
                    apps.get_model("django_celery_beat", "PeriodicTask"),
                    apps.get_model("django_celery_beat", "PeriodicTasks"))


def remove_schedule(apps, schema_editor):
    from deferred_confirmation.workers.schedule import SCHEDULE

    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=list(SCHEDULE)).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("confirmation", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]
    operations = [migrations.RunPython(create_schedule, remove_schedule)]
