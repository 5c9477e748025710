from django.core.management.base import BaseCommand
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from workers.schedule import SCHEDULE, ensure_schedule


class Command(BaseCommand):
    help = "Create or update the expire/redrive/purge periodic tasks in django-celery-beat's tables."

    def handle(self, *args, **options):
        touched = ensure_schedule(IntervalSchedule, PeriodicTask, PeriodicTasks)
        for name in SCHEDULE:
            self.stdout.write(f"{'updated' if name in touched else 'unchanged'}: {name}")
