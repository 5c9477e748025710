"""Fixtures of the web area: a staged, mailed action and its raw link token, and an HTTP client.

Actions are staged through the real DeferredForm; the Celery tasks run eagerly when the surrounding
(test) transaction's on-commit callbacks are executed, so the mail is really rendered and "sent" to
django.core.mail.outbox, where the raw token is read back the way a person would.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from django.core import mail
from django.test import Client

from deferred_confirmation.django_integration.models import DeferredAction
from tests.conftest import link_token
from tests.testapp.forms import ProfileEmailForm
from tests.testapp.models import Profile

_numbers = itertools.count(1)


@dataclass
class Staged:
    action: DeferredAction
    profile: Profile
    old_email: str
    new_email: str
    token: str | None  # the raw secret from the mail (None for code channels)

    def refresh(self) -> Staged:
        self.action.refresh_from_db()
        self.profile.refresh_from_db()
        return self


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """``with run_on_commit(): ...``: the block's on-commit callbacks (the eager tasks) run at its end."""
    def _run():
        return django_capture_on_commit_callbacks(execute=True)
    return _run


@pytest.fixture
def stage(db, eager, run_on_commit):
    """Stage an email change through ProfileEmailForm and deliver it; returns a :class:`Staged`."""
    def _stage(channels: list[str] | None = None, **save_kwargs) -> Staged:
        n = next(_numbers)
        old, new = f"old{n}@example.org", f"new{n}@example.org"
        profile = Profile.objects.create(email=old)
        form = ProfileEmailForm({"email": new}, instance=profile)
        assert form.is_valid(), form.errors
        sent_before = len(mail.outbox)
        with run_on_commit():
            action = form.save(channels=channels, **save_kwargs)
        token = None
        if channels is None or "email" in channels:
            assert len(mail.outbox) == sent_before + 1
            token = link_token(mail.outbox[-1])
        staged = Staged(action=action, profile=profile, old_email=old, new_email=new, token=token)
        staged.refresh()
        assert staged.action.state == "notified"
        assert staged.profile.email == old
        return staged
    return _stage


@pytest.fixture
def csrf_client() -> Client:
    return Client(enforce_csrf_checks=True)
