"""The Celery side: ``celery -A workers worker`` / ``celery -A workers beat -S django``.

``workers.app`` is a ready Celery app configured from Django settings (namespace ``CELERY``).  A project
with its own Celery app needs none of it: the tasks are shared tasks, found by autodiscovery through
``django_integration.tasks``.
"""

from workers.celery import app

__all__ = ["app"]
