"""The Celery side: ``celery -A deferred_confirmation.workers worker`` and
``celery -A deferred_confirmation.workers beat -S django``.

``deferred_confirmation.workers.app`` is a ready Celery app configured from Django settings (namespace ``CELERY``).  It
is created only when asked for, so a project with its own Celery app can load the shared tasks
(``deferred_confirmation.workers.tasks``, found by autodiscovery through
``deferred_confirmation.django_integration.tasks``) without this app becoming Celery's current app.
"""

from typing import Any

__all__ = ["app"]


def __getattr__(name: str) -> Any:
    if name in ("app", "celery_app"):
        from deferred_confirmation.workers.celery import app

        return app
    raise AttributeError(f"module 'deferred_confirmation.workers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
