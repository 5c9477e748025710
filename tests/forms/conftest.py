"""Fixtures of the forms area: request a change through a DeferredForm and confirm it, in eager mode.

Tests run inside the test transaction (fast); ``django_capture_on_commit_callbacks(execute=True)`` plays
the part of the commit, so the enqueued tasks run in place, in order, exactly as after a real commit.
Tests that must see a real commit (signals sent after apply commits) use ``transaction=True`` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from django.core import mail

from deferred_confirmation import pipeline
from deferred_confirmation.django_integration.models import DeferredAction
from tests.conftest import link_token


@dataclass
class Flow:
    capture: Any

    def request(self, form_class: type, data: Any, instance: Any = None, prefix: str | None = None,
                **save_kwargs: Any) -> tuple[DeferredAction, str]:
        """Bind, validate and save the form; run the deliveries; return the action and the mailed token."""
        form = form_class(data, instance=instance, prefix=prefix)
        assert form.is_valid(), form.errors
        sent = len(mail.outbox)
        with self.capture(execute=True):
            action = form.save(**save_kwargs)
        assert len(mail.outbox) == sent + 1, "the confirmation mail was not sent"
        return action, link_token(mail.outbox[-1])

    def confirm(self, token: str, apply: bool = True) -> pipeline.ConfirmResult:
        """Confirm; with ``apply`` the queued apply_action task runs (eager), else it is dropped."""
        with self.capture(execute=apply):
            return pipeline.confirm(token)

    def run(self, func: Any, *args: Any, **kwargs: Any) -> Any:
        """Call ``func`` and run whatever it enqueued on commit."""
        with self.capture(execute=True):
            return func(*args, **kwargs)


@pytest.fixture
def flow(db, eager, django_capture_on_commit_callbacks) -> Flow:
    return Flow(django_capture_on_commit_callbacks)
