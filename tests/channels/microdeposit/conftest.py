"""Fixtures of the micro-deposit tests: the channel configured (ledger backend by default), a bank-account change
staged eagerly or through the real in-process worker, the amounts read back the operator's way (the
``export_payouts`` command), and the fake payouts API on loopback."""

from __future__ import annotations

import io
import itertools
import json
from datetime import timedelta
from typing import Any

import pytest
from django.core.management import call_command
from kombu import Queue

from deferred_confirmation import workers
from deferred_confirmation.django_integration.models import DeferredAction, Delivery
from deferred_confirmation.pipeline.dispatch import SEND_NOTIFICATION
from example.fakes.payouts import FakePayoutAPI
from tests.channels.microdeposit.forms import BankAccountForm
from tests.testapp.models import Profile
from tests.workers.conftest import clean_queues, signal_log, task_log, wait_for

QUEUE = "confirmation.microdeposit"
IBAN_ACCOUNT = {"bank_holder": "Ada Lovelace", "bank_iban": "de89 3704 0044 0532 0130 00"}
US_ACCOUNT = {"bank_holder": "Grace Hopper", "bank_routing_number": "111000025", "bank_account_number": "12345678"}
_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def microdeposit_channel(settings):
    """CHANNELS = {"email": {}, "microdeposit": {...}}; call the fixture's value to reconfigure the micro-deposit
    channel (keys of a channel's settings, e.g. ``OPTIONS`` or ``RESEND_COOLDOWN``).  Channel retries back off
    at most 1 s."""

    def configure(**conf: Any) -> None:
        settings.DEFERRED_CONFIRMATION = {**settings.DEFERRED_CONFIRMATION,
                                          "CHANNELS": {"email": {}, "microdeposit": conf},
                                          "RETRY_BACKOFF_MAX": timedelta(seconds=1)}

    configure()
    return configure


@pytest.fixture
def _microdeposit_queue():
    """The worker's app was configured with the queues of the default settings (email only): consume ours too."""
    workers.app.amqp.queues.select_add(Queue(QUEUE))


@pytest.fixture
def worker(_microdeposit_queue, clean_queues, celery_worker_inprocess):
    """The in-process worker (real Redis), started on empty queues, consuming the micro-deposit queue."""
    return celery_worker_inprocess


@pytest.fixture
def payout_api():
    """The fake payouts API, started on a free loopback port."""
    with FakePayoutAPI() as api:
        yield api


@pytest.fixture
def http_backend(microdeposit_channel, payout_api):
    """The channel configured with the HTTP payout backend pointed at the fake API; returns the fake."""

    def configure(timeout: float = 5, **options: Any) -> FakePayoutAPI:
        microdeposit_channel(OPTIONS={"PAYOUT_BACKEND": "deferred_confirmation.pipeline.payouts.http.HTTPPayoutBackend",
                                      "URL": payout_api.url, "API_KEY": payout_api.api_key,
                                      "TIMEOUT": timeout, **options})
        return payout_api

    return configure


# --- staging a change ----------------------------------------------------------------------------------
def new_profile() -> Profile:
    return Profile.objects.create(email=f"bank{next(_numbers)}@example.org")


def save_change(data: dict[str, str] | None = None, profile: Profile | None = None,
                **save_kwargs: Any) -> tuple[Profile, DeferredAction]:
    """A profile and a saved (deferred) change of its bank account: (profile, action)."""
    profile = profile or new_profile()
    form = BankAccountForm(dict(data or IBAN_ACCOUNT), instance=profile)
    assert form.is_valid(), form.errors
    return profile, form.save(**save_kwargs)


@pytest.fixture
def stage_eager(db, eager, django_capture_on_commit_callbacks):
    """Save a change with the tasks run in place (generate and send done on return): (profile, action)."""

    def stage(data: dict[str, str] | None = None, **save_kwargs: Any) -> tuple[Profile, DeferredAction]:
        with django_capture_on_commit_callbacks(execute=True):
            profile, action = save_change(data, **save_kwargs)
        action.refresh_from_db()
        assert action.state == "notified", delivery_of(action).status_detail
        return profile, action

    return stage


@pytest.fixture
def stage_sent(worker, task_log):
    """Save a change and wait until the worker has sent its deposits: (profile, action)."""

    def stage(data: dict[str, str] | None = None, **save_kwargs: Any) -> tuple[Profile, DeferredAction]:
        sent_before = task_log.returned(SEND_NOTIFICATION).count(True)
        profile, action = save_change(data, **save_kwargs)
        wait_for(lambda: task_log.returned(SEND_NOTIFICATION).count(True) > sent_before,
                 what="the deposits to be sent")
        action.refresh_from_db()
        return profile, action

    return stage


def delivery_of(action: DeferredAction) -> Delivery:
    return Delivery.objects.get(action=action, channel="microdeposit")


# --- reading the amounts the way the operator does ------------------------------------------------------
def export(*args: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    call_command("export_payouts", *args, stdout=out, stderr=err)
    return out.getvalue()


def exported_amounts(action: DeferredAction) -> tuple[int, int]:
    """The two amounts (cents, ascending) of the action's payout waiting to be paid; marks it exported."""
    rows = json.loads(export("--json", "--action", str(action.pk)))
    assert len(rows) == 1, rows
    first, second = rows[0]["amounts"]
    return first, second


def wrong_amounts(amounts: tuple[int, int]) -> tuple[int, int]:
    """Two different amounts that are not the pair ``amounts``."""
    a, b = amounts
    return a % 99 + 1, b % 99 + 1


def cents_text(cents: int) -> str:
    return f"0.{cents:02d}"


__all__ = [  # helpers for the test modules, and the fixtures shared with tests/workers
    "IBAN_ACCOUNT", "US_ACCOUNT", "cents_text", "clean_queues", "delivery_of", "export", "exported_amounts",
    "new_profile", "save_change", "signal_log", "task_log", "wait_for", "wrong_amounts",
]
