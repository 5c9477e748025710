"""The Celery side: ``celery -A workers worker`` / ``celery -A workers beat -S django``.

``workers.app`` is a ready Celery app configured from Django settings (namespace ``CELERY``).  It is
created only when asked for, so a project with its own Celery app can load the shared tasks
(``workers.tasks``, found by autodiscovery through ``django_integration.tasks``) without this app
becoming Celery's current app.
"""

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name in ("app", "celery_app"):
        from workers.celery import app

        return app
    raise AttributeError(f"module 'workers' has no attribute {name!r}")
