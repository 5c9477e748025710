"""A project's test settings, as docs/testing.md shows them: the test settings with eager Celery tasks."""

from tests.settings import *  # noqa: F403

# Tasks run in the test process, in order, as soon as they are sent; their errors fail the test.
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
