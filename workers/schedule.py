"""The beat schedule, stored in django-celery-beat's tables so ``celery -A deferred_confirmation.workers beat -S
django`` needs nothing else.  Used by a data migration (with historical models) and by
``manage.py setup_confirmation_schedule``; both bump ``PeriodicTasks`` so a running beat reloads.
"""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from deferred_confirmation.pipeline import dispatch

# name -> (task, every, period)
SCHEDULE = {
    "confirmation: expire stale actions": (dispatch.EXPIRE_STALE, 1, "minutes"),
    "confirmation: redrive stuck actions": (dispatch.REDRIVE, 5, "minutes"),
    "confirmation: purge old actions": (dispatch.PURGE, 1, "days"),
}


def ensure_schedule(interval_model: Any, task_model: Any, changed_model: Any) -> list[str]:
    """Create or update the periodic tasks; returns the names created or changed."""
    from deferred_confirmation.pipeline.conf import app_settings

    touched = []
    for name, (task, every, period) in SCHEDULE.items():
        interval, _ = interval_model.objects.get_or_create(every=every, period=period)
        wanted = {"task": task, "interval": interval, "queue": app_settings.MAINTENANCE_QUEUE, "enabled": True}
        existing = task_model.objects.filter(name=name).first()
        if existing is None:
            task_model.objects.create(name=name, **wanted)
            touched.append(name)
        elif any(getattr(existing, key) != value for key, value in wanted.items()):
            for key, value in wanted.items():
                setattr(existing, key, value)
            existing.save()
            touched.append(name)
    if touched:  # what PeriodicTasks.changed() does: a running beat sees last_update move and reloads
        changed_model.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})
    return touched
