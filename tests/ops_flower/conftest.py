"""Fixtures borrowed from the worker and web tests (an in-process worker, a loopback SMTP server, log capture)."""

from tests.web.test_secrets_audit import all_logs, task_args  # noqa: F401 - fixtures
from tests.workers.conftest import (  # noqa: F401 - fixtures
    clean_queues,
    confirmation_settings,
    fast_retries,
    smtp_server,
    worker,
)
