"""Fixtures of the SMS tests: a fake Twilio on loopback (example.fakes.twilio) that the real twilio SDK talks
to, the ``sms`` channel configured against it, staging through a DeferredForm, and the in-process worker
consuming the sms queue.

Staging with ``stage_sms`` runs the tasks eagerly at the end of the save's on-commit callbacks; the
``worker`` tests run them in a real Celery worker (threads of this process) over the real Redis.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse

from deferred_confirmation import workers
from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from example.fakes.twilio import FakeTwilio
from tests.channels.sms.forms import ProfilePhoneForm
from tests.testapp.models import Profile
from tests.workers.conftest import purge_queues, task_log  # noqa: F401 - task_log: a fixture for these tests

FROM = "+15005550006"
PHONE = "+12025550123"  # 555-01xx: fictional, yet a valid US number for libphonenumber
PHONE_TYPED = "+1 (202) 555-0123"
CODE_RE = re.compile(r"\A(\d+) is your confirmation code")
_numbers = itertools.count(1)


def code_in(body: str) -> str:
    found = CODE_RE.match(body)
    assert found, f"no code in the SMS: {body!r}"
    return found.group(1)


def code_url(action: Any) -> str:
    return reverse("confirmation:code", args=[getattr(action, "pk", action)])


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"


def new_profile(**fields: Any) -> Profile:
    return Profile.objects.create(email=f"sms{next(_numbers)}@example.org", **fields)


@pytest.fixture
def fake_twilio():
    with FakeTwilio() as fake:
        yield fake


@pytest.fixture(autouse=True)
def sms_channel(settings, fake_twilio):
    """The sms channel pointed at the fake; ``sms_channel(KEY=..., options={...})`` reconfigures it."""

    def configure(options: dict | None = None, **conf: Any) -> None:
        base = {"ACCOUNT_SID": fake_twilio.account_sid, "AUTH_TOKEN": fake_twilio.auth_token, "FROM": FROM,
                "BASE_URL": fake_twilio.url, "TIMEOUT": 2}
        settings.DEFERRED_CONFIRMATION = {
            **settings.DEFERRED_CONFIRMATION,
            "CHANNELS": {"email": {}, "sms": {**conf, "OPTIONS": {**base, **(options or {})}}},
        }

    configure()
    return configure


@dataclass
class Staged:
    action: DeferredAction
    profile: Profile
    message: dict | None  # the SMS as the fake received it
    code: str | None

    @property
    def delivery(self) -> Delivery:
        return Delivery.objects.get(action=self.action, channel="sms")

    def refresh(self) -> Staged:
        self.action.refresh_from_db()
        self.profile.refresh_from_db()
        return self


@pytest.fixture
def run_on_commit(django_capture_on_commit_callbacks):
    """``with run_on_commit(): ...``: the eager tasks the block enqueued run at its end."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def stage_sms(db, eager, run_on_commit, fake_twilio):
    """Save a phone change through ProfilePhoneForm; the tasks run eagerly.  Returns a :class:`Staged`."""

    def stage(phone: str = PHONE_TYPED, profile: Profile | None = None, sent: bool = True) -> Staged:
        profile = profile or new_profile()
        form = ProfilePhoneForm({"phone": phone}, instance=profile)
        assert form.is_valid(), form.errors
        before = len(fake_twilio.messages)
        with run_on_commit():
            action = form.save()
        messages = fake_twilio.messages
        message = messages[-1] if len(messages) > before else None
        if sent:
            assert len(messages) == before + 1, "one SMS per save"
        return Staged(action, profile, message, code_in(message["body"]) if message else None).refresh()

    return stage


# --- the real worker ---------------------------------------------------------------------------------
@pytest.fixture
def sms_queue():
    """The worker consumes confirmation.sms too (the app's queues were fixed before this channel existed)."""
    workers.app.amqp.queues.select_add("confirmation.sms")


@pytest.fixture
def clean_queues(sms_queue):
    purge_queues()
    yield
    purge_queues()


@pytest.fixture
def worker(sms_channel, clean_queues, celery_worker_inprocess):
    return celery_worker_inprocess


@pytest.fixture
def fast_retries(settings, sms_channel):
    """Backoff between retries of a transient error capped at 1 s (the RETRY_BACKOFF_MAX setting)."""
    settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION, "RETRY_BACKOFF_MAX": timedelta(seconds=1)}
