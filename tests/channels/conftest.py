"""Fixtures shared by the channels' tests."""

from __future__ import annotations

import pytest
from celery.signals import task_retry

from deferred_confirmation.pipeline.dispatch import SEND_NOTIFICATION


@pytest.fixture
def send_retries():
    """Reasons of the send_notification retries Celery scheduled (in the worker threads too)."""
    seen: list[str] = []

    def receiver(sender=None, reason=None, **kwargs):
        if sender is not None and sender.name == SEND_NOTIFICATION:
            seen.append(str(reason))

    task_retry.connect(receiver, weak=False)
    yield seen
    task_retry.disconnect(receiver)
