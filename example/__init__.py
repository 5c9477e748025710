"""The demo project: the Procfile, docker and the README's demo run this."""

# As in Celery's Django guide: load the app with Django so @shared_task and on-commit dispatch use it.
from workers import app as celery_app

__all__ = ["celery_app"]
