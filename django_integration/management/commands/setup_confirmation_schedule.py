"""``manage.py setup_confirmation_schedule``: create or update the expire/redrive/purge periodic tasks in
django-celery-beat's tables (the migration made them once; run this after changing MAINTENANCE_QUEUE, or to
repair them).  ``--json`` prints ``{"tasks": [{"name", "task", "every", "period", "queue", "status"}],
"changed": n}``, ``status`` being ``updated`` or ``unchanged``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

from deferred_confirmation.pipeline.conf import app_settings
from deferred_confirmation.workers.schedule import SCHEDULE, ensure_schedule


class Command(BaseCommand):
    help = "Create or update the expire/redrive/purge periodic tasks in django-celery-beat's tables."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")

    def handle(self, *args: Any, **options: Any) -> None:
        touched = ensure_schedule(IntervalSchedule, PeriodicTask, PeriodicTasks)
        tasks = [{"name": name, "task": task, "every": every, "period": period,
                  "queue": app_settings.MAINTENANCE_QUEUE, "status": "updated" if name in touched else "unchanged"}
                 for name, (task, every, period) in SCHEDULE.items()]
        if options["json"]:
            self.stdout.write(json.dumps({"tasks": tasks, "changed": len(touched)}, sort_keys=True))
            return
        for entry in tasks:
            self.stdout.write(f"{entry['status']}: {entry['name']} ({entry['task']} {_every(entry)}, "
                              f"queue {entry['queue']})")


def _every(entry: dict[str, Any]) -> str:
    if entry["every"] == 1:
        return f"every {entry['period'].removesuffix('s')}"
    return f"every {entry['every']} {entry['period']}"
