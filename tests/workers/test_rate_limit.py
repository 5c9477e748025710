"""A channel's RATE_LIMIT becomes the send task's Celery rate limit on a worker dedicated to its queue."""

import uuid

import pytest

from deferred_confirmation import workers
from tests.workers.test_subprocess_worker import CELERY, Process, WorkerProcess, _env


class DedicatedWorker(WorkerProcess):
    def __init__(self, tmp, queues: str, rate_limit: str):
        self.mail_dir = tmp / "mail"
        self.mail_dir.mkdir()
        self.env = {**_env(self.mail_dir), "DC_TEST_EMAIL_RATE_LIMIT": rate_limit}
        self.hostname = f"dc-rate-{uuid.uuid4().hex[:8]}@localhost"
        Process.__init__(self, [CELERY, "-A", "deferred_confirmation.workers", "worker", "-l", "INFO", "-c", "1", "-Q",
                                queues,
                                "--without-mingle", "--without-gossip", "-n", self.hostname], self.env,
                         tmp / "worker.log")


@pytest.mark.parametrize(("queues", "limited"), [("confirmation.email", True), ("confirmation.apply", False)])
def test_rate_limit_applies_on_the_channels_own_worker(tmp_path, queues, limited):
    workers.app.conf.task_always_eager = False
    process = DedicatedWorker(tmp_path, queues, "7/m")
    try:
        process.wait_ready()
        registered = process.inspect().registered("rate_limit")[process.hostname]
    finally:
        process.stop()
    send = next(entry for entry in registered if entry.startswith("confirmation.send_notification"))
    assert ("rate_limit=7/m" in send) is limited, send
    active = {q for q in registered if q.startswith("confirmation.apply_action")}
    assert all("rate_limit" not in entry for entry in active)
