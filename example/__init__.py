"""The demo project: the Procfile, docker and the README's demo run this."""

import os

# This project's settings unless told otherwise, so that ``python -m example.demo`` needs no
# DJANGO_SETTINGS_MODULE (deferred_confirmation.workers.app refuses to load without it).  Then, as in Celery's Django
# guide, load the app with Django so @shared_task and on-commit dispatch use it.
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "example.settings")

from deferred_confirmation.workers import app as celery_app

__all__ = ["celery_app"]
