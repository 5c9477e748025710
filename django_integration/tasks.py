"""Found by Celery's autodiscovery in any project's Celery app; the tasks live in workers.tasks."""

from deferred_confirmation.workers.tasks import (
    apply_action,
    expire_stale,
    generate_token,
    purge,
    redrive,
    send_notification,
)

__all__ = ["apply_action", "expire_stale", "generate_token", "purge", "redrive", "send_notification"]
